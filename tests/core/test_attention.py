"""embedding, positional_embedding and multi_head_attention beyond their catalogue items
(tests/check/test_catalogue.py): planted bugs the check must catch, causality, a known
forward, bad input, a whole token model's gradient, and the example."""

import importlib.util
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.battery import forward_backward, normal, params_for
from helpers.planted import planted_bug

import fnn
from fnn.layers import embedding, multi_head_attention, positional_embedding

KEY = jax.random.PRNGKey(0)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def token_ids(vocab):
    """A `make_input` for check_layer: uniform integer ids in [0, vocab)."""
    return lambda key, shape, dtype: jax.random.randint(key, shape, 0, vocab)


def test_embedding_of_one_id_per_example():
    """in_shape () — a batch of single ids — gives (batch, features); shapes only."""
    layer = embedding(5, 4)
    ids = jax.ShapeDtypeStruct((3,), jnp.int32)
    out = {}

    def run(key, ids):
        out["shape"], params = layer.init(key, (), jnp.float32)
        y, residuals = layer.forward(params, ids)
        return y, layer.backward(params, residuals, jnp.ones_like(y))

    y, (dparams, dx) = jax.eval_shape(run, KEY, ids)
    out_shape = out["shape"]
    assert out_shape == (4,) and y.shape == (3, 4) and dx.shape == (3,)
    assert dparams["table"].shape == (5, 4)


# ------------------------------------------------------------------------ the forward
def numpy_attention(params, x, num_heads, causal):
    """The forward written in plain numpy, float64, from the definition."""
    params = {k: np.asarray(v) for k, v in params.items()}
    x = np.asarray(x)
    B, T, D = x.shape
    dh = D // num_heads
    qkv = x @ params["W_qkv"] + params["b_qkv"]
    heads = [qkv[..., i * D : (i + 1) * D].reshape(B, T, num_heads, dh) for i in range(3)]
    q, k, v = (h.transpose(0, 2, 1, 3) for h in heads)  # (B, H, T, dh)
    S = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
    if causal:
        S = np.where(np.tril(np.ones((T, T), bool)), S, -np.inf)
    P = np.exp(S - S.max(-1, keepdims=True))
    P /= P.sum(-1, keepdims=True)
    O = (P @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
    return O @ params["W_o"] + params["b_o"]


def test_attention_forward_equals_a_numpy_transcription_of_the_definition():
    B, T, D, H = 2, 5, 6, 3
    x = normal((B, T, D))
    layers = [multi_head_attention(H, causal=causal) for causal in (False, True)]
    params = params_for(layers[0], (T, D), seed=1)
    params = {**params, "b_qkv": np.linspace(-1, 1, 3 * D), "b_o": np.linspace(0, 1, D)}
    ys = jax.jit(lambda params, x: [layer.forward(params, x)[0] for layer in layers])(params, x)
    for causal, y in zip((False, True), ys, strict=True):
        np.testing.assert_allclose(y, numpy_attention(params, x, H, causal), rtol=1e-12, atol=1e-13)


def test_causal_attention_output_at_t_ignores_later_inputs():
    B, T, D, t = 2, 6, 4, 3
    x = np.asarray(normal((B, T, D), scale=10.0))  # large scores
    changed = x.copy()
    changed[:, t] += 5.0
    future = np.triu(np.ones((T, T), bool), k=1)
    layers = {causal: multi_head_attention(2, causal=causal) for causal in (True, False)}
    params = params_for(layers[True], (T, D))  # the same params with the mask and without

    @jax.jit
    def run(params, xs):
        return {c: jax.vmap(layer.forward, (None, 0))(params, xs) for c, layer in layers.items()}

    outputs = jax.device_get(run(params, np.stack([x, changed])))  # numpy: no eager ops
    for causal in (True, False):
        (y, y_changed), residuals = outputs[causal]
        P = residuals[4][0]  # the attention weights (batch, H, T, T) for x
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(y_changed))
        np.testing.assert_allclose(np.sum(P, axis=-1), 1, rtol=1e-12)
        assert not np.allclose(y[:, t], y_changed[:, t])
        if causal:  # exact zeros above the diagonal: positions before t see what they saw
            assert np.all(np.asarray(P)[..., future] == 0)
            np.testing.assert_array_equal(y[:, :t], y_changed[:, :t])
        else:  # without the mask every position sees position t
            assert np.all(np.asarray(P)[..., future] > 0)
            assert not np.allclose(y[:, :t], y_changed[:, :t])


def test_embedding_looks_rows_up_and_sums_repeated_tokens_in_the_gradient():
    layer = embedding(4, 2)
    table = np.arange(8.0).reshape(4, 2)
    x = np.array([[3, 1, 3], [3, 0, 1]])
    y, _, grads, dx = forward_backward(layer, {"table": table}, x)  # dy = 1
    np.testing.assert_array_equal(y, table[x])
    np.testing.assert_array_equal(grads["table"][:, 0], [1, 2, 0, 3])  # token 3 thrice, 2 never
    assert dx.dtype == jax.dtypes.float0 and dx.shape == x.shape


def test_out_of_range_ids_under_jit_give_nan_rows_and_no_gradient():
    layer = embedding(4, 2)
    table = np.arange(8.0).reshape(4, 2)
    x = np.array([[0, 4, -1, 2]])  # 4 and -1 are out of range (-1 does not wrap around)

    @jax.jit
    def run(table, x):
        y, residuals = layer.forward({"table": table}, x)
        return y, layer.backward({"table": table}, residuals, jnp.ones_like(y))[0]

    y, grads = jax.device_get(run(table, x))
    assert np.all(np.isnan(y[0, 1:3]))
    np.testing.assert_array_equal(y[0, [0, 3]], table[np.array([0, 2])])
    np.testing.assert_array_equal(grads["table"][:, 0], [1, 0, 1, 0])


def test_positional_embedding_adds_the_same_table_to_every_example():
    layer = positional_embedding()
    params = jax.device_get(fnn.init(layer, KEY, (3, 2), jnp.float64))  # numpy: no eager ops
    assert 0 < float(np.std(params["table"])) < 0.1  # a small start
    x = normal((4, 3, 2))
    expected = np.asarray(x) + np.asarray(params["table"])[None]
    y = jax.jit(lambda params, x: fnn.apply(layer, params, x))(params, x)
    np.testing.assert_allclose(y, expected, rtol=1e-15)


def test_embedding_init_is_unit_normal_and_accepts_other_initializers():
    def table(layer):  # numpy: its statistics compile nothing
        return jax.device_get(fnn.init(layer, KEY, (3,))["table"])

    unit = table(embedding(400, 50))
    assert abs(float(np.std(unit)) - 1) < 0.02 and unit.dtype == jnp.float32
    assert not np.any(table(embedding(4, 2, init="zeros")))
    assert np.sum(table(embedding(4, 2, init=jax.nn.initializers.ones))) == 8


# ------------------------------------------------------------------------ planted bugs
def attention_backward(num_heads, bug=None):
    """multi_head_attention's backward written again from the formulas (no biases), with
    one planted `bug`: "no_scale" (dq, dk without 1/√dh), "no_softmax_subtraction"
    (dS = P ⊙ dP), "untransposed_P" (dv = P·dO instead of Pᵀ·dO)."""
    H = num_heads

    def backward(params, residuals, dy):
        x, q, k, v, P, O = residuals
        D = x.shape[-1]
        dh = D // H
        c = 1.0 if bug == "no_scale" else 1 / math.sqrt(dh)
        W_o = params["W_o"].reshape(H, dh, D)
        dO = jnp.einsum("bte,hke->bhtk", dy, W_o)
        if bug == "untransposed_P":
            dv = jnp.einsum("bhij,bhjk->bhik", P, dO)
        else:
            dv = jnp.einsum("bhij,bhik->bhjk", P, dO)
        dP = jnp.einsum("bhik,bhjk->bhij", dO, v)
        if bug == "no_softmax_subtraction":
            dS = P * dP
        else:
            dS = P * (dP - jnp.sum(dP * P, axis=-1, keepdims=True))
        dq = c * jnp.einsum("bhij,bhjk->bhik", dS, k)
        dk = c * jnp.einsum("bhij,bhik->bhjk", dS, q)
        dqkv = jnp.stack([dq, dk, dv])
        grads = {
            "W_qkv": jnp.einsum("btd,cbhtk->dchk", x, dqkv).reshape(D, 3 * D),
            "W_o": jnp.einsum("bhtk,bte->hke", O, dy).reshape(D, D),
        }
        dx = jnp.einsum("cbhtk,dchk->btd", dqkv, params["W_qkv"].reshape(D, 3, H, dh))
        return grads, dx

    return backward


@planted_bug("multi_head_attention")
@pytest.mark.parametrize("bug", [None, "no_scale", "no_softmax_subtraction", "untransposed_P"])
def test_planted_attention_bugs_are_caught(bug):
    good = multi_head_attention(2, causal=True, use_bias=False)
    layer = good._replace(backward=attention_backward(2, bug))
    result = fnn.check_layer(layer, (5, 4), finite_differences=False)
    if bug is None:  # the formulas written again agree: the planted bug is the only change
        assert result.passed, str(result)
    else:
        assert not result.passed
        assert result.max_rel_err > 1e-3, str(result)


@planted_bug("embedding")
def test_planted_embedding_bug_assignment_instead_of_accumulation_is_caught():
    good = embedding(3, 2)

    def backward(params, ids, dy):
        table = params["table"]
        rows = dy.reshape(-1, table.shape[1])
        dtable = jnp.zeros_like(table).at[ids.reshape(-1)].set(rows)  # wrong: .set keeps one
        return {"table": dtable}, np.zeros(ids.shape, jax.dtypes.float0)

    layer = good._replace(backward=backward)
    result = fnn.check_layer(layer, (6,), make_input=token_ids(3), finite_differences=False)
    assert not result.passed and result.leaves["params['table']"]["rel"] > 0.1, str(result)


@planted_bug("positional_embedding")
def test_planted_positional_bug_first_example_only_is_caught():
    layer = positional_embedding()
    layer = layer._replace(backward=lambda params, res, dy: ({"table": dy[0]}, dy))
    result = fnn.check_layer(layer, (3, 2), finite_differences=False)
    assert not result.passed and result.leaves["params['table']"]["rel"] > 0.1, str(result)


# ------------------------------------------------------------------------ bad input
def test_attention_bad_input_names_layer_expected_and_received_shape():
    layer = multi_head_attention(2)
    params = params_for(layer, (3, 4), jnp.float32)
    with pytest.raises(
        ValueError,
        match=r"^multi_head_attention\(2\): expected input of shape \(batch, T, 4\), got \(3, 4\)",
    ):
        layer.forward(params, np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"\(batch, T, 4\), got \(2, 3, 5\)"):
        layer.forward(params, np.ones((2, 3, 5)))
    with pytest.raises(TypeError, match=r"^multi_head_attention\(2\): expected a floating"):
        layer.forward(params, np.ones((2, 3, 4), np.int32))
    with pytest.raises(ValueError, match=r"expected W_qkv of shape \(4, 12\), got \(4, 4\)"):
        layer.forward({**params, "W_qkv": np.ones((4, 4))}, np.ones((2, 3, 4)))


def test_attention_bad_configuration():
    with pytest.raises(ValueError, match=r"D = 5 must be divisible by num_heads = 2"):
        multi_head_attention(2, causal=True).init(KEY, (3, 5))
    with pytest.raises(ValueError, match=r"in_shape must be \(T, D\), got \(4,\)"):
        multi_head_attention(2).init(KEY, (4,))
    with pytest.raises(ValueError, match=r"num_heads must be a positive int, got 0"):
        multi_head_attention(0)


def test_embedding_bad_input():
    layer = embedding(5, 3)
    params = params_for(layer, (4,), jnp.float32)
    with pytest.raises(
        TypeError,
        match=r"^embedding\(5, 3\): expected integer token ids, got dtype float32",
    ):
        layer.forward(params, np.zeros((2, 4), jnp.float32))
    with pytest.raises(
        ValueError,
        match=r"^embedding\(5, 3\): token ids must lie in \[0, 5\), got \[-1, 5, 9\]",
    ):
        layer.forward(params, np.array([[0, 5, -1, 9], [1, 2, 5, 4]]))
    with pytest.raises(ValueError, match=r"expected table of shape \(5, 3\), got \(3, 5\)"):
        layer.forward({"table": np.ones((3, 5))}, np.zeros((2, 4), np.int32))
    with pytest.raises(ValueError, match=r"vocab_size must be a positive int, got 0"):
        embedding(0, 3)


def test_positional_embedding_bad_input_names_expected_and_received_shape():
    layer = positional_embedding()
    params = params_for(layer, (5, 4), jnp.float32)
    for bad in [(2, 6, 4), (2, 5, 3), (5, 4)]:
        with pytest.raises(
            ValueError,
            match=r"^positional_embedding: expected input of shape "
            rf"\(batch, 5, 4\), got \({', '.join(map(str, bad))}\)",
        ):
            layer.forward(params, np.ones(bad))
    with pytest.raises(ValueError, match=r"in_shape must be \(T, D\), got \(4,\)"):
        layer.init(KEY, (4,))
    with pytest.raises(TypeError, match="^positional_embedding: expected a floating"):
        layer.forward(params, np.ones((2, 5, 4), np.int32))


def test_errors_inside_serial_name_the_layer():
    net = fnn.serial(embedding(5, 4), positional_embedding())
    params = params_for(net, (3,), jnp.float32)
    with pytest.raises(
        ValueError,
        match=r"positional_embedding: expected input of shape \(batch, 3, 4\), got "
        r"\(2, 6, 4\)\nin layer 1 \(positional_embedding\)",
    ):
        net.forward(params, np.zeros((2, 6), np.int32))


# ------------------------------------------------------------------------ a token model
@pytest.mark.slow  # a whole network (the catalogue's transformer_block is slow too)
def test_token_model_manual_gradient_equals_autodiff_under_jit():
    V, D, T, B = 6, 4, 5, 3
    net = fnn.serial(
        embedding(V, D),
        positional_embedding(),
        fnn.residual(fnn.serial(fnn.layer_norm(), multi_head_attention(2, causal=True))),
        fnn.dense(V),
    )
    params = params_for(net, (T,))
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    loss = fnn.softmax_cross_entropy()

    @jax.jit
    def both(params, x, y):
        manual = fnn.value_and_grad(net, loss, "manual")(params, x, y)
        return manual, fnn.value_and_grad(net, loss, "autodiff")(params, x, y)

    (value, grads), (ref_value, ref_grads) = both(params, x, y)
    assert np.isfinite(value) and value == pytest.approx(float(ref_value), rel=1e-13)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        assert g.dtype == jnp.float64
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------------ the example
@pytest.mark.slow
def test_example_learns_the_lag_copy_task():
    spec = importlib.util.spec_from_file_location(
        "attention_sequence", EXAMPLES / "attention_sequence.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    # test accuracy 1.0 from epoch 5 with seed 0 (0.999 at epoch 4); each epoch takes about
    # a second with the suite's unoptimised XLA code, so 5 epochs rather than the CLI's 8
    run = example.train(epochs=5, seed=0)
    assert run["test_accuracy"] > 0.95, run["history"]

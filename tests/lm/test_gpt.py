"""The GPT (`fnn.gpt`, `fnn.gpt_block`) and sampling (`fnn.generate`): the tied table's
two gradients, what each recompute mode keeps, the key-value cache against the full
model, and the errors. The hand-written backwards are checked against jax.vjp in the
catalogue (`gpt_block*`, `gpt*` items) and against PyTorch in tests/lm/test_gpt_torch.py.

Everything numerical runs compiled (`jax.jit`): op by op, every operation of the model
would compile on its own. The model's forward, backward and jax.vjp at the shared params
and ids are ONE program (the `full` fixture), read by the tests that need them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn.lm.gpt import GPTResiduals

V, C, D, H, L = 11, 8, 8, 2, 2


def _params(net, T=C, seed=0):
    """Params in general position (N(0, 0.5²)), float64, drawn with numpy (`jax.device_put`
    copies them compiling nothing; `jnp.asarray` compiles a program per shape)."""
    shapes = jax.eval_shape(lambda k: net.init(k, (T,), jnp.float64)[1], jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)
    return jax.device_put(jax.tree.map(lambda s: 0.5 * rng.standard_normal(s.shape), shapes))


@pytest.fixture(scope="module")
def model():
    net = fnn.gpt(V, C, D, H, L)
    params = _params(net)
    ids = np.random.default_rng(1).integers(0, V, (3, 6))  # numpy, as are the other inputs
    return net, params, ids


@pytest.fixture(scope="module")
def full(model):
    """The model at (params, ids), ONE compiled program: its logits, final hidden states h,
    hand-written gradients and jax.vjp's for a cotangent dy, and the fused head's output
    for the same params."""
    net, params, ids = model
    dy = np.random.default_rng(3).standard_normal((3, 6, V))
    fused = fnn.gpt(V, C, D, H, L, head="fused")

    @jax.jit
    def program(params, ids, dy):
        y, residuals = net.forward(params, ids)
        _, vjp = jax.vjp(lambda p: net.forward(p, ids)[0], params)
        return {
            "logits": y,
            "h": residuals.h,
            "grads": net.backward(params, residuals, dy)[0],
            "vjp": vjp(dy)[0],
            "fused": fused.forward(params, ids)[0],
        }

    return {"dy": dy, **jax.device_get(program(params, ids, dy))}


def _nbytes(tree):
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


@pytest.mark.slow
def test_recompute_modes_give_the_same_gradients_and_keep_less(model):
    _, params, ids = model
    rng = np.random.default_rng(2)
    dy = rng.standard_normal((3, 6, V))
    nets = {mode: fnn.gpt(V, C, D, H, L, recompute=mode) for mode in fnn.lm.RECOMPUTE}
    kept = {
        mode: _nbytes(jax.eval_shape(lambda p, net=net: net.forward(p, ids)[1], params))
        for mode, net in nets.items()
    }

    @jax.jit  # the three modes' gradients, one program
    def gradients(params, ids, dy):
        return {
            mode: net.backward(params, net.forward(params, ids)[1], dy)[0]
            for mode, net in nets.items()
        }

    grads = gradients(params, ids, dy)
    for mode in ("gelu", "all"):
        for a, b in zip(jax.tree.leaves(grads[mode]), jax.tree.leaves(grads["none"]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # per token and block: "gelu" drops g (4·D numbers), "all" also x̂₁, a, x̂₂, b for x, x₂
    per_token_block = 3 * 6 * L * 8  # tokens · blocks · bytes per float64
    assert kept["none"] - kept["gelu"] == per_token_block * 4 * D
    assert kept["gelu"] - kept["all"] == per_token_block * (4 * D - 2 * D) + 3 * 6 * L * 8 * 2


def test_the_tied_table_gets_the_sum_of_both_uses(full):
    wte = full["grads"]["wte"]
    np.testing.assert_allclose(wte, full["vjp"]["wte"], rtol=1e-10, atol=1e-12)
    head = np.einsum("btv,btd->vd", full["dy"], full["h"])  # the head's share alone
    assert float(np.max(np.abs(head))) > 1e-3
    assert not np.allclose(wte, head)  # the embedding's share is there too


def test_check_layer_catches_a_head_that_forgets_its_share_of_the_table():
    net = fnn.gpt(V, C, D, H, 1)

    def untied_backward(params, residuals: GPTResiduals, dy):
        grads, dx = net.backward(params, residuals, dy)
        head = jnp.einsum("btv,btd->vd", dy, residuals.h)  # dE_head = dlogitsᵀ·h
        return {**grads, "wte": grads["wte"] - head}, dx  # the embedding's share only

    broken = net._replace(backward=untied_backward)
    ids = lambda key, shape, dtype: jax.random.randint(key, shape, 0, V)  # noqa: E731
    result = fnn.check_layer(broken, (5,), batch=2, make_input=ids, finite_differences=False)
    assert not result.passed and result.max_rel_err > 1e-3


@pytest.mark.slow
def test_positions_past_t_get_no_gradient_and_t_up_to_context_works(model):
    net, params, _ = model
    ids = np.random.default_rng(4).integers(0, V, (2, 3))

    @jax.jit
    def run(params, ids):
        y, residuals = net.forward(params, ids)
        return y, net.backward(params, residuals, jnp.ones_like(y))[0]

    y, grads = jax.device_get(run(params, ids))  # numpy: no eager ops
    assert y.shape == (2, 3, V)
    assert float(np.max(np.abs(grads["wpe"][3:]))) == 0.0
    assert float(np.max(np.abs(grads["wpe"][:3]))) > 0.0


def test_the_fused_head_returns_the_hidden_states_and_the_tied_table(model, full):
    _, params, ids = model
    out = full["fused"]
    assert isinstance(out, fnn.HeadInput)
    np.testing.assert_array_equal(out.table, params["wte"])
    logits = np.einsum("btd,vd->btv", out.h, out.table)
    np.testing.assert_allclose(logits, full["logits"], rtol=1e-12)
    # the table is wte itself, no operation applied: traced, not run, the fused forward's
    # table output is its wte input
    fused = fnn.gpt(V, C, D, H, L, head="fused")
    table = lambda wte: fused.forward({**params, "wte": wte}, ids)[0].table  # noqa: E731
    jaxpr = jax.make_jaxpr(table)(params["wte"]).jaxpr
    assert jaxpr.outvars == jaxpr.invars


@pytest.mark.slow
def test_gpt2_init_scales_the_residual_projections():
    net = fnn.gpt(64, 16, 64, 4, 8)
    params = jax.device_get(fnn.init(net, jax.random.PRNGKey(0), (16,)))
    blocks = params["blocks"]
    assert blocks["attn"]["W_qkv"].shape == (8, 64, 192)
    # the statistics in numpy, of numpy arrays: jax's would compile a program for each shape
    np.testing.assert_allclose(np.std(params["wte"]), 0.02, rtol=0.1)
    np.testing.assert_allclose(np.std(blocks["fc"]["W"]), 0.02, rtol=0.1)
    np.testing.assert_allclose(np.std(blocks["proj"]["W"]), 0.02 / 4, rtol=0.1)
    np.testing.assert_allclose(np.std(blocks["attn"]["W_o"]), 0.02 / 4, rtol=0.1)
    assert np.max(np.abs(blocks["attn"]["b_qkv"])) == 0.0


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: fnn.gpt(V, C, 6, 4, 1), "divisible by heads"),
        (lambda: fnn.gpt(V, C, D, H, 0), "blocks must be a positive int"),
        (lambda: fnn.gpt(V, C, D, H, 1, head="tied"), "head must be one of"),
        (lambda: fnn.gpt(V, C, D, H, 1, recompute="some"), "recompute must be one of"),
    ],
)
def test_bad_settings_raise_at_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_sequence_longer_than_the_context_is_refused(model):
    net, params, _ = model
    with pytest.raises(ValueError, match="at most context = 8 tokens, got T = 9"):
        net.forward(params, np.zeros((1, 9), np.int32))
    with pytest.raises(ValueError, match="at most context = 8"):
        fnn.init(net, jax.random.PRNGKey(0), (9,))


# ----------------------------------------------------------------------------- sampling


def test_cached_logits_equal_the_full_models_at_every_position(model, full):
    from fnn.lm.sampling import _cached_step

    _, params, ids = model
    step = jax.jit(_cached_step, static_argnums=4)  # t traced (as in generate): one program
    caches = (np.zeros((L, 3, H, C, D // H)),) * 2
    for t in range(ids.shape[1]):
        logits, caches = step(params, caches, ids[:, t], t, H)
        np.testing.assert_allclose(logits, full["logits"][:, t], rtol=1e-10, atol=1e-12)


def test_generate_is_the_same_with_and_without_the_cache_past_the_context(model):
    net, params, ids = model
    key = jax.random.PRNGKey(5)
    kwargs = dict(heads=H, tokens=9, key=key, temperature=0.9, top_k=4)  # 3 + 9 > C = 8
    cached = fnn.generate(net, params, ids[:, :3], **kwargs)
    window = fnn.generate(net, params, ids[:, :3], kv_cache=False, **kwargs)
    np.testing.assert_array_equal(cached, window)
    cached = np.asarray(cached)  # numpy: slicing it compiles nothing
    assert cached.shape == (3, 12)
    np.testing.assert_array_equal(cached[:, :3], ids[:, :3])
    again = fnn.generate(net, params, ids[:, :3], **kwargs)
    np.testing.assert_array_equal(cached, again)


@pytest.mark.slow
def test_temperature_zero_and_top_1_are_greedy(model):
    net, params, ids = model
    prompt = ids[0, :2]
    greedy = fnn.generate(net, params, prompt, heads=H, tokens=4, key=jax.random.PRNGKey(0),
                          temperature=0)  # fmt: skip
    top1 = fnn.generate(net, params, prompt, heads=H, tokens=4, key=jax.random.PRNGKey(7),
                        top_k=1)  # fmt: skip
    np.testing.assert_array_equal(greedy, top1)
    seq = np.asarray(greedy)
    # the model on the whole sequence, one program: causal, its logits at position t - 1
    # are the model's on seq[:t] (the cached-logits test checks them position by position)
    logits = jax.jit(lambda params, ids: net.forward(params, ids)[0])(params, seq[None])
    logits = np.asarray(logits)  # numpy: indexing it compiles nothing
    for t in range(2, 6):  # every drawn token is the argmax of the model at the step before
        assert int(np.argmax(logits[0, t - 1])) == seq[t]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tokens=0), "tokens must be an int >= 1"),
        (dict(temperature=-0.5), "temperature must be >= 0"),
        (dict(top_k=-1), "top_k must be >= 0"),
        (dict(prompt=np.zeros(9, np.int32)), "1 to context = 8 tokens, got 9"),
        (dict(prompt=np.array([3, 11])), r"prompt ids must lie in \[0, 11\)"),
        (dict(prompt=np.array([0.5])), "integer ids"),
    ],
)
def test_generate_refuses_bad_settings(model, kwargs, message):
    net, params, _ = model
    args = dict(prompt=np.array([1, 2]), heads=H, tokens=3, key=jax.random.PRNGKey(0)) | kwargs
    prompt = args.pop("prompt")
    with pytest.raises(ValueError, match=message):
        fnn.generate(net, params, prompt, **args)

"""The fused language-model head (fnn.lm.head): its value and gradients equal those of the
unfused head (`tied_logits`, then `softmax_cross_entropy`) for every chunking, the checker
catches its likeliest backward mistakes, it keeps no `(batch·T, V)` array, bad inputs
raise clear errors, and half-precision inputs give float32 logits. Its check against
jax.grad and finite differences is a catalogue item (tests/check/test_catalogue.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn.lm.head import HeadInput, tied_logits

BATCH, T, D, V = 2, 5, 4, 7  # 10 rows: every size below but 10 leaves a padded chunk
CHUNKS = [1, 3, 10, 11, None]  # one row, padded chunks, the rows, more than the rows, one


def inputs(dtype=np.float64, seed=0):
    """(HeadInput(h, table), ids), numpy arrays: drawn and cast on the host (a cast of a
    device array compiles a program per shape and dtype)."""
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(BATCH, T, D)).astype(dtype)
    table = rng.normal(size=(V, D)).astype(dtype)
    ids = rng.permutation(np.arange(BATCH * T) % V).reshape(BATCH, T)
    return HeadInput(h, table), ids


def unfused(pred, ids):
    """The plain head: the (batch, T, V) logits, then softmax_cross_entropy."""
    return fnn.softmax_cross_entropy().forward(tied_logits(pred), ids)[0]


@jax.jit
def fused_and_unfused_program(pred, ids):
    """For every chunk size in CHUNKS' order: the fused value and hand-written gradients
    (for dvalue 1 and 2), and the unfused value and jax.grad of it; ONE compiled program
    for float64 inputs of these shapes, run again by the test that changes only the ids."""
    out = []
    for chunk in CHUNKS:
        loss = fnn.lm_cross_entropy(chunk)
        value, residuals = loss.forward(pred, ids)
        out.append((value, loss.backward(residuals), loss.backward(residuals, 2.0)))
    return out, jax.value_and_grad(unfused)(pred, ids)


@functools.cache
def fused_and_unfused():
    """The program's results at `inputs()`: ({chunk: fused results}, unfused results)."""
    fused, reference = jax.device_get(fused_and_unfused_program(*inputs()))
    return dict(zip(CHUNKS, fused, strict=True)), reference


@pytest.mark.parametrize("chunk", CHUNKS)
def test_value_equals_softmax_cross_entropy_of_the_tied_logits(chunk):
    fused, (reference, _) = fused_and_unfused()
    value = fused[chunk][0]
    assert value.dtype == np.float64
    np.testing.assert_allclose(value, reference, rtol=1e-12, atol=0)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_gradients_equal_jax_grad_of_the_unfused_head(chunk):
    fused, (_, reference) = fused_and_unfused()
    _, grads, doubled = fused[chunk]
    assert isinstance(grads, HeadInput)
    for got, want, twice in zip(grads, reference, doubled, strict=True):
        assert got.dtype == want.dtype == np.float64 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(twice, 2 * want, rtol=1e-12, atol=1e-15)  # dvalue = 2


def planted(kind: str) -> fnn.Loss:
    """lm_cross_entropy(3) whose backward (unchunked, rewritten here) carries one mistake:
    `none` is the correct rewrite, so a failure of the others is the mistake's."""
    good = fnn.lm_cross_entropy(3)

    def backward(residuals, dvalue=1.0):
        h, table, lse, ids = residuals
        z = tied_logits(HeadInput(h, table))  # (batch, T, V)
        lse = lse.reshape(ids.shape)[..., None]
        p = jnp.exp(z) if kind == "exp_without_lse" else jnp.exp(z - lse)  # p = e^(z − L)
        onehot = (ids[..., None] == jnp.arange(V)[None, None, :]).astype(z.dtype)
        n = 1 if kind == "no_one_over_n" else ids.size
        dz = (p if kind == "no_onehot" else p - onehot) * dvalue / n  # dℓ·(p − onehot)/N
        return HeadInput(jnp.einsum("btv,vd->btd", dz, table), jnp.einsum("btv,btd->vd", dz, h))

    return good._replace(backward=backward, name=f"lm_cross_entropy[{kind}]")


@pytest.mark.parametrize("kind", ["none", "no_onehot", "no_one_over_n", "exp_without_lse"])
def test_check_loss_fails_a_planted_bug_and_passes_the_correct_rewrite(kind):
    result = fnn.check_loss(planted(kind), *inputs())
    assert set(result.leaves) == {"pred.h", "pred.table"}
    if kind == "none":
        assert result.passed, str(result)
        assert result.finite_differences == "passed"
    else:
        assert not result.passed
        assert result.max_rel_err > 0.1
        assert result.finite_differences.startswith("failed")


def test_check_loss_of_an_array_pred_is_unchanged_by_trees():
    """Nested lists of numbers are still one array, cast whole."""
    result = fnn.check_loss(fnn.mean_squared_error(), [[1.0, 2.0], [3.0, 5.0]], np.zeros((2, 2)))
    assert result.passed and set(result.leaves) == {"pred"}


@pytest.mark.parametrize("rows, vocab", [(BATCH * T, V), (4 * 1024, 50257)])
def test_residuals_hold_no_vocabulary_sized_array_but_the_table(rows, vocab):
    """Traced by `jax.eval_shape`, nothing computed: GPT-2's shapes cost nothing."""
    pred = HeadInput(
        jax.ShapeDtypeStruct((2, rows // 2, D), jnp.float32),
        jax.ShapeDtypeStruct((vocab, D), jnp.float32),
    )
    ids = jax.ShapeDtypeStruct((2, rows // 2), jnp.int32)
    for chunk in (3, None):
        _, residuals = jax.eval_shape(fnn.lm_cross_entropy(chunk).forward, pred, ids)
        assert residuals.table.shape == (vocab, D)
        assert residuals.lse.shape == (rows,) and residuals.lse.dtype == jnp.float32
        others = [leaf for leaf in jax.tree.leaves(residuals) if leaf is not residuals.table]
        assert all(vocab not in leaf.shape for leaf in others), others


def test_compiled_value_and_grad_keeps_less_than_one_logits_array():
    """Compiled, not run: the fused head's temporaries stay below one (rows, V) float32
    array, which the unfused head's jax.grad needs at least."""
    rows, vocab, chunk = 512, 2048, 64
    pred = HeadInput(
        jax.ShapeDtypeStruct((1, rows, D), jnp.float32),
        jax.ShapeDtypeStruct((vocab, D), jnp.float32),
    )
    ids = jax.ShapeDtypeStruct((1, rows), jnp.int32)
    loss = fnn.lm_cross_entropy(chunk)

    def fused(pred, ids):
        value, residuals = loss.forward(pred, ids)
        return value, loss.backward(residuals)

    def temp(f):
        return jax.jit(f).lower(pred, ids).compile().memory_analysis().temp_size_in_bytes

    logits_bytes = rows * vocab * 4
    assert temp(fused) < logits_bytes / 2
    assert temp(jax.value_and_grad(unfused)) >= logits_bytes


def bad(pred=None, ids=None, **change):
    good_pred, good_ids = inputs()
    return (good_pred._replace(**change) if pred is None else pred), (
        good_ids if ids is None else ids
    )


@pytest.mark.parametrize(
    "args, error, match",
    [
        (bad(pred=np.zeros((BATCH, T, V))), TypeError, "pred must be a HeadInput"),
        (bad(h=np.zeros((BATCH, T, D), np.int32)), TypeError, "h: expected a floating"),
        (bad(table=np.zeros((V, D), np.int32)), TypeError, "table: expected a floating"),
        (bad(h=np.zeros((BATCH * T, D))), ValueError, r"h must have shape \(batch, T, D\)"),
        (bad(table=np.zeros((V, D + 1))), ValueError, "h's width D = 4 differs from"),
        (bad(ids=np.zeros((BATCH, T))), TypeError, "target must be integer token ids"),
        (bad(ids=np.zeros((BATCH * T,), np.int32)), ValueError, r"target must have shape"),
        (bad(ids=np.full((BATCH, T), V)), ValueError, r"target ids must lie in \[0, 7\)"),
        (bad(ids=np.full((BATCH, T), -1)), ValueError, r"got \[-1\]"),
    ],
    ids=[
        "plain_logits",
        "integer_h",
        "integer_table",
        "h_without_T",
        "width_mismatch",
        "float_target",
        "flat_target",
        "id_V",
        "id_negative",
    ],
)
def test_bad_inputs_raise_clear_errors(args, error, match):
    with pytest.raises(error, match=match):
        fnn.lm_cross_entropy(3).forward(*args)


@pytest.mark.parametrize("chunk_size", [0, -2, 2.5, True, "64"])
def test_a_chunk_size_must_be_a_positive_int_or_none(chunk_size):
    with pytest.raises(ValueError, match="chunk_size must be a positive int or None"):
        fnn.lm_cross_entropy(chunk_size)


def test_out_of_range_ids_under_jit_give_a_nan_value_and_no_target_in_the_gradient():
    pred, ids = inputs()
    ids[0, 0] = V
    fused, _ = fused_and_unfused_program(pred, ids)  # lm_cross_entropy(3) among them, jitted
    value, grads, _ = jax.device_get(fused[CHUNKS.index(3)])
    assert np.isnan(value)
    assert all(np.isfinite(g).all() for g in grads)
    z = pred.table @ pred.h[0, 0]  # the row without a target: dz = p/N, p = softmax(z)
    p = np.exp(z - z.max()) / np.sum(np.exp(z - z.max()))
    np.testing.assert_allclose(grads.h[0, 0], p @ pred.table / ids.size, rtol=1e-12)


@jax.jit  # shared: the float32 program compiles once for both table dtypes
def value_lse_and_grads(pred, ids):
    loss = fnn.lm_cross_entropy(3)
    value, residuals = loss.forward(pred, ids)
    return value, residuals.lse, loss.backward(residuals)


@pytest.mark.parametrize("table_dtype", [jnp.float32, jnp.bfloat16])
def test_bfloat16_h_gives_float32_logits_and_results_close_to_float32(table_dtype):
    pred, ids = inputs(np.float32)
    half = HeadInput(pred.h.astype(jnp.bfloat16), pred.table.astype(table_dtype))  # numpy
    value, lse, grads = value_lse_and_grads(half, ids)
    value32, _, grads32 = value_lse_and_grads(pred, ids)
    assert value.dtype == lse.dtype == jnp.float32  # logits and L in float32
    assert grads.h.dtype == jnp.bfloat16 and grads.table.dtype == table_dtype
    assert np.isfinite(value) and all(np.isfinite(np.asarray(g, np.float32)).all() for g in grads)
    np.testing.assert_allclose(value, value32, rtol=2e-2)
    for g, g32 in zip(grads, grads32, strict=True):
        scale = np.max(np.abs(g32))
        assert np.max(np.abs(np.asarray(g, np.float32) - g32)) <= 3e-2 * scale


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_float32_and_float64_stay_in_their_dtype(dtype):
    pred, ids = inputs(dtype)
    loss = fnn.lm_cross_entropy(3)

    def run(pred, ids):
        value, residuals = loss.forward(pred, ids)
        return value, residuals.lse, loss.backward(residuals), tied_logits(pred)

    value, lse, grads, logits = jax.eval_shape(run, pred, ids)
    assert value.dtype == lse.dtype == logits.dtype == dtype
    assert grads.h.dtype == grads.table.dtype == dtype
    assert logits.shape == (BATCH, T, V)


def test_it_is_not_a_registered_loss():
    """Its pred is a HeadInput, not a network's output: `fnn train --loss` cannot use it."""
    from fnn.losses import LOSSES

    assert not any(name.startswith("lm_") for name in LOSSES)

"""multi_head_attention(..., block_size=b), the blockwise layer (fnn/layers/flash_attention.py),
beyond its catalogue items (tests/check/test_catalogue.py): the same function and gradients as
the dense layer, O(T) residuals and intermediates, blocks above the diagonal never
visited, causality, a planted bug in the softmax VJP, and bad settings.

Programs are traced (`jax.make_jaxpr`, `jax.eval_shape`) where shapes are the question;
the numerical comparisons run as one compiled program shared by the tests that read it.
"""

import functools

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.battery import normal, params_for

import fnn
from fnn.layers import multi_head_attention

D, H, BATCH = 4, 2, 3
# (T, block_size, causal): T < block, T % block != 0, T % block == 0, block 1
CONFIGS = [(3, 8, True), (5, 2, False), (5, 2, True), (6, 3, False), (4, 1, True)]


@functools.cache
def dense_and_blockwise():
    """For every config: (params, x, dy) and both layers' (y, dparams, dx), float64, all
    in ONE compiled program."""
    inputs = {}
    for n, (T, b, causal) in enumerate(CONFIGS):
        params = params_for(multi_head_attention(H), (T, D), seed=n)
        x, dy = normal((BATCH, T, D), seed=n, scale=2.0), normal((BATCH, T, D), seed=100 + n)
        inputs[(T, b, causal)] = (params, x, dy)

    @jax.jit
    def run(inputs):
        out = {}
        for (T, b, causal), (params, x, dy) in inputs.items():
            for key, layer in [
                ("dense", multi_head_attention(H, causal=causal)),
                ("blockwise", multi_head_attention(H, causal=causal, block_size=b)),
            ]:
                y, residuals = layer.forward(params, x)
                out[(T, b, causal, key)] = (y, *layer.backward(params, residuals, dy))
        return out

    return jax.device_get(run(inputs))


@pytest.mark.parametrize(("T", "block_size", "causal"), CONFIGS)
def test_blockwise_forward_equals_the_dense_layer_with_the_same_params(T, block_size, causal):
    out = dense_and_blockwise()
    y_dense, y_blockwise = (out[(T, block_size, causal, key)][0] for key in ("dense", "blockwise"))
    assert y_blockwise.dtype == np.float64
    np.testing.assert_allclose(y_blockwise, y_dense, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("T", "block_size", "causal"), CONFIGS)
def test_blockwise_backward_equals_the_dense_layers_hand_written_backward(T, block_size, causal):
    out = dense_and_blockwise()
    _, grads_dense, dx_dense = out[(T, block_size, causal, "dense")]
    _, grads, dx = out[(T, block_size, causal, "blockwise")]
    assert jax.tree.structure(grads) == jax.tree.structure(grads_dense)
    for name in grads_dense:
        np.testing.assert_allclose(grads[name], grads_dense[name], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_dense, rtol=1e-12, atol=1e-12)


def test_init_gives_the_dense_layers_params():
    key = jax.random.PRNGKey(3)
    dense, blockwise = multi_head_attention(H), multi_head_attention(H, block_size=2)
    both = jax.jit(lambda key: [layer.init(key, (5, D))[1] for layer in (dense, blockwise)])
    params_dense, params = both(key)
    assert jax.tree.structure(params) == jax.tree.structure(params_dense)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_dense), strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------ memory: O(T)
def _arrays_of(jaxpr):
    """The shapes of every value a jaxpr computes, its loops' bodies included."""
    for eqn in jaxpr.eqns:
        yield from (v.aval.shape for v in eqn.outvars)
    for sub in jax.extend.core.subjaxprs(jaxpr):
        yield from _arrays_of(sub)


def _step_jaxpr(layer, T, dtype=jnp.float32):
    """The jaxpr of one forward and backward of `layer` on (2, T, 16), traced, not run."""
    params = jax.eval_shape(lambda k: layer.init(k, (T, 16), dtype)[1], jax.random.PRNGKey(0))
    x = jax.ShapeDtypeStruct((2, T, 16), dtype)

    def step(params, x):
        y, residuals = layer.forward(params, x)
        return residuals, layer.backward(params, residuals, y)

    return jax.make_jaxpr(step)(params, x)


def _two_axes_of_length(shape, T):
    return sum(n == T for n in shape) >= 2


def test_no_residual_and_no_intermediate_has_two_axes_of_length_T():
    T = 1000  # distinct from every other axis: batch 2, width 16, 4 heads of 4, block 64
    blockwise = multi_head_attention(4, causal=True, block_size=64)
    jaxpr = _step_jaxpr(blockwise, T)
    residuals = jax.eval_shape(
        lambda k, x: blockwise.forward(blockwise.init(k, (T, 16))[1], x)[1],
        jax.random.PRNGKey(0),
        jax.ShapeDtypeStruct((2, T, 16), jnp.float32),
    )
    assert [tuple(r.shape) for r in residuals] == [(2, T, 16), (2, 4, T, 4), (2, 4, T)]
    shapes = list(_arrays_of(jaxpr.jaxpr))
    assert len(shapes) > 50 and not [s for s in shapes if _two_axes_of_length(s, T)]
    # the dense layer's program has them (P, dP, dS): the test can fail
    dense = _step_jaxpr(multi_head_attention(4, causal=True), T)
    assert [s for s in _arrays_of(dense.jaxpr) if _two_axes_of_length(s, T)]


def test_the_program_does_not_grow_with_T():
    """Loops over the blocks, not Python loops: the same number of operations for 8 blocks
    as for 64 (compile time does not grow with T)."""
    layer = multi_head_attention(2, causal=True, block_size=32)
    sizes = {T: len(list(_arrays_of(_step_jaxpr(layer, T).jaxpr))) for T in (256, 2048)}
    assert sizes[256] == sizes[2048], sizes


def _scan_lengths(jaxpr):
    lengths = [eqn.params["length"] for eqn in jaxpr.eqns if eqn.primitive.name == "scan"]
    for sub in jax.extend.core.subjaxprs(jaxpr):
        lengths += _scan_lengths(sub)
    return lengths


@pytest.mark.parametrize(
    ("causal", "T", "forward_pairs"),
    [(True, 12, [3, 3]), (True, 10, [3, 3]), (False, 12, [9]), (False, 10, [3, 6])],
    ids=["causal", "causal_padded", "full", "full_padded"],
)
def test_causal_blocks_above_the_diagonal_are_never_visited(causal, T, forward_pairs):
    """Block 4, 3 blocks: causal visits the 3 diagonal pairs (masked) and the 3 below
    (plain), 6 of 9, in the forward and again in the backward; without `causal` all 9,
    the 3 with the padded last key block masked when T = 10."""
    layer = multi_head_attention(2, causal=causal, block_size=4)
    lengths = _scan_lengths(_step_jaxpr(layer, T).jaxpr)
    assert lengths == forward_pairs * 2


# ------------------------------------------------------------------------ causality
def test_causal_blockwise_output_at_t_ignores_later_inputs():
    B, T, t = 2, 7, 3  # block 3: t in the middle of block 1, whose diagonal pair is masked
    x = normal((B, T, D), scale=10.0)  # large scores
    changed = x.copy()
    changed[:, t:] += normal((B, T - t, D), seed=1, scale=5.0)
    layers = {c: multi_head_attention(H, causal=c, block_size=3) for c in (True, False)}
    params = params_for(layers[True], (T, D))

    @jax.jit
    def run(params, x):  # the two inputs as one batch
        return {c: fnn.apply(layer, params, x) for c, layer in layers.items()}

    ys = jax.device_get(run(params, np.concatenate([x, changed])))  # numpy: no eager ops
    outputs = {c: np.split(y, 2) for c, y in ys.items()}
    y, y_changed = outputs[True]
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(y_changed))
    np.testing.assert_array_equal(y[:, :t], y_changed[:, :t])  # bit for bit
    assert not np.allclose(y[:, t], y_changed[:, t])
    y, y_changed = outputs[False]  # without the mask every position sees the change
    assert not np.allclose(y[:, :t], y_changed[:, :t])


# ------------------------------------------------------------------------ planted bugs
def _planted(layer, bug):
    """The layer's backward with the softmax VJP's row term `D_i = rowsum(dO ⊙ O)` dropped
    ("no_D": dS = P ⊙ dP) or of the wrong sign ("wrong_sign": dS = P ⊙ (dP + D)): the
    blockwise backward reads O only for D, so it gets 0·O or −O; dW_o = Oᵀ·dy is put back
    from the true O, so the planted bug is the only change."""

    def backward(params, residuals, dy):
        x, O, L = residuals
        wrong = {None: O, "no_D": 0 * O, "wrong_sign": -O}[bug]
        grads, dx = layer.backward(params, residuals._replace(O=wrong), dy)
        D = dy.shape[-1]
        grads["W_o"] = jnp.einsum("bhtk,bte->hke", O, dy).reshape(D, D)  # dW_o = Oᵀ·dy
        return grads, dx

    return layer._replace(backward=backward)


@pytest.mark.parametrize("bug", [None, "no_D", pytest.param("wrong_sign", marks=pytest.mark.slow)])
def test_planted_bug_in_the_blockwise_softmax_vjp_is_caught(bug):
    # T = 3, block 2: a masked diagonal pair in each of the 2 blocks, a pair below it, and
    # a padded last block, in the fewest unrolled steps (compiling is what a check costs)
    good = multi_head_attention(2, causal=True, block_size=2, use_bias=False)
    result = fnn.check_layer(_planted(good, bug), (3, 4), finite_differences=False)
    if bug is None:  # the construction alone changes nothing
        assert result.passed, str(result)
    else:
        assert not result.passed
        assert result.leaves["params['W_qkv']"]["rel"] > 1e-3, str(result)
        assert result.leaves["x"]["rel"] > 1e-3, str(result)
        assert result.leaves["params['W_o']"]["rel"] < 1e-10, str(result)


# ------------------------------------------------------------------------ bad settings
@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "4"])
def test_block_size_must_be_a_positive_int(bad):
    with pytest.raises(
        ValueError,
        match=rf"^multi_head_attention: block_size must be a positive int .*got {bad!r}",
    ):
        multi_head_attention(2, block_size=bad)


def test_the_name_says_blockwise():
    assert multi_head_attention(2, causal=True, block_size=16).name == (
        "multi_head_attention(2, causal, block_size=16)"
    )
    assert multi_head_attention(2).name == "multi_head_attention(2)"

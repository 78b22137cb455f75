"""Every item of the check catalogue (`fnn.check.CASES`): its hand-written backward
against jax.vjp and finite differences in float64, against jax.vjp in float32, its
per-example backward where it declares one, the tie point (integer inputs: relu's zeros,
max_pool's tied maxima) where it applies, and its shapes and dtypes. An item added to
the catalogue is tested here; nothing else to edit.

Whole networks (`network=True`) are checked against jax.vjp only: their layers are items
of their own, checked against finite differences too.

The fast tier (`pytest -m "not slow"`) checks every layer, activation and loss in
float64 and its shapes in float32; the slow tier adds the whole networks, the variants
(VARIANTS: the same layer as a fast item, with other settings), the float32 checks and
the float64 and bfloat16 shapes and dtypes.
"""

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fnn
from fnn.check import CASES, LayerCase, ModelCase, run_checks
from fnn.core import forward

LAYERS = [name for name, case in CASES.items() if isinstance(case, LayerCase)]
PARTS = [name for name, case in CASES.items() if not case.network]


# Items whose layer is also an item checked in the fast tier, with other settings (a
# stride, a padding, no bias, another input rank or target encoding): slow.
VARIANTS = {
    "dense_no_bias", "dense_3d_input", "conv2d_valid_stride2_odd", "conv2d_dilation2",
    "conv2d_explicit_padding", "conv2d_valid_no_bias", "conv1d_stride2_valid_dilation2",
    "max_pool_3x3_stride1_same", "max_pool_1d", "avg_pool_3x3_stride2_same",
    "layer_norm_3d_input", "layer_norm_no_scale_no_bias", "batch_norm_train_nhwc",
    "batch_norm_no_scale_train", "embedding_2d_ids", "attention_4_heads_causal_no_bias",
    "flash_attention", "gpt_block_recompute_all",
    "softmax_cross_entropy_onehot", "softmax_cross_entropy_soft", "lm_cross_entropy_one_chunk",
}  # fmt: skip


# Whole networks repeat their layers' items; variants repeat an item's layer.
FLOAT64_ITEMS = [
    pytest.param(name, marks=pytest.mark.slow) if case.network or name in VARIANTS else name
    for name, case in CASES.items()
]


@pytest.mark.parametrize("name", FLOAT64_ITEMS)
def test_float64_backward_matches_vjp_and_finite_differences(name):
    case = CASES[name]
    (result,) = run_checks([name], "float64", finite_differences=not case.network)
    assert result.passed, str(result)
    assert result.max_rel_err <= 1e-10
    if isinstance(case, ModelCase):
        assert result.finite_differences.startswith("skipped (whole-model")
    elif case.network:
        assert result.finite_differences == "skipped (disabled)"
    else:
        assert result.finite_differences == "passed"
    assert (result.per_example, result.ties) == _expected_verdicts(case, "float64"), str(result)


def _expected_verdicts(case, dtype: str) -> tuple[str, str]:
    """What every item's per-example and tie verdicts must be: "passed" wherever the
    comparison applies (every tie-keeping direction usable: the built-ins have kinks only
    at ties and at 0), else the reason it does not."""
    if not isinstance(case, LayerCase):
        return "n/a", "n/a"
    layer = case.build()
    per_example = "passed" if layer.per_example_backward else "n/a (no per_example_backward)"
    if dtype != "float64":
        return per_example, "skipped (float64 only)"
    if case.network:
        return per_example, "skipped (disabled)"
    if case.make_input is not None:
        return per_example, "n/a (the input comes from make_input)"
    return per_example, "passed"


def test_the_catalogue_checks_per_example_backwards_and_tie_points():
    """Not vacuous: the layers that declare a per-example backward and the ones with ties
    (relu's kink, max_pool) are among the items checked there."""
    declared = {
        n for n, c in CASES.items() if isinstance(c, LayerCase) and c.build().per_example_backward
    }
    assert {"dense", "relu", "max_pool", "layer_norm", "dropout_train", "flatten"} <= declared
    tied = {n for n, c in CASES.items() if _expected_verdicts(c, "float64")[1] == "passed"}
    assert {"relu", "leaky_relu", "max_pool", "max_pool_3x3_stride1_same", "gpt_block"} <= tied


@pytest.mark.slow
@pytest.mark.parametrize("name", PARTS)
def test_float32_backward_matches_vjp(name):
    (result,) = run_checks([name], "float32")
    assert result.passed, str(result)
    assert result.dtype == "float32" and result.finite_differences == "skipped (float64 only)"
    assert (result.per_example, result.ties) == _expected_verdicts(CASES[name], "float32")


def _shapes(case: LayerCase, dtype):
    """(out_shape from init, and y, dparams, dx, params, x) as shapes: init, the input,
    the forward and the backward traced together by ONE `jax.eval_shape`, nothing run."""
    layer = case.build()
    batch_shape = (2, *case.in_shape)
    out = {}

    def init_forward_backward(key):
        out["shape"], params = layer.init(key, case.in_shape, dtype)
        if case.make_input is None:
            x = jnp.zeros(batch_shape, dtype)
        else:
            x = case.make_input(key, batch_shape, dtype)
        ctx = case.ctx(params) if callable(case.ctx) else case.ctx
        y, residuals = forward(layer, params, x, ctx)
        return (y, *layer.backward(params, residuals, jnp.ones_like(y)), params, x)

    shapes = jax.eval_shape(init_forward_backward, jax.random.PRNGKey(0))
    return out["shape"], *shapes


@pytest.mark.parametrize(
    "dtype",
    [
        jnp.float32,
        pytest.param(jnp.float64, marks=pytest.mark.slow),
        pytest.param(jnp.bfloat16, marks=pytest.mark.slow),
    ],
    ids=["float32", "float64", "bfloat16"],
)
@pytest.mark.parametrize("name", LAYERS)
def test_shapes_agree_with_init_and_dtypes_pass_through(name, dtype):
    """The output has the shape init promised; dx is shaped like x and dparams like params;
    y, dx and every gradient keep the input's dtype (float32, float64, bfloat16). Shapes
    only: `jax.eval_shape` traces and computes nothing."""
    out_shape, y, dparams, dx, params, x = _shapes(CASES[name], dtype)
    assert y.shape == (2, *out_shape), (name, dtype)
    assert y.dtype == dtype, (name, dtype)
    assert dx.shape == x.shape, (name, dtype)
    integer_input = jnp.issubdtype(x.dtype, jnp.integer)
    assert dx.dtype == (jax.dtypes.float0 if integer_input else dtype), (name, dtype)
    assert jax.tree.structure(dparams) == jax.tree.structure(params), (name, dtype)
    for g, p in zip(jax.tree.leaves(dparams), jax.tree.leaves(params), strict=True):
        assert g.shape == p.shape and g.dtype == p.dtype == dtype, (name, dtype)


def test_the_variants_are_catalogue_items():
    assert VARIANTS <= set(CASES), VARIANTS - set(CASES)


def test_every_builtin_layer_factory_has_a_catalogue_item():
    """A layer family exported from fnn without a catalogue item would go unchecked."""
    leaves = set()

    def walk(layer):
        leaves.add(layer.name.split("(")[0])
        for sub in layer.sublayers:
            walk(sub)

    for case in CASES.values():
        if isinstance(case, LayerCase):
            walk(case.build())
    exported = {
        "dense", "conv1d", "conv2d", "max_pool", "avg_pool", "flatten", "layer_norm",
        "batch_norm", "dropout", "embedding", "positional_embedding",
        "multi_head_attention", "residual", "serial",
    }  # fmt: skip
    assert exported <= leaves, exported - leaves
    for activation in fnn.layers.ACTIVATIONS:
        assert activation in CASES


@pytest.mark.slow  # five random shapes, five compiles
@settings(max_examples=5, deadline=None)
@given(
    batch=st.integers(1, 5),
    features=st.integers(1, 6),
    width=st.integers(1, 6),
    activation=st.sampled_from(sorted(fnn.layers.ACTIVATIONS)),
)
def test_random_shapes_dense_and_activation(batch, features, width, activation):
    layer = fnn.serial(fnn.dense(width), fnn.get_activation(activation))
    result = fnn.check_layer(layer, (features,), batch=batch, finite_differences=False)
    assert result.passed, str(result)

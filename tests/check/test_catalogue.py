"""Every item of the check catalogue (`fnn.check.CASES`): its hand-written backward
against jax.vjp and finite differences in float64, against jax.vjp in float32, its
per-example backward where it declares one, the tie point (integer inputs: relu's zeros,
max_pool's tied maxima) where it applies, and its shapes and dtypes. An item added to
the catalogue is tested here; nothing else to edit. Every layer and loss factory fnn
exports must have an item (a new one without fails here), and every factory a module of
fnn/layers defines must be exported.

Whole networks (`network=True`) are checked against jax.vjp only: their layers are items
of their own, checked against finite differences too.

The fast tier (`pytest -m "not slow"`) checks every layer, activation and loss in
float64 and its shapes in float32; the slow tier adds the whole networks, the variants
(`variant_of=`: the layer of a fast item, with other settings), the float32 checks of
every layer, activation and loss, and the float64 and bfloat16 shapes and dtypes.
"""

import importlib
import inspect
import pkgutil
import sys

import jax
import jax.numpy as jnp
import pytest
from helpers.planted import layer_factories, loss_factories, returns
from hypothesis import given, settings
from hypothesis import strategies as st

import fnn
from fnn.check import CASES, LayerCase, ModelCase, run_checks
from fnn.core import forward

LAYERS = [name for name, case in CASES.items() if isinstance(case, LayerCase)]
PARTS = [name for name, case in CASES.items() if not case.network]


# Whole networks repeat their layers' items; variants repeat an item's layer.
FLOAT64_ITEMS = [
    pytest.param(name, marks=pytest.mark.slow) if case.network or case.variant_of else name
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


# float32 asks how a layer's backward rounds, which its variants share with it (`fnn check
# --dtype float32` runs every item, variants and networks too)
FLOAT32_ITEMS = [name for name, case in CASES.items() if not case.network and not case.variant_of]


@pytest.mark.slow
@pytest.mark.parametrize("name", FLOAT32_ITEMS)
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


def _family(case) -> str:
    """The name of an item's layer or loss, its hyperparameters left out: "conv2d"."""
    return case.build().name.split("(")[0]


def test_each_variant_repeats_a_fast_item_of_the_same_layer():
    variants = {name: case.variant_of for name, case in CASES.items() if case.variant_of}
    assert len(variants) >= 20  # not vacuous
    for name, of in variants.items():
        base = CASES.get(of)
        assert base is not None, f"{name}: variant_of={of!r} is no item"
        assert not (base.network or base.variant_of), f"{name}: {of} is not a fast item"
        assert _family(CASES[name]) == _family(base), f"{name} is no {_family(base)}"


# Exported factories without an item of their own, each with the reason.
NOT_CATALOGUED = {
    "transformer": "a network of embedding, positional_embedding, residual, layer_norm, "
    "multi_head_attention, dense and gelu, each an item; transformer_block is one such",
}
# Public functions of fnn/layers that return a Layer and are not exported, with the reason.
NOT_EXPORTED = {
    "elementwise": "makes an activation of your own from fn and grad; the built-in "
    "activations are made with it (fnn.layers.activations.elementwise)",
}


def _called_while_building_the_catalogue(factories) -> set[str]:
    """The names of `factories` that building every item calls (a profiler watches the
    builds: nothing is traced or compiled)."""
    codes = {f.__code__: name for name, f in factories.items()}
    called = set()

    def profile(frame, event, _arg):
        if event == "call" and frame.f_code in codes:
            called.add(codes[frame.f_code])

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        for case in CASES.values():
            case.build()
            if isinstance(case, ModelCase):
                case.loss()
    finally:
        sys.setprofile(previous)
    return called


def test_every_exported_layer_and_loss_factory_has_a_catalogue_item():
    """A factory exported from fnn.layers or fnn.losses that no item builds would go
    unchecked; the built-in activations each have an item of their own name."""
    factories = {**layer_factories(), **loss_factories()}
    assert {"dense", "serial", "mlp", "huber"} <= set(factories)  # not vacuous
    assert set(NOT_CATALOGUED) <= set(factories), set(NOT_CATALOGUED) - set(factories)
    missing = set(factories) - _called_while_building_the_catalogue(factories)
    assert missing == set(NOT_CATALOGUED), missing - set(NOT_CATALOGUED)
    for activation in fnn.layers.ACTIVATIONS:
        assert activation in CASES


def test_fnn_layers_exports_every_factory_its_modules_define():
    """fnn.layers exports exactly what its modules list in `__all__`, and every public
    function a module of fnn/layers defines that returns a Layer is listed there."""
    listed = []
    for info in pkgutil.iter_modules(fnn.layers.__path__):
        module = importlib.import_module(f"{fnn.layers.__name__}.{info.name}")
        names = getattr(module, "__all__", [])
        listed += names
        for name, f in vars(module).items():
            if name.startswith("_") or name in NOT_EXPORTED or not inspect.isfunction(f):
                continue
            if f.__module__ == module.__name__ and returns(f, "Layer"):
                assert name in names, f"{module.__name__}.{name} is not in its __all__"
    assert sorted(listed) == sorted(fnn.layers.__all__)
    assert len(set(listed)) == len(listed)
    assert all(name in vars(fnn.layers.activations) for name in NOT_EXPORTED)


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

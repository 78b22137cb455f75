"""Random networks, drawn by hypothesis: depth, widths, every activation, nested `serial`
and `residual` blocks, `layer_norm`, `batch_norm` and `dropout` in training mode, and
`conv2d` with `max_pool`/`avg_pool` and `flatten` on images. Each network's hand-written
backward (params and input) must equal `jax.vjp` of its forward in float64
(`fnn.check_layer(..., finite_differences=False)`: one compiled program per network), and
with a loss on data its "manual" gradient must equal `jax.grad`'s (`fnn.check_model`).

A network is drawn as a spec, nested tuples that hypothesis prints on a failure:
`("dense", 3)`, `("act", "tanh")`, `("layer_norm",)`, `("batch_norm",)`,
`("dropout", 0.5)`, `("conv2d", 2, 3, 1, "SAME")` (channels, kernel, stride, padding),
`("max_pool",)`, `("avg_pool",)` (2×2 windows), `("flatten",)`, `("serial", *specs)`,
`("residual", spec)`.

Draws are reproducible (`derandomize=True`, no example database). The fast tier checks a
handful; the slow tier 22 (16 against `jax.vjp`, 6 with a loss), what the whole suite's
four minutes allow on a 2-core machine (compiles are the cost, about 0.4 s a network).
For hundreds, set `FNN_RANDOM_NETWORKS` (networks against `jax.vjp`; a quarter as many
with a loss): `FNN_RANDOM_NETWORKS=400 pytest -m slow tests/core/test_random_networks.py`.
"""

import math
import os

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fnn

ACTIVATIONS = sorted(fnn.layers.ACTIVATIONS)
RATES = (0.25, 0.5)
FAST = 5  # networks in the fast tier
SLOW = int(os.environ.get("FNN_RANDOM_NETWORKS", "16"))  # slow tier, against jax.vjp
SLOW_MODELS = max(1, SLOW // 4 + 2)  # slow tier, with a loss


def _settings(examples: int):
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def build(spec) -> fnn.Layer:
    """The network of a spec (see the module docstring)."""
    kind, *args = spec
    if kind == "serial":
        return fnn.serial(*map(build, args))
    if kind == "residual":
        return fnn.residual(build(args[0]))
    if kind == "act":
        return fnn.layers.ACTIVATIONS[args[0]]()
    if kind == "conv2d":
        channels, kernel, stride, padding = args
        return fnn.conv2d(channels, kernel, stride=stride, padding=padding)
    if kind == "dropout":
        return fnn.dropout(args[0])
    if kind in ("max_pool", "avg_pool"):
        return getattr(fnn, kind)(2)
    if kind == "dense":
        return fnn.dense(args[0])
    return getattr(fnn, kind)()  # layer_norm, batch_norm, flatten


# --- strategies: each returns (spec, out_shape) for a given in_shape ----------------------


def _keeping(features: int) -> st.SearchStrategy:
    """A layer that keeps its input's shape. No layer_norm of 1 feature: its output is its
    bias whatever the input, and a batch_norm after it, of those equal values, turns the
    rounding of a gradient that is 0 into noise ×1/sqrt(ε) (one differed by 1.6e-9)."""
    return st.one_of(
        st.sampled_from(ACTIVATIONS).map(lambda name: ("act", name)),
        *([st.just(("layer_norm",))] if features > 1 else []),
        st.just(("batch_norm",)),
        st.sampled_from(RATES).map(lambda rate: ("dropout", rate)),
    )


@st.composite
def _block(draw, shape, depth, image):
    """One block on inputs of `shape`: a leaf, or (with `depth` left) a serial chain or a
    residual block of smaller blocks."""
    choices = ["keep", "dense"]
    if image:
        choices.append("conv")
        if min(shape[:2]) >= 2:
            choices.append("pool")
    if depth > 0:
        choices += ["serial", "residual"]
    kind = draw(st.sampled_from(choices))
    if kind == "keep":
        return draw(_keeping(shape[-1])), shape
    if kind == "dense":  # on images: over the channels, at every position
        width = draw(st.integers(1, 4))
        return ("dense", width), (*shape[:-1], width)
    if kind == "conv":
        channels = draw(st.integers(1, 3))
        kernel = draw(st.integers(1, 3))
        stride = draw(st.integers(1, 2))
        padding = draw(st.sampled_from(["SAME", "VALID"]))
        if padding == "VALID" and kernel > min(shape[:2]):
            padding = "SAME"
        if padding == "SAME":
            sizes = [math.ceil(n / stride) for n in shape[:2]]
        else:
            sizes = [(n - kernel) // stride + 1 for n in shape[:2]]
        return ("conv2d", channels, kernel, stride, padding), (*sizes, channels)
    if kind == "pool":
        pool = draw(st.sampled_from(["max_pool", "avg_pool"]))
        return (pool,), (shape[0] // 2, shape[1] // 2, shape[2])
    if kind == "serial":
        specs, out = [], shape
        for _ in range(draw(st.integers(1, 3))):
            spec, out = draw(_block(out, depth - 1, image))
            specs.append(spec)
        return ("serial", *specs), out
    inner, out = draw(_block(shape, depth - 1, image))  # residual: back to the input's shape
    if out != shape:
        if out[:-1] != shape[:-1]:  # the spatial size changed: no skip connection fits
            return draw(_block(shape, 0, image))
        inner = ("serial", inner, ("dense", shape[-1]))
    return ("residual", inner), shape


@st.composite
def networks(draw, image=None):
    """`(spec, in_shape, batch, out_shape)`: a network of 1 to 4 blocks nested up to 3
    deep, on flat features or (`image`; default: either) on `(height, width, channels)`
    images, whose feature maps are flattened before a last block of flat layers."""
    image = draw(st.booleans()) if image is None else image
    if image:
        shape = (draw(st.integers(2, 5)), draw(st.integers(2, 5)), draw(st.integers(1, 3)))
    else:
        shape = (draw(st.integers(1, 5)),)
    in_shape, specs = shape, []
    for _ in range(draw(st.integers(1, 4))):
        spec, shape = draw(_block(shape, draw(st.integers(0, 3)), image))
        specs.append(spec)
    if image:
        specs.append(("flatten",))
        shape = (math.prod(shape),)
        spec, shape = draw(_block(shape, draw(st.integers(0, 2)), False))
        specs.append(spec)
    # A batch of 3 or more: batch_norm over 2 examples maps them to ±1 whatever they are
    # (up to ε), so every gradient before it is rounding noise, which a relative test
    # cannot compare (a layer_norm of 2 features before it made one differ by 7e-10).
    return ("serial", *specs), in_shape, draw(st.integers(3, 4)), shape


def check(net: fnn.Layer, in_shape, batch: int, seed: int = 0) -> fnn.CheckResult:
    """`net`'s hand-written backward against `jax.vjp`, float64, at params in general
    position; dropout and batch_norm in training mode (a fixed mask, batch statistics)."""
    ctx = None
    if net.takes_ctx:
        key = jax.random.PRNGKey(seed + 1)
        ctx = lambda params: fnn.Ctx(True, key, fnn.init_state(net, params))  # noqa: E731
    return fnn.check_layer(
        net, in_shape, batch=batch, key=seed, dtype="float64", finite_differences=False, ctx=ctx
    )


def _assert_checks(drawn):
    spec, in_shape, batch, _ = drawn
    result = check(build(spec), in_shape, batch)
    assert result.passed, f"{spec} on {in_shape} (batch {batch}): {result}"


@_settings(FAST)
@given(networks())
def test_random_networks_match_jax(drawn):
    _assert_checks(drawn)


@pytest.mark.slow
@_settings(SLOW)
@given(networks())
def test_many_random_networks_match_jax(drawn):
    _assert_checks(drawn)


LOSSES = ("mean_squared_error", "huber", "softmax_cross_entropy")


def check_with_loss(net: fnn.Layer, in_shape, batch: int, outputs: int, loss: str):
    """The whole objective, `net` and `loss`, on random data (labels for the
    cross-entropy): the "manual" gradient against `jax.grad`'s ("autodiff"),
    `fnn.check_model`, as `fnn train` checks before training; training mode."""
    rng = np.random.default_rng(0)
    x = 2 * rng.standard_normal((batch, *in_shape))
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, outputs, batch)
    else:
        y = rng.standard_normal((batch, outputs))
    ctx = None
    if net.takes_ctx:
        key = jax.random.PRNGKey(1)
        ctx = lambda params: fnn.Ctx(True, key, fnn.init_state(net, params))  # noqa: E731
    return fnn.check_model(net, fnn.get_loss(loss), x, y, dtype="float64", ctx=ctx)


@pytest.mark.slow
@_settings(SLOW_MODELS)
@given(networks(), st.sampled_from(LOSSES))
def test_random_networks_with_a_loss_match_jax_grad(drawn, loss):
    spec, in_shape, batch, (outputs,) = drawn
    result = check_with_loss(build(spec), in_shape, batch, outputs, loss)
    assert result.passed, f"{spec} on {in_shape} (batch {batch}) + {loss}: {result}"


# --- the property can fail -----------------------------------------------------------------


def _wrong_dense(width: int) -> fnn.Layer:
    """`fnn.dense(width)` with a wrong bias gradient: db = 1.5·Σ dy instead of Σ dy."""
    layer = fnn.dense(width)

    def backward(params, residuals, dy):
        grads, dx = layer.backward(params, residuals, dy)
        return {**grads, "b": 1.5 * grads["b"]}, dx  # wrong: db = 1.5·Σ_batch dy

    return layer._replace(backward=backward, name=f"wrong_dense({width})")


@_settings(2)
@given(networks())
def test_the_property_fails_for_a_network_with_a_wrong_layer(drawn):
    """The same check on the drawn network with a wrong layer at its end (where its
    bias gradient is Σ dy of the random cotangent, never zero) fails, naming it. Two
    draws: the derandomized draws begin with a one-layer network and a nested one on
    images (max_pool, conv2d, layer_norm, batch_norm, dropout, residual blocks), as with
    a loss below; the wrong layer is the same on each."""
    spec, in_shape, batch, _ = drawn
    net = fnn.serial(build(spec), _wrong_dense(2))
    result = check(net, in_shape, batch)
    assert not result.passed
    assert "params[1]['b']" in str(result), result


@_settings(2)
@given(networks(), st.sampled_from(LOSSES))
def test_the_property_with_a_loss_fails_for_a_network_with_a_wrong_layer(drawn, loss):
    """As above, with a loss: the wrong bias gradient is 1.5·Σ ∂L/∂pred over the batch,
    which random data does not make zero."""
    spec, in_shape, batch, _ = drawn
    net = fnn.serial(build(spec), _wrong_dense(2))
    result = check_with_loss(net, in_shape, batch, 2, loss)
    assert not result.passed
    assert "params[1]['b']" in str(result), result

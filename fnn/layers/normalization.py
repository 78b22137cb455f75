"""Normalisation layers, each with a hand-written backward pass: `layer_norm`,
`rms_norm` and `batch_norm`.

`layer_norm` normalises every example over its last (feature) axis, so it keeps no state
and needs no key: the statistics are those of the example itself, in training and in
evaluation alike.

Notation, per example row `x` of `N` features: `μ = mean(x)`, `var = mean((x − μ)²)`,
`σ = sqrt(var + ε)`, `x̂ = (x − μ)/σ`, and the forward is `y = x̂ ⊙ scale + bias`. For a
cotangent `dy` and `g = dy ⊙ scale`, the vector-Jacobian product is

    dx     = (1/σ)·(g − mean(g) − x̂ · mean(g ⊙ x̂))     (means over the feature axis)
    dscale = Σ_batch dy ⊙ x̂
    dbias  = Σ_batch dy

The first line follows from `∂x̂_j/∂x_i = (1/σ)·(δ_ij − 1/N − x̂_i·x̂_j/N)`: the `1/N`
term is the gradient through μ, the `x̂_i·x̂_j/N` term the gradient through σ.

`rms_norm` leaves out the centring: `rms = sqrt(mean(x²) + ε)`, `x̂ = x/rms`, `y = x̂ ⊙
scale`. Then `∂x̂_j/∂x_i = (1/rms)·(δ_ij − x̂_i·x̂_j/N)`, so `dx = (1/rms)·(g − x̂ ·
mean(g ⊙ x̂))`: the formula above without the path through μ.

**Zero variance.** `ε` is what keeps a constant row (or, for `batch_norm`, a feature
constant over the batch, such as any batch of one) finite: there `σ = √ε`, `x̂ = 0`,
`y = bias`, and `dx = (g − mean(g))/√ε`, the formula above with `x̂ = 0`, which is also
the derivative of the definition with that `ε` (tests/core/test_robustness.py).

`batch_norm` is the same computation over the other axes: μ and var are per feature
(the last axis), taken over the batch and any spatial axes, so in training the formula
for `dx` is the one above with the means over those axes. In evaluation it uses running
statistics instead, `x̂ = (x − running_mean)/sqrt(running_var + ε)`: an affine map of x,
whose backward is `dx = g/σ`. The running statistics are state, not params: see
`batch_norm`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fnn.core import EVALUATION, Array, Layer, check_floating, expect
from fnn.errors import SettingError
from fnn.layers.parts import row

__all__ = ["batch_norm", "layer_norm", "rms_norm"]


def _affine_init(name: str, use_scale: bool, use_bias: bool):
    """The init both layers share: `scale` (ones) and `bias` (zeros) over the last axis,
    each where used; the output has the input's shape."""

    def init(key, in_shape, dtype=jnp.float32):
        del key
        expect(len(in_shape) >= 1, name, f"in_shape must end in a feature axis, got {in_shape}")
        params = {}
        if use_scale:
            params["scale"] = jnp.ones((in_shape[-1],), dtype)
        if use_bias:
            params["bias"] = jnp.zeros((in_shape[-1],), dtype)
        return tuple(in_shape), params

    return init


def _scale_shift(params, x_hat):
    """`y = x̂ ⊙ scale + bias`, each where the params hold it."""
    y = x_hat
    if "scale" in params:
        y = y * row(params["scale"], x_hat.ndim)  # x̂ ⊙ scale
    if "bias" in params:
        y = y + row(params["bias"], x_hat.ndim)  # x̂ ⊙ scale + bias
    return y


def _scale_shift_backward(params, x_hat, dy, axes):
    """`(grads, g)` for `_scale_shift`: `dscale`, `dbias` summed over `axes` (every axis
    but the last for the batch gradient; all but the batch and the last per example), and
    `g = dy ⊙ scale`, the cotangent of `x̂`."""
    grads = {}
    g = dy
    if "scale" in params:
        grads["scale"] = jnp.sum(dy * x_hat, axis=axes)  # dscale = Σ dy ⊙ x̂
        g = dy * row(params["scale"], dy.ndim)  # g = dy ⊙ scale
    if "bias" in params:
        grads["bias"] = jnp.sum(dy, axis=axes)  # dbias = Σ dy
    return grads, g


def _normalized_backward(g, x_hat, inv_sigma, axes):
    """dx of `x̂ = (x − μ)/σ` when μ and σ are statistics over `axes`."""
    g_mean = jnp.mean(g, axis=axes, keepdims=True)  # mean(g): the path through μ
    gx_mean = jnp.mean(g * x_hat, axis=axes, keepdims=True)  # mean(g ⊙ x̂): through σ
    return inv_sigma * (g - g_mean - x_hat * gx_mean)  # dx = (1/σ)(g − mean(g) − x̂·mean(g⊙x̂))


def _check_epsilon(name, epsilon):
    if not isinstance(epsilon, int | float) or not epsilon > 0:
        raise SettingError(
            f"{name}: epsilon must be a positive float, got {epsilon!r}", settings=("epsilon",)
        )


class LayerNormResiduals(NamedTuple):
    """What layer_norm's backward needs."""

    x_hat: Array  # shape=(batch, ..., features): the normalised input (x − μ)/σ
    inv_sigma: Array  # shape=(batch, ..., 1): 1/σ of each example


def layer_norm(*, epsilon: float = 1e-5, use_scale: bool = True, use_bias: bool = True) -> Layer:
    """Layer normalisation over the last axis, `y = (x − μ)/sqrt(var + ε) ⊙ scale + bias`.

    Arguments:
      epsilon: added to the variance before the square root (a positive float).
      use_scale: whether to multiply by a learned `scale` (initialised to ones).
      use_bias: whether to add a learned `bias` (initialised to zeros).

    Shapes: `x: (batch, ..., features)`, params `{"scale": (features,), "bias":
    (features,)}` (either left out when not used), `y` shaped like `x`. μ and var are
    taken over the last axis of each example. Residuals (`LayerNormResiduals`): `x̂` and
    `1/σ` only. The formulas of the backward are in fnn/layers/normalization.py.

    Inputs must be floating point: integer inputs raise a TypeError (cast them first).
    """
    name = "layer_norm"
    _check_epsilon(name, epsilon)

    def _features(params):
        """The feature count the params were built for, or None without params."""
        shapes = {params[k].shape for k in ("scale", "bias") if k in params}
        expect(
            len(shapes) <= 1 and all(len(s) == 1 for s in shapes),
            name,
            f"scale and bias must both be (features,), got {shapes}",
        )
        return next(iter(shapes))[0] if shapes else None

    def forward(params, x):
        check_floating(name, x)
        features = _features(params)
        expect(
            x.ndim >= 2 and (features is None or x.shape[-1] == features),
            name,
            f"expected input of shape (batch, ..., {features or 'features'}), got {x.shape}",
        )
        mu = jnp.mean(x, axis=-1, keepdims=True)  # μ = mean(x)
        centred = x - mu  # x − μ
        var = jnp.mean(centred * centred, axis=-1, keepdims=True)  # var = mean((x − μ)²)
        inv_sigma = 1 / jnp.sqrt(var + jnp.asarray(epsilon, x.dtype))  # 1/σ = 1/sqrt(var + ε)
        x_hat = centred * inv_sigma  # x̂ = (x − μ)/σ
        return _scale_shift(params, x_hat), LayerNormResiduals(x_hat, inv_sigma)

    def backward(params, residuals, dy):
        x_hat, inv_sigma = residuals
        axes = tuple(range(dy.ndim - 1))  # the batch (and any other) axes
        grads, g = _scale_shift_backward(params, x_hat, dy, axes)  # g = dy ⊙ scale
        return grads, _normalized_backward(g, x_hat, inv_sigma, -1)  # μ, σ over features

    def per_example_backward(params, residuals, dy):
        x_hat, inv_sigma = residuals
        axes = tuple(range(1, dy.ndim - 1))  # every example on its own
        grads, g = _scale_shift_backward(params, x_hat, dy, axes)  # g = dy ⊙ scale
        return grads, _normalized_backward(g, x_hat, inv_sigma, -1)

    return Layer(
        _affine_init(name, use_scale, use_bias),
        forward,
        backward,
        name,
        per_example_backward=per_example_backward,
    )


class RMSNormResiduals(NamedTuple):
    """What rms_norm's backward needs."""

    x_hat: Array  # shape=(batch, ..., features): the normalised input x/rms
    inv_rms: Array  # shape=(batch, ..., 1): 1/rms of each example


def _rms_backward(g, x_hat, inv_rms):
    """dx of `x̂ = x/rms`, rms over the last axis."""
    gx_mean = jnp.mean(g * x_hat, axis=-1, keepdims=True)  # mean(g ⊙ x̂): the path through rms
    return inv_rms * (g - x_hat * gx_mean)  # dx = (1/rms)(g − x̂·mean(g ⊙ x̂))


def rms_norm(*, epsilon: float = 1e-5, use_scale: bool = True) -> Layer:
    """Root-mean-square normalisation over the last axis, `y = x/sqrt(mean(x²) + ε) ⊙
    scale`: layer_norm without the centring and the bias (Zhang and Sennrich, 2019).

    Arguments:
      epsilon: added to the mean square before the square root (a positive float).
      use_scale: whether to multiply by a learned `scale` (initialised to ones).

    Shapes: `x: (batch, ..., features)`, params `{"scale": (features,)}` (`{}` without
    scale), `y` shaped like `x`. Residuals (`RMSNormResiduals`): `x̂` and `1/rms` only.
    The formulas of the backward are in fnn/layers/normalization.py.

    Inputs must be floating point: integer inputs raise a TypeError (cast them first).
    """
    name = "rms_norm"
    _check_epsilon(name, epsilon)

    def forward(params, x):
        check_floating(name, x)
        features = params["scale"].shape[-1] if "scale" in params else None
        expect(
            x.ndim >= 2 and (features is None or x.shape[-1] == features),
            name,
            f"expected input of shape (batch, ..., {features or 'features'}), got {x.shape}",
        )
        mean_square = jnp.mean(x * x, axis=-1, keepdims=True)  # mean(x²)
        inv_rms = 1 / jnp.sqrt(mean_square + jnp.asarray(epsilon, x.dtype))  # 1/rms
        x_hat = x * inv_rms  # x̂ = x/rms
        return _scale_shift(params, x_hat), RMSNormResiduals(x_hat, inv_rms)

    def backward(params, residuals, dy):
        axes = tuple(range(dy.ndim - 1))  # the batch (and any other) axes
        grads, g = _scale_shift_backward(params, residuals.x_hat, dy, axes)  # g = dy ⊙ scale
        return grads, _rms_backward(g, *residuals)

    def per_example_backward(params, residuals, dy):
        axes = tuple(range(1, dy.ndim - 1))  # every example on its own
        grads, g = _scale_shift_backward(params, residuals.x_hat, dy, axes)  # g = dy ⊙ scale
        return grads, _rms_backward(g, *residuals)

    init = _affine_init(name, use_scale, use_bias=False)
    return Layer(init, forward, backward, name, per_example_backward=per_example_backward)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["x_hat", "inv_sigma", "batch_mean", "batch_var"],
    meta_fields=["train"],
)
@dataclasses.dataclass(frozen=True)
class BatchNormResiduals:
    """What batch_norm's backward and `update_state` need."""

    x_hat: Array  # shape=(batch, ..., features): the normalised input (x − μ)/σ
    inv_sigma: Array  # shape=(1, ..., 1, features): 1/σ of each feature
    batch_mean: Array | None  # shape=(features,): this batch's μ; None in evaluation
    batch_var: Array | None  # shape=(features,): this batch's (biased) variance; None in eval
    train: bool  # static: batch statistics (True) or running statistics (False)


def batch_norm(
    *,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
) -> Layer:
    """Batch normalisation of each feature (the last axis) over the batch and any spatial
    axes, `y = (x − μ)/sqrt(var + ε) ⊙ scale + bias`.

    Training and evaluation differ, and the layer takes a `fnn.Ctx` to say which:

    - training (`Ctx(train=True, ...)`): μ and var are the statistics of this batch
      (biased variance), and gradients flow through them;
    - evaluation (`Ctx(state=state)`, the default mode): μ and var are the running
      statistics in `ctx.state`, constants for the gradient.

    **State.** The running statistics `{"mean": (features,), "var": (features,)}` are kept
    apart from params, so optimisers never touch them: `fnn.init_state(net, params)`
    gives mean 0 and variance 1, and after a training-mode forward
    `fnn.update_state(net, state, residuals)` returns
    `momentum·state + (1 − momentum)·batch_statistics` (an exponential moving average;
    the variance is the biased batch variance). `fnn.train` carries the state through its
    steps and epochs, and under data parallelism the batch statistics are those of the
    global batch (the mean over a sharded axis is a cross-device reduction).

    Arguments:
      momentum: the running statistics' decay, in [0, 1) (PyTorch's momentum 0.1 is 0.9).
      epsilon: added to the variance before the square root (a positive float).
      use_scale, use_bias: learned `scale` (ones) and `bias` (zeros); at least one, as
        they size the running statistics.

    Shapes: `x: (batch, ..., features)`, e.g. `(batch, features)` after a dense layer or
    NHWC `(batch, height, width, channels)` after a convolution; `y` shaped like `x`.
    Residuals (`BatchNormResiduals`): `x̂` and `1/σ`, plus the batch μ and var in
    training (for the state).
    """
    if not isinstance(momentum, int | float) or not 0 <= momentum < 1:
        raise SettingError(
            f"batch_norm: momentum must be a float in [0, 1), got {momentum!r}",
            settings=("momentum",),
        )
    name = "batch_norm"
    _check_epsilon(name, epsilon)
    if not (use_scale or use_bias):
        raise SettingError(
            "batch_norm: use_scale and use_bias cannot both be False: the params size the "
            "running statistics; follow it with no affine map by keeping scale at ones",
            settings=("use_scale", "use_bias"),
        )

    def _vector(params):
        return params["scale"] if use_scale else params["bias"]

    def init_state(params):
        v = _vector(params)
        return {"mean": jnp.zeros_like(v), "var": jnp.ones_like(v)}

    def _running(state, features):
        """The running mean and variance from `state`, checked."""
        expect(
            isinstance(state, dict) and set(state) == {"mean", "var"},
            name,
            "evaluation uses the running statistics: pass fnn.Ctx(state=state) with state "
            "from fnn.init_state(net, params) (or the state training returned), or "
            f"Ctx(train=True); got state {state!r}",
        )
        expect(
            state["mean"].shape == (features,) and state["var"].shape == (features,),
            name,
            f"expected running mean and var of shape ({features},), got "
            f"{state['mean'].shape} and {state['var'].shape}",
        )
        return state["mean"], state["var"]

    def forward(params, x, ctx=EVALUATION):
        check_floating(name, x)
        features = _vector(params).shape[0]
        expect(
            x.ndim >= 2 and x.shape[-1] == features,
            name,
            f"expected input of shape (batch, ..., {features}), got {x.shape}",
        )
        axes = tuple(range(x.ndim - 1))  # the batch and spatial axes
        eps = jnp.asarray(epsilon, x.dtype)
        batch_mean: Array | None  # the batch's statistics, in training only
        batch_var: Array | None
        if ctx.train:
            mu = jnp.mean(x, axis=axes, keepdims=True)  # μ = mean over batch (and space)
            centred = x - mu  # x − μ
            var = jnp.mean(centred * centred, axis=axes, keepdims=True)  # mean((x − μ)²)
            batch_mean, batch_var = mu.reshape(-1), var.reshape(-1)
        else:
            mean, var = _running(ctx.state, features)
            centred = x - row(mean.astype(x.dtype), x.ndim)  # x − running mean
            var = row(var.astype(x.dtype), x.ndim)
            batch_mean = batch_var = None
        inv_sigma = 1 / jnp.sqrt(var + eps)  # 1/σ = 1/sqrt(var + ε)
        x_hat = centred * inv_sigma  # x̂ = (x − μ)/σ
        y = _scale_shift(params, x_hat)  # y = x̂ ⊙ scale + bias
        return y, BatchNormResiduals(x_hat, inv_sigma, batch_mean, batch_var, train=ctx.train)

    def backward(params, residuals, dy):
        axes = tuple(range(dy.ndim - 1))
        grads, g = _scale_shift_backward(params, residuals.x_hat, dy, axes)  # g = dy ⊙ scale
        if not residuals.train:  # evaluation: μ and σ are constants
            return grads, g * residuals.inv_sigma  # dx = g/σ
        return grads, _normalized_backward(g, residuals.x_hat, residuals.inv_sigma, axes)

    def update_state(state, residuals):
        batch = {"mean": residuals.batch_mean, "var": residuals.batch_var}
        m = momentum
        return {  # running ← m·running + (1 − m)·batch
            k: m * state[k] + (1 - m) * batch[k].astype(state[k].dtype) for k in ("mean", "var")
        }

    return Layer(
        _affine_init(name, use_scale, use_bias),
        forward,
        backward,
        name,
        takes_ctx=True,
        init_state=init_state,
        update_state=update_state,
    )

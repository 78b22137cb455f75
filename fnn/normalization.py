"""Normalisation layers, each with a hand-written backward pass.

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
"""

from __future__ import annotations

import jax.numpy as jnp

from fnn.core import Layer, check_floating


def layer_norm(*, epsilon: float = 1e-5, use_scale: bool = True, use_bias: bool = True) -> Layer:
    """Layer normalisation over the last axis, `y = (x − μ)/sqrt(var + ε) ⊙ scale + bias`.

    Arguments:
      epsilon: added to the variance before the square root (a positive float).
      use_scale: whether to multiply by a learned `scale` (initialised to ones).
      use_bias: whether to add a learned `bias` (initialised to zeros).

    Shapes: `x: (batch, ..., features)`, params `{"scale": (features,), "bias":
    (features,)}` (either left out when not used), `y` shaped like `x`. μ and var are
    taken over the last axis of each example. Residuals: `x̂` and `1/σ` only (`1/σ` of
    shape `(batch, ..., 1)`). The formulas of the backward are in fnn/normalization.py.

    Inputs must be floating point: integer inputs raise a TypeError (cast them first).
    """
    if not isinstance(epsilon, int | float) or not epsilon > 0:
        raise ValueError(f"layer_norm: epsilon must be a positive float, got {epsilon!r}")
    name = "layer_norm"

    def init(key, in_shape, dtype=jnp.float32):
        if len(in_shape) < 1:
            raise ValueError(f"{name}: in_shape must end in a feature axis, got {in_shape}")
        features = in_shape[-1]
        params = {}
        if use_scale:
            params["scale"] = jnp.ones((features,), dtype)
        if use_bias:
            params["bias"] = jnp.zeros((features,), dtype)
        return tuple(in_shape), params

    def _features(params):
        """The feature count the params were built for, or None without params."""
        shapes = {params[k].shape for k in ("scale", "bias") if k in params}
        if len(shapes) > 1 or any(len(s) != 1 for s in shapes):
            raise ValueError(f"{name}: scale and bias must both be (features,), got {shapes}")
        return next(iter(shapes))[0] if shapes else None

    def _row(v, ndim):
        """A (features,) vector reshaped to broadcast over (batch, ..., features)."""
        return v.reshape((1,) * (ndim - 1) + (v.shape[0],))

    def forward(params, x):
        check_floating(name, x)
        features = _features(params)
        if x.ndim < 2 or (features is not None and x.shape[-1] != features):
            expected = "features" if features is None else features
            raise ValueError(
                f"{name}: expected input of shape (batch, ..., {expected}), got {x.shape}"
            )
        mu = jnp.mean(x, axis=-1, keepdims=True)  # μ = mean(x)
        centred = x - mu  # x − μ
        var = jnp.mean(centred * centred, axis=-1, keepdims=True)  # var = mean((x − μ)²)
        inv_sigma = 1 / jnp.sqrt(var + jnp.asarray(epsilon, x.dtype))  # 1/σ = 1/sqrt(var + ε)
        x_hat = centred * inv_sigma  # x̂ = (x − μ)/σ
        y = x_hat
        if use_scale:
            y = y * _row(params["scale"], x.ndim)  # x̂ ⊙ scale
        if use_bias:
            y = y + _row(params["bias"], x.ndim)  # x̂ ⊙ scale + bias
        return y, (x_hat, inv_sigma)

    def backward(params, residuals, dy):
        x_hat, inv_sigma = residuals
        batch_axes = tuple(range(dy.ndim - 1))
        grads = {}
        g = dy
        if use_scale:
            grads["scale"] = jnp.sum(dy * x_hat, axis=batch_axes)  # dscale = Σ_batch dy ⊙ x̂
            g = dy * _row(params["scale"], dy.ndim)  # g = dy ⊙ scale
        if use_bias:
            grads["bias"] = jnp.sum(dy, axis=batch_axes)  # dbias = Σ_batch dy
        g_mean = jnp.mean(g, axis=-1, keepdims=True)  # mean(g): the path through μ
        gx_mean = jnp.mean(g * x_hat, axis=-1, keepdims=True)  # mean(g ⊙ x̂): through σ
        dx = inv_sigma * (g - g_mean - x_hat * gx_mean)  # dx = (1/σ)(g − mean(g) − x̂·mean(g⊙x̂))
        return grads, dx

    return Layer(init, forward, backward, name)

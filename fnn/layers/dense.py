"""The fully connected layer, `y = x @ W + b`, with its hand-written backward pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnn.core import Layer, check_floating, expect
from fnn.errors import SettingError
from fnn.initializers import Initializer, get_initializer
from fnn.layers.parts import row

__all__ = ["dense"]


def dense(
    out_features: int,
    *,
    w_init: str | Initializer = "glorot_uniform",
    b_init: str | Initializer = "zeros",
    use_bias: bool = True,
) -> Layer:
    """A fully connected layer, `y = x @ W + b`.

    Arguments:
      out_features: the output width.
      w_init, b_init: initialisers (names from `fnn.initializers` or callables
        `(key, shape, dtype) -> array`). The tutorial's network is
        `w_init=fnn.initializers.uniform(0.01), b_init="zeros"`.
      use_bias: whether to add `b`.

    Shapes: `x: (batch, ..., in)`, params `{"W": (in, out), "b": (out,)}` (no `"b"`
    without bias), `y: (batch, ..., out)`. Residuals: `x` only. Per-example gradients
    (`fnn.per_example_grads`): the outer products `x_i ⊗ dy_i`.

    Inputs must be floating point: integer inputs raise a `DTypeError`, a TypeError (cast
    them first).
    """
    if not isinstance(out_features, int) or out_features < 1:
        raise SettingError(
            f"dense: out_features must be a positive int, got {out_features!r}",
            settings=("out_features",),
        )
    w_init = get_initializer(w_init)
    b_init = get_initializer(b_init)
    name = f"dense({out_features})"

    def init(key, in_shape, dtype=jnp.float32):
        expect(len(in_shape) >= 1, name, f"in_shape must end in a feature axis, got {in_shape}")
        w_key, b_key = jax.random.split(key)
        params = {"W": w_init(w_key, (in_shape[-1], out_features), dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (out_features,), dtype)
        return (*in_shape[:-1], out_features), params

    def forward(params, x):
        check_floating(name, x)
        W = params["W"]
        expect(
            W.ndim == 2 and W.shape[1] == out_features,
            name,
            f"expected W of shape (in, {out_features}), got {W.shape}",
        )
        expect(
            x.ndim >= 2 and x.shape[-1] == W.shape[0],
            name,
            f"expected input of shape (batch, ..., {W.shape[0]}), got {x.shape}",
        )
        y = x @ W  # Z = A·W
        if use_bias:
            b = params["b"]
            expect(
                b.shape == (out_features,),
                name,
                f"expected b of shape ({out_features},), got {b.shape}",
            )
            y = y + row(b, y.ndim)  # Z = A·W + b
        return y, x

    def backward(params, x, dy):
        x2 = x.reshape(-1, x.shape[-1])  # (batch·..., in)
        dy2 = dy.reshape(-1, dy.shape[-1])  # (batch·..., out)
        grads = {"W": x2.T @ dy2}  # dW = Aᵀ·dZ (the loss already holds the 1/m)
        if use_bias:
            grads["b"] = jnp.sum(dy2, axis=0)  # db = Σ_batch dZ
        dx = dy @ params["W"].T  # dA_prev = dZ·Wᵀ
        return grads, dx

    def per_example_backward(params, x, dy):
        batch = x.shape[0]
        x3 = x.reshape(batch, -1, x.shape[-1])  # (B, positions, in)
        dy3 = dy.reshape(batch, -1, dy.shape[-1])  # (B, positions, out)
        grads = {"W": jnp.einsum("bpi,bpo->bio", x3, dy3)}  # dW_i = x_iᵀ·dZ_i, an outer product
        if use_bias:
            grads["b"] = jnp.sum(dy3, axis=1)  # db_i = Σ_positions dZ_i
        dx = dy @ params["W"].T  # dA_prev = dZ·Wᵀ, row by row
        return grads, dx

    return Layer(init, forward, backward, name, per_example_backward=per_example_backward)

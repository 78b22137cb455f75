"""The two contracts of fnn, `Layer` and `Loss`, and the type aliases they use.

A layer is three pure functions over a parameter pytree::

    init(key, in_shape, dtype=jnp.float32) -> (out_shape, params)   # shapes without batch
    forward(params, x)                     -> (y, residuals)        # x: (batch, ...features)
    backward(params, residuals, dy)        -> (dparams, dx)         # shaped like params, x

`backward` is the vector-Jacobian product of `forward`, written by hand: for a cotangent
`dy` shaped like `y` it returns `(dy·∂y/∂params, dy·∂y/∂x)`, exactly what
`jax.vjp(lambda p, x: forward(p, x)[0], params, x)[1](dy)` returns. `residuals` is
whatever `backward` needs and nothing more.

A loss is two pure functions::

    forward(pred, target)       -> (value, residuals)   # value: a scalar, mean over the batch
    backward(residuals, dvalue) -> dpred                # shaped like pred

The batch convention is batch-first and row-major: a dense layer computes `x @ W + b`
with `W: (in, out)`. Losses divide by the batch size (they average), so layers sum over
the batch in their backward: the tutorial's `dW = A·dZᵀ/m` is `dW = xᵀ·dy` with the `1/m`
already inside `dy`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Params = Any  # a pytree of arrays; () for parameter-free layers
Residuals = Any  # a pytree of arrays kept by forward for backward
Shape = tuple[int, ...]
PRNGKey = jax.Array
DType = Any


class Layer(NamedTuple):
    """A differentiable building block with a hand-written backward pass.

    Attributes:
      init: `init(key, in_shape, dtype=jnp.float32) -> (out_shape, params)`. Shapes
        exclude the batch axis.
      forward: `forward(params, x) -> (y, residuals)`, `x` of shape `(batch, *in_shape)`.
      backward: `backward(params, residuals, dy) -> (dparams, dx)`, the vector-Jacobian
        product of `forward`; `dparams` has the structure of `params`, `dx` the shape of x.
      name: a short description used in error messages and check reports.
      sublayers: the layers a combinator (`serial`) chains, in order; `()` for a
        leaf layer. Lets tools walk a network (e.g. `fnn.per_example`).
    """

    init: Callable[..., tuple[Shape, Params]]
    forward: Callable[[Params, Array], tuple[Array, Residuals]]
    backward: Callable[[Params, Residuals, Array], tuple[Params, Array]]
    name: str = "layer"
    sublayers: tuple[Layer, ...] = ()


class Loss(NamedTuple):
    """A scalar objective with a hand-written gradient.

    Attributes:
      forward: `forward(pred, target) -> (value, residuals)`; `value` is a scalar, the
        mean over the batch (and over output elements where the loss says so).
      backward: `backward(residuals, dvalue=1.0) -> dpred`, shaped like `pred`.
      name: a short description used in error messages and check reports.
    """

    forward: Callable[[Array, Array], tuple[Array, Residuals]]
    backward: Callable[..., Array]
    name: str = "loss"


def apply(layer: Layer, params: Params, x: Array) -> Array:
    """Runs `layer.forward` and returns only the output (no residuals)."""
    return layer.forward(params, x)[0]


def init(layer: Layer, key: PRNGKey, in_shape: Shape, dtype: DType = jnp.float32) -> Params:
    """Initialises `layer` for inputs of shape `(batch, *in_shape)` and returns its params."""
    return layer.init(key, tuple(in_shape), dtype)[1]


def check_floating(name: str, x: Array) -> None:
    """Raises a TypeError naming `name` when `x` is not a floating-point array."""
    dtype = jnp.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{name}: expected a floating-point input, got dtype {dtype}; "
            f"cast it first, e.g. x.astype(jnp.float32)"
        )


def choose(kind: str, name: str, table: dict[str, Any]) -> Any:
    """Looks `name` up in `table`, or raises a ValueError listing the valid names."""
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(sorted(table))
        raise ValueError(f"unknown {kind} {name!r}; valid {kind}s: {valid}") from None

"""Flatten: every axis but the batch into one, with its backward (a reshape back)."""

from __future__ import annotations

import math

from fnn.core import Layer, check_floating, expect
from fnn.layers.parts import parameter_free_init
from fnn.layers.spatial import shape_carrier

__all__ = ["flatten"]


def flatten() -> Layer:
    """Flattens every axis but the batch: `(batch, *shape) → (batch, prod(shape))`, in
    row-major (C) order, so that NHWC becomes `h·W·C + w·C + c`.

    Residuals: a zero-size array that carries the input's shape. Backward: `dx` is `dy`
    reshaped back (a reshape is a permutation-free re-indexing: its VJP is the inverse
    reshape).
    """
    name = "flatten"

    def forward(params, x):
        del params
        check_floating(name, x)
        expect(x.ndim >= 1, name, f"expected input of shape (batch, ...), got {x.shape}")
        return x.reshape(x.shape[0], -1), shape_carrier(x)

    def backward(params, in_shape, dy):
        del params
        return (), dy.reshape(dy.shape[0], *in_shape.shape[1:])  # dx = reshape⁻¹(dy)

    return Layer(
        parameter_free_init(lambda in_shape: (math.prod(in_shape),)),
        forward,
        backward,
        name,
        per_example_backward=backward,
    )

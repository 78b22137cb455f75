"""Pieces several layers are built from: the init of a parameter-free layer, explicit
broadcasting of a per-feature vector, and masks kept as one bit per element."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from fnn.core import Array, Shape


def parameter_free_init(out_shape: Callable[[Shape], Shape] = tuple) -> Callable:
    """The init of a layer without params: `init(key, in_shape, dtype) -> (out_shape(in_shape),
    ())`; by default the output has the input's shape."""

    def init(key, in_shape, dtype=jnp.float32):
        del key, dtype
        return out_shape(tuple(in_shape)), ()

    return init


def row(v: Array, ndim: int) -> Array:
    """A `(features,)` vector reshaped to `(1, ..., 1, features)`, to broadcast explicitly
    over a `(batch, ..., features)` array of `ndim` axes."""
    return v.reshape((1,) * (ndim - 1) + (v.shape[0],))


def pack_mask(mask: Array) -> Array:
    """A boolean mask packed 8 elements to a byte along the last axis: 1 bit per element,
    what relu, leaky_relu and dropout keep for their backward instead of an array."""
    return jnp.packbits(mask, axis=-1)


def unpack_mask(bits: Array, like: Array) -> Array:
    """The boolean mask `pack_mask` packed, shaped like `like`."""
    return jnp.unpackbits(bits, axis=-1, count=like.shape[-1]).astype(bool)

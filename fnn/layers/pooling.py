"""Pooling layers, max_pool and avg_pool, with hand-written backward passes.

Channels last, one or two spatial axes: `x: (batch, height, width, channels)` or
`(batch, width, channels)`. Shapes and paddings follow fnn/layers/spatial.py. A window
element at offset `t` of output position `i` reads input position `i·s + t − lo`; both
backwards route `dy[i]` back to those positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from fnn.core import Array, Layer, check_floating, expect
from fnn.layers.parts import parameter_free_init
from fnn.layers.spatial import (
    AXES,
    IN_SHAPES,
    SPATIAL,
    Padding,
    ints,
    parse_padding,
    resolve_padding,
    shape_carrier,
    spatial_out,
)

__all__ = ["avg_pool", "max_pool"]


def _window_offsets(window: Sequence[int]) -> list[tuple[int, ...]]:
    """Every offset `t` in a window, in row-major order (the order ties are broken in)."""
    return [tuple(int(i) for i in t) for t in np.ndindex(*window)]


def _patch(xp: Array, t: Sequence[int], strides: Sequence[int], out: Sequence[int]) -> Array:
    """`xp[b, i·s + t, c]` for every output position i: the window element at offset t."""
    start = (0, *t, 0)
    stops = (ti + (o - 1) * s + 1 for ti, o, s in zip(t, out, strides, strict=True))
    limit = (xp.shape[0], *stops, xp.shape[-1])
    return lax.slice(xp, start, limit, (1, *strides, 1))


def _place(g: Array, t, strides, pads, in_sizes) -> Array:
    """The transpose of `_patch` on the unpadded input: `g[b, i, c]` added at input position
    `i·s + t − lo` (s − 1 zeros between entries, padding cropped): shaped like x."""
    config = [(0, 0, 0)]
    for ti, s, (lo, _), n, o in zip(t, strides, pads, in_sizes, g.shape[1:-1], strict=True):
        config.append((ti - lo, n - (ti - lo) - (o - 1) * s - 1, s - 1))
    config.append((0, 0, 0))
    return lax.pad(g, jnp.zeros((), g.dtype), config)


class MaxPoolResiduals(NamedTuple):
    """What max_pool's backward needs: where each maximum was, and the input's shape."""

    argmax: Array  # shape=(batch, *out_spatial, channels), int8 (int32 for > 127 offsets):
    #                the row-major offset in its window of the first maximum
    in_shape: Array  # shape=(0, *in_spatial, channels): no data, the input's shape


def _pool_config(
    kind: str, window: int | Sequence[int], stride: int | Sequence[int] | None, padding: Padding
) -> tuple[int, tuple[int, ...], tuple[int, ...], str | tuple[tuple[int, int], ...], str]:
    """`(rank, window, strides, padding, name)` of a pooling layer, checked."""
    window = ints(window, 2, "window", kind) if isinstance(window, int) else window
    rank = len(tuple(window))
    window = ints(window, rank, "window", kind)
    expect(rank in SPATIAL, kind, f"window must have 1 or 2 sizes, got {window!r}")
    strides = window if stride is None else ints(stride, rank, "stride", kind)
    padding = parse_padding(padding, rank, kind)
    parts = ["x".join(map(str, window))]
    if strides != window:
        parts.append("stride " + "x".join(map(str, strides)))
    parts.append(padding if isinstance(padding, str) else f"padding {list(padding)}")
    name = f"{kind}({', '.join(parts)})"
    if not isinstance(padding, str):  # a window lying wholly in padding has no input in it
        expect(
            all(lo < k and hi < k for (lo, hi), k in zip(padding, window, strict=True)),
            name,
            f"explicit padding {list(padding)} must be smaller than the window "
            f"{tuple(window)} on every side: a window lying wholly in padding would hold no "
            "input (max −∞, average 0/0)",
        )
    return rank, window, strides, padding, name


def _pool_shapes(name, rank, window, strides, padding):
    """init for a pooling layer, and the forward's input check."""

    def out_shape(in_shape):
        expect(
            len(in_shape) == rank + 1,
            name,
            f"in_shape must be {IN_SHAPES[rank]} (channels last), got {in_shape}",
        )
        _, out = spatial_out(name, in_shape[:-1], window, strides, padding, (1,) * rank)
        return (*out, in_shape[-1])

    def check(x):
        check_floating(name, x)
        expect(x.ndim == rank + 2, name, f"expected input of shape {AXES[rank]}, got {x.shape}")
        return spatial_out(name, x.shape[1:-1], window, strides, padding, (1,) * rank)

    return parameter_free_init(out_shape), check


def max_pool(
    window: int | Sequence[int] = 2,
    stride: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> Layer:
    """Max pooling over windows of each channel.

    Arguments:
      window: `k` or `(kh, kw)` for NHWC input; a 1-tuple `(kw,)` for NWC input.
      stride: the window stride (default: the window, non-overlapping windows).
      padding: "VALID", "SAME" or explicit pairs; padding never wins a window (−∞).

    Shapes: `x: (batch, height, width, channels)`, `y: (batch, out_h, out_w, channels)`,
    params `()`. Residuals (`MaxPoolResiduals`): the offset of each window's maximum, one
    int8 per output element, and a zero-size array that carries the input's shape; not x.

    Backward: `dx[b, i·s + t − lo, c] += dy[b, i, c]` for the `t` holding the maximum of
    window `i` (the derivative of max is 1 at the argmax, 0 elsewhere). Ties go to the
    first maximum in row-major window order, which is what `jax.vjp` of
    `lax.reduce_window(x, -inf, lax.max, ...)` does too (XLA's select-and-scatter with ≥).
    """
    rank, window, strides, padding, name = _pool_config("max_pool", window, stride, padding)
    offsets = _window_offsets(window)
    index_dtype = jnp.int8 if len(offsets) <= 127 else jnp.int32
    init, check = _pool_shapes(name, rank, window, strides, padding)

    def forward(params, x):
        del params
        pads, out = check(x)
        low = jnp.array(-jnp.inf, x.dtype)
        xp = lax.pad(x, low, [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)])
        y = jnp.full((x.shape[0], *out, x.shape[-1]), -jnp.inf, x.dtype)
        argmax = jnp.zeros(y.shape, index_dtype)
        for index, t in enumerate(offsets):  # y = max_t x[i·s + t − lo], first max kept
            patch = _patch(xp, t, strides, out)
            larger = (patch > y) | jnp.isnan(patch)  # a NaN wins, as in XLA's max
            y = jnp.where(larger, patch, y)
            argmax = jnp.where(larger, jnp.array(index, index_dtype), argmax)
        return y, MaxPoolResiduals(argmax, shape_carrier(x))

    def backward(params, residuals, dy):
        del params
        in_sizes = residuals.in_shape.shape[1:-1]
        pads = resolve_padding(padding, in_sizes, window, strides)
        zero = jnp.zeros((), dy.dtype)
        dx = jnp.zeros((dy.shape[0], *in_sizes, dy.shape[-1]), dy.dtype)
        for index, t in enumerate(offsets):
            routed = jnp.where(residuals.argmax == index, dy, zero)  # dy where t is the argmax
            dx = dx + _place(routed, t, strides, pads, in_sizes)  # dx[i·s + t − lo] += dy[i]
        return (), dx

    return Layer(init, forward, backward, name, per_example_backward=backward)


def _window_counts(in_sizes, window, strides, pads, out) -> np.ndarray:
    """How many real (non-padding) input elements each output's window covers, shaped
    `(1, *out, 1)`: per axis `#{t < k : 0 ≤ i·s + t − lo < n}`, multiplied over axes."""
    counts = np.ones((1,), np.int64)
    for n, k, s, (lo, _), o in zip(in_sizes, window, strides, pads, out, strict=True):
        start = np.arange(o) * s - lo  # the first input index of each window
        per_axis = np.minimum(start + k, n) - np.maximum(start, 0)
        counts = np.multiply.outer(counts, np.maximum(per_axis, 0))
    return counts.reshape((1, *out, 1))


def avg_pool(
    window: int | Sequence[int] = 2,
    stride: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> Layer:
    """Average pooling over windows of each channel.

    Arguments as `max_pool`. Each output is the mean of the real input elements of its
    window: with "SAME" or explicit padding, a window that hangs over the edge divides by
    the number of input elements it covers, not by the window size (padding is not
    averaged in: TensorFlow's and Keras' convention).

    Shapes as `max_pool`, params `()`. Residuals: only a zero-size array that carries the
    input's shape (the counts depend on shapes alone).

    Backward: `dx[b, i·s + t − lo, c] += dy[b, i, c] / count[i]` for every offset `t`
    of window `i` that lies inside the input.
    """
    rank, window, strides, padding, name = _pool_config("avg_pool", window, stride, padding)
    offsets = _window_offsets(window)
    init, check = _pool_shapes(name, rank, window, strides, padding)

    def forward(params, x):
        del params
        pads, out = check(x)
        count = _window_counts(x.shape[1:-1], window, strides, pads, out)
        total = lax.reduce_window(
            x,
            np.zeros((), x.dtype),  # a concrete 0: lax's differentiable window sum
            lax.add,
            (1, *window, 1),
            (1, *strides, 1),
            [(0, 0), *pads, (0, 0)],
        )  # Σ_t x[i·s + t − lo], padding adds 0
        return total / jnp.asarray(count, x.dtype), shape_carrier(x)  # y = Σ_t x / count

    def backward(params, in_shape, dy):
        del params
        in_sizes = in_shape.shape[1:-1]
        pads = resolve_padding(padding, in_sizes, window, strides)
        count = _window_counts(in_sizes, window, strides, pads, dy.shape[1:-1])
        share = dy / jnp.asarray(count, dy.dtype)  # ∂y[i]/∂x[i·s + t − lo] = 1/count[i]
        dx = jnp.zeros((dy.shape[0], *in_sizes, dy.shape[-1]), dy.dtype)
        for t in offsets:
            dx = dx + _place(share, t, strides, pads, in_sizes)  # dx[i·s + t − lo] += dy/count
        return (), dx

    return Layer(init, forward, backward, name, per_example_backward=backward)

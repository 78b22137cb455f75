"""Convolution, pooling and flatten layers, each with a hand-written backward pass.

Layout: channels last. A 2-d layer takes `x: (batch, height, width, channels)` (NHWC)
and a kernel `W: (kh, kw, in_channels, out_channels)` (HWIO); a 1-d layer takes
`x: (batch, width, channels)` (NWC) and `W: (kw, in, out)` (WIO).

Notation in the comments, per spatial axis: input size `n`, output size `o`, kernel size
`k`, stride `s`, dilation `d`, the effective kernel size `k_eff = (k − 1)·d + 1`, and the
explicit padding `(lo, hi)` that "SAME" and "VALID" resolve to:

    VALID: lo = hi = 0,                  o = ⌊(n − k_eff)/s⌋ + 1
    SAME:  o = ⌈n/s⌉, total = max((o − 1)·s + k_eff − n, 0), lo = ⌊total/2⌋, hi = total − lo
    explicit (lo, hi):                   o = ⌊(n + lo + hi − k_eff)/s⌋ + 1

(the same rule as `jax.lax.padtype_to_pads`). The forward of a convolution is then

    y[b, i, co] = Σ_{t, ci} x[b, i·s + t·d − lo, ci] · W[t, ci, co] + bias[co]

(one spatial index shown; out-of-range x reads as 0), and its vector-Jacobian product:

    dx = the transposed convolution of dy with the flipped kernel: dy dilated by s
         (s − 1 zeros between its entries), padded by (k_eff − 1 − lo, n + lo − (o − 1)·s − 1),
         correlated with W flipped in space and with in/out swapped, kernel dilation d;
    dW = the correlation of x with dy over the batch: dW[t, ci, co] = Σ_{b, i} x[b, i·s +
         t·d − lo, ci] · dy[b, i, co], a convolution whose "batch" is ci, whose contracted
         axis is b, with window stride d and the kernel (dy) dilated by s;
    db = Σ_{b, i} dy[b, i, co].

Negative paddings above (a stride that leaves the last rows of x unused, a large explicit
padding) crop, as `lax.conv_general_dilated` and `lax.pad` define them.

All three convolutions are written in the forward's layouts (NHWC input, HWIO kernel,
NHWC output), the operands transposed to fit: dx's kernel is W flipped with its in/out
axes swapped; dW's "input" is x as (ci, h, w, b) and its "kernel" dy as (h, w, b, co).
XLA's CPU backend runs a convolution in other layouts (the batch-contracted `dW` in
particular) on a slow generic path when the step sits inside a loop such as fit's
`lax.scan` over an epoch: about 15× slower per step on the digits cnn (benchmarks/README.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnn.core import Array, Layer, check_floating
from fnn.initializers import Initializer, get_initializer

Padding = str | Sequence[tuple[int, int]]

_SPATIAL = {1: "W", 2: "HW"}
_AXES = {1: "(batch, width, channels)", 2: "(batch, height, width, channels)"}
_IN_SHAPES = {1: "(width, channels)", 2: "(height, width, channels)"}


# ------------------------------------------------------------------ shapes and paddings


def _ints(value: int | Sequence[int], rank: int, what: str, name: str) -> tuple[int, ...]:
    """`value` as `rank` positive ints (an int is repeated), or a ValueError."""
    values = (value,) * rank if isinstance(value, int) else tuple(value)
    if len(values) != rank or not all(isinstance(v, int) and v >= 1 for v in values):
        raise ValueError(f"{name}: {what} must be a positive int or {rank} of them, got {value!r}")
    return values


def _padding(padding: Padding, rank: int, name: str) -> str | tuple[tuple[int, int], ...]:
    """Padding as "SAME", "VALID" or `rank` (lo, hi) pairs of ints ≥ 0 (one pair for 1-d)."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"{name}: padding must be 'SAME', 'VALID' or (lo, hi) pairs")
        return padding.upper()
    pairs = tuple(padding)
    if rank == 1 and len(pairs) == 2 and all(isinstance(p, int) for p in pairs):
        pairs = (pairs,)  # conv1d(..., padding=(lo, hi))
    try:
        pairs = tuple((int(lo), int(hi)) for lo, hi in pairs)
    except (TypeError, ValueError):
        pairs = ()
    if len(pairs) != rank or any(p < 0 for pair in pairs for p in pair):
        raise ValueError(
            f"{name}: padding must be 'SAME', 'VALID' or {rank} (lo, hi) pairs of "
            f"non-negative ints, got {padding!r}"
        )
    return pairs


def resolve_padding(
    padding: str | Sequence[tuple[int, int]],
    in_sizes: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int] | None = None,
) -> tuple[tuple[int, int], ...]:
    """The explicit `(lo, hi)` per spatial axis that `padding` means for these sizes."""
    dilation = dilation or (1,) * len(window)
    if not isinstance(padding, str):
        return tuple((int(lo), int(hi)) for lo, hi in padding)
    pads = []
    for n, k, s, d in zip(in_sizes, window, strides, dilation, strict=True):
        if padding == "VALID":
            pads.append((0, 0))
            continue
        k_eff = (k - 1) * d + 1
        total = max((-(-n // s) - 1) * s + k_eff - n, 0)  # (⌈n/s⌉ − 1)·s + k_eff − n
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def output_sizes(
    in_sizes: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dilation: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """o = ⌊(n + lo + hi − k_eff)/s⌋ + 1 per spatial axis (may be ≤ 0: too small an input)."""
    dilation = dilation or (1,) * len(window)
    return tuple(
        (n + lo + hi - ((k - 1) * d + 1)) // s + 1
        for n, k, s, d, (lo, hi) in zip(in_sizes, window, strides, dilation, pads, strict=True)
    )


def _spatial_out(name, in_sizes, window, strides, padding, dilation):
    """(pads, output sizes) for these input sizes, or a ValueError for too small an input."""
    pads = resolve_padding(padding, in_sizes, window, strides, dilation)
    out = output_sizes(in_sizes, window, strides, pads, dilation)
    if any(o < 1 for o in out):
        raise ValueError(
            f"{name}: spatial input size {tuple(in_sizes)} is smaller than the window "
            f"{tuple(window)} (dilation {tuple(dilation)}, padding {pads}): no output"
        )
    return pads, out


def _shape_carrier(x: Array) -> Array:
    """A zero-size array of shape `(0, *x.shape[1:])`: no data, only x's shape, which a
    backward needs when it cannot be told from dy's (a stride that does not divide)."""
    return jnp.zeros((0, *x.shape[1:]), x.dtype)


# ------------------------------------------------------------------------ convolutions


def _conv(
    rank: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int],
    padding: Padding,
    dilation: int | Sequence[int],
    w_init: str | Initializer,
    b_init: str | Initializer,
    use_bias: bool,
) -> Layer:
    """A `rank`-d convolution layer (rank 1: NWC/WIO, rank 2: NHWC/HWIO)."""
    kind = f"conv{rank}d"
    if not isinstance(out_channels, int) or out_channels < 1:
        raise ValueError(f"{kind}: out_channels must be a positive int, got {out_channels!r}")
    kernel = _ints(kernel_size, rank, "kernel_size", kind)
    strides = _ints(stride, rank, "stride", kind)
    dilation = _ints(dilation, rank, "dilation", kind)
    padding = _padding(padding, rank, kind)
    w_init = get_initializer(w_init)
    b_init = get_initializer(b_init)
    parts = [str(out_channels), "x".join(map(str, kernel))]
    if any(s != 1 for s in strides):
        parts.append("stride " + "x".join(map(str, strides)))
    parts.append(padding if isinstance(padding, str) else f"padding {list(padding)}")
    if any(d != 1 for d in dilation):
        parts.append("dilation " + "x".join(map(str, dilation)))
    name = f"{kind}({', '.join(parts)})"
    spatial_axes = tuple(range(1, rank + 1))
    axes = _SPATIAL[rank]
    # All three convolutions use the forward's layouts, the operands transposed to fit
    # (see the module docstring: XLA's CPU backend runs other layouts ~15× slower in a loop).
    forward_dims = (f"N{axes}C", f"{axes}IO", f"N{axes}C")  # x: NHWC, W: HWIO, y: NHWC

    def init(key, in_shape, dtype=jnp.float32):
        if len(in_shape) != rank + 1:
            raise ValueError(
                f"{name}: in_shape must be {_IN_SHAPES[rank]} (channels last), got "
                f"{tuple(in_shape)}"
            )
        _, out = _spatial_out(name, in_shape[:-1], kernel, strides, padding, dilation)
        w_key, b_key = jax.random.split(key)
        params = {"W": w_init(w_key, (*kernel, in_shape[-1], out_channels), dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (out_channels,), dtype)
        return (*out, out_channels), params

    def forward(params, x):
        check_floating(name, x)
        W = params["W"]
        if W.shape[:rank] != kernel or W.ndim != rank + 2 or W.shape[-1] != out_channels:
            expected = ", ".join(map(str, kernel))
            raise ValueError(
                f"{name}: expected W of shape ({expected}, in, {out_channels}), got {W.shape}"
            )
        if x.ndim != rank + 2 or x.shape[-1] != W.shape[-2]:
            expected = _AXES[rank].replace("channels", str(W.shape[-2]))
            raise ValueError(f"{name}: expected input of shape {expected}, got {x.shape}")
        pads, _ = _spatial_out(name, x.shape[1:-1], kernel, strides, padding, dilation)
        # y[b, i, co] = Σ_{t, ci} x[b, i·s + t·d − lo, ci]·W[t, ci, co]
        y = lax.conv_general_dilated(
            x, W, strides, pads, rhs_dilation=dilation, dimension_numbers=forward_dims
        )
        if use_bias:
            b = params["b"]
            if b.shape != (out_channels,):
                raise ValueError(f"{name}: expected b of shape ({out_channels},), got {b.shape}")
            y = y + b.reshape((1,) * (rank + 1) + (out_channels,))  # + bias[co], explicit
        return y, x

    def backward(params, x, dy):
        W = params["W"]
        in_sizes, out_sizes = x.shape[1:-1], dy.shape[1:-1]
        pads = resolve_padding(padding, in_sizes, kernel, strides, dilation)
        # dx[b, j, ci] = Σ_{i, t: i·s + t·d − lo = j} dy[b, i, co]·W[t, ci, co]: dy dilated by
        # s, padded by (k_eff − 1 − lo, n + lo − (o − 1)·s − 1), correlated with W flipped
        dx_pads = [
            ((k - 1) * d - lo, n + lo - (o - 1) * s - 1)
            for n, o, k, s, d, (lo, _) in zip(
                in_sizes, out_sizes, kernel, strides, dilation, pads, strict=True
            )
        ]
        W_flipped = jnp.flip(W, axis=tuple(range(rank)))  # W[k − 1 − t]
        W_flipped = jnp.swapaxes(W_flipped, -1, -2)  # in ↔ out: (k..., out, in), HWIO again
        dx = lax.conv_general_dilated(
            dy,
            W_flipped,
            (1,) * rank,
            dx_pads,
            lhs_dilation=strides,
            rhs_dilation=dilation,
            dimension_numbers=forward_dims,
        )
        # dW[t, ci, co] = Σ_{b, i} x[b, i·s + t·d − lo, ci]·dy[b, i, co]: x padded by
        # (lo, (k − 1)·d + (o − 1)·s + 1 − lo − n), window stride d, dy dilated by s
        dw_pads = [
            (lo, (k - 1) * d + (o - 1) * s + 1 - lo - n)
            for n, o, k, s, d, (lo, _) in zip(
                in_sizes, out_sizes, kernel, strides, dilation, pads, strict=True
            )
        ]
        # In the forward's layouts: x as (ci, spatial..., b), dy as (spatial..., b, co).
        # ci plays the batch and b the contracted channel: a convolution over b.
        x_t = jnp.moveaxis(jnp.moveaxis(x, 0, -1), -2, 0)  # (ci, spatial..., b)
        dy_t = jnp.moveaxis(dy, 0, -2)  # (spatial..., b, co): a kernel from b to co
        dW = lax.conv_general_dilated(
            x_t, dy_t, dilation, dw_pads, rhs_dilation=strides, dimension_numbers=forward_dims
        )  # (ci, k..., co)
        dW = jnp.moveaxis(dW, 0, -2)  # (k..., ci, co)
        grads = {"W": dW}
        if use_bias:
            grads["b"] = jnp.sum(dy, axis=(0, *spatial_axes))  # db = Σ_{b, i} dy[b, i, co]
        return grads, dx

    return Layer(init, forward, backward, name)


def conv2d(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: Padding = "SAME",
    dilation: int | Sequence[int] = 1,
    w_init: str | Initializer = "glorot_uniform",
    b_init: str | Initializer = "zeros",
    use_bias: bool = True,
) -> Layer:
    """A 2-d convolution (cross-correlation, as in every deep learning library).

    Arguments:
      out_channels: the number of output channels (filters).
      kernel_size: `k` or `(kh, kw)`.
      stride: `s` or `(sh, sw)`.
      padding: "SAME" (output `⌈n/s⌉`, the extra row or column of padding at the end),
        "VALID" (no padding) or explicit `((lo_h, hi_h), (lo_w, hi_w))`.
      dilation: the kernel dilation `d` or `(dh, dw)` (atrous convolution).
      w_init, b_init: initialisers (names from `fnn.initializers` or callables); the
        variance-scaling ones read fan-in as `kh·kw·in` and fan-out as `kh·kw·out`.
      use_bias: whether to add a bias per output channel.

    Shapes: `x: (batch, height, width, in)` (NHWC), params `{"W": (kh, kw, in, out),
    "b": (out,)}` (HWIO; no `"b"` without bias), `y: (batch, out_h, out_w, out)`.
    Residuals: `x` only. The formulas of the backward are in this module's docstring.
    """
    return _conv(2, out_channels, kernel_size, stride, padding, dilation, w_init, b_init, use_bias)


def conv1d(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: Padding = "SAME",
    dilation: int | Sequence[int] = 1,
    w_init: str | Initializer = "glorot_uniform",
    b_init: str | Initializer = "zeros",
    use_bias: bool = True,
) -> Layer:
    """A 1-d convolution over sequences: `conv2d` with one spatial axis.

    Shapes: `x: (batch, width, in)` (NWC), params `{"W": (kw, in, out), "b": (out,)}`
    (WIO), `y: (batch, out_w, out)`. Explicit padding is `(lo, hi)` or `[(lo, hi)]`.
    Residuals: `x` only.
    """
    return _conv(1, out_channels, kernel_size, stride, padding, dilation, w_init, b_init, use_bias)


# ----------------------------------------------------------------------------- pooling


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


def _pool_config(kind, window, stride, padding):
    window = _ints(window, 2, "window", kind) if isinstance(window, int) else window
    rank = len(tuple(window))
    window = _ints(window, rank, "window", kind)
    if rank not in _SPATIAL:
        raise ValueError(f"{kind}: window must have 1 or 2 sizes, got {window!r}")
    strides = window if stride is None else _ints(stride, rank, "stride", kind)
    padding = _padding(padding, rank, kind)
    parts = ["x".join(map(str, window))]
    if strides != window:
        parts.append("stride " + "x".join(map(str, strides)))
    parts.append(padding if isinstance(padding, str) else f"padding {list(padding)}")
    return rank, window, strides, padding, f"{kind}({', '.join(parts)})"


def _pool_shapes(name, rank, window, strides, padding):
    """init for a pooling layer, and the forward's input check."""

    def init(key, in_shape, dtype=jnp.float32):
        del key, dtype
        if len(in_shape) != rank + 1:
            raise ValueError(
                f"{name}: in_shape must be {_IN_SHAPES[rank]} (channels last), got "
                f"{tuple(in_shape)}"
            )
        _, out = _spatial_out(name, in_shape[:-1], window, strides, padding, (1,) * rank)
        return (*out, in_shape[-1]), ()

    def check(x):
        check_floating(name, x)
        if x.ndim != rank + 2:
            raise ValueError(f"{name}: expected input of shape {_AXES[rank]}, got {x.shape}")
        return _spatial_out(name, x.shape[1:-1], window, strides, padding, (1,) * rank)

    return init, check


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
        return y, MaxPoolResiduals(argmax, _shape_carrier(x))

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

    return Layer(init, forward, backward, name)


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
        return total / jnp.asarray(count, x.dtype), _shape_carrier(x)  # y = Σ_t x / count

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

    return Layer(init, forward, backward, name)


def flatten() -> Layer:
    """Flattens every axis but the batch: `(batch, *shape) → (batch, prod(shape))`, in
    row-major (C) order, so that NHWC becomes `h·W·C + w·C + c`.

    Residuals: a zero-size array that carries the input's shape. Backward: `dx` is `dy`
    reshaped back (a reshape is a permutation-free re-indexing: its VJP is the inverse
    reshape).
    """
    name = "flatten"

    def init(key, in_shape, dtype=jnp.float32):
        del key, dtype
        return (math.prod(in_shape),), ()

    def forward(params, x):
        del params
        check_floating(name, x)
        if x.ndim < 1:
            raise ValueError(f"{name}: expected input of shape (batch, ...), got {x.shape}")
        return x.reshape(x.shape[0], -1), _shape_carrier(x)

    def backward(params, in_shape, dy):
        del params
        return (), dy.reshape(dy.shape[0], *in_shape.shape[1:])  # dx = reshape⁻¹(dy)

    return Layer(init, forward, backward, name)


# ----------------------------------------------------------------------------- networks


def cnn(
    outputs: int,
    *,
    channels: Sequence[int] = (16, 32),
    strides: Sequence[int] = (1, 2),
    kernel_size: int = 3,
    hidden: Sequence[int] = (64,),
    activation: str | Layer = "relu",
    output_activation: str | Layer | None = None,
    w_init: str | Initializer = "he_normal",
    batch_norm: bool = False,
    dropout: float = 0.0,
) -> Layer:
    """A small convolutional network for images: SAME convolutions with `activation`
    after each, flatten, dense hidden layers, and a dense output layer of width `outputs`.

    `batch_norm` puts a `batch_norm` between each convolution and its activation (per
    channel, over batch, height and width); `dropout` a `dropout(rate)` after each hidden
    dense layer's activation. Either makes the network take a `fnn.Ctx`.

    The default is `conv2d(16, 3) relu, conv2d(32, 3, stride 2) relu, flatten, dense(64)
    relu, dense(outputs)`; input `(batch, height, width, channels)`, output
    `(batch, outputs)` (logits unless `output_activation` is given).
    """
    from fnn.activations import get_activation
    from fnn.dropout import dropout as dropout_layer
    from fnn.layers import dense
    from fnn.network import serial
    from fnn.normalization import batch_norm as batch_norm_layer

    channels, strides, hidden = list(channels), list(strides), list(hidden)
    if not channels or len(channels) != len(strides):
        raise ValueError(
            f"cnn: channels and strides must be non-empty and of the same length, got "
            f"{channels} and {strides}"
        )
    act = get_activation(activation)
    layers: list[Layer] = []
    for width, stride in zip(channels, strides, strict=True):
        layers.append(conv2d(width, kernel_size, stride=stride, w_init=w_init))
        layers += [batch_norm_layer(), act] if batch_norm else [act]
    layers.append(flatten())
    for width in hidden:
        layers += [dense(width, w_init=w_init), act]
        layers += [dropout_layer(dropout)] if dropout else []
    layers.append(dense(outputs))
    if output_activation is not None:
        layers.append(get_activation(output_activation))
    return serial(*layers)

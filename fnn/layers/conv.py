"""Convolution layers, conv2d and conv1d, with a hand-written backward pass.

Layout: channels last. A 2-d layer takes `x: (batch, height, width, channels)` (NHWC)
and a kernel `W: (kh, kw, in_channels, out_channels)` (HWIO); a 1-d layer takes
`x: (batch, width, channels)` (NWC) and `W: (kw, in, out)` (WIO).

Notation in the comments, per spatial axis: input size `n`, output size `o`, kernel size
`k`, stride `s`, dilation `d`, `k_eff = (k − 1)·d + 1` and the explicit padding `(lo, hi)`
(fnn/layers/spatial.py says how "SAME" and "VALID" resolve). The forward of a convolution is

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
particular) on a slow generic path inside a loop such as fit's `lax.scan` over an epoch
(benchmarks/README.md, "Conv nets").
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from fnn.core import Layer, check_floating, expect
from fnn.errors import SettingError
from fnn.initializers import Initializer, get_initializer
from fnn.layers.parts import row
from fnn.layers.spatial import (
    AXES,
    IN_SHAPES,
    SPATIAL,
    Padding,
    ints,
    parse_padding,
    resolve_padding,
    spatial_out,
)

__all__ = ["conv1d", "conv2d"]


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
        raise SettingError(
            f"{kind}: out_channels must be a positive int, got {out_channels!r}",
            settings=("out_channels",),
        )
    kernel = ints(kernel_size, rank, "kernel_size", kind)
    strides = ints(stride, rank, "stride", kind)
    dilation = ints(dilation, rank, "dilation", kind)
    padding = parse_padding(padding, rank, kind)
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
    axes = SPATIAL[rank]
    # All three convolutions use the forward's layouts, the operands transposed to fit
    # (see the module docstring: XLA's CPU backend runs other layouts slowly inside loops).
    forward_dims = (f"N{axes}C", f"{axes}IO", f"N{axes}C")  # x: NHWC, W: HWIO, y: NHWC

    def init(key, in_shape, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        expect(
            len(in_shape) == rank + 1,
            name,
            f"in_shape must be {IN_SHAPES[rank]} (channels last), got {in_shape}",
        )
        _, out = spatial_out(name, in_shape[:-1], kernel, strides, padding, dilation)
        w_key, b_key = jax.random.split(key)
        params = {"W": w_init(w_key, (*kernel, in_shape[-1], out_channels), dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (out_channels,), dtype)
        return (*out, out_channels), params

    def forward(params, x):
        check_floating(name, x)
        W = params["W"]
        expect(
            W.ndim == rank + 2 and W.shape[:rank] == kernel and W.shape[-1] == out_channels,
            name,
            f"expected W of shape ({', '.join(map(str, kernel))}, in, {out_channels}), "
            f"got {W.shape}",
        )
        expect(
            x.ndim == rank + 2 and x.shape[-1] == W.shape[-2],
            name,
            f"expected input of shape {AXES[rank].replace('channels', str(W.shape[-2]))}, "
            f"got {x.shape}",
        )
        pads, _ = spatial_out(name, x.shape[1:-1], kernel, strides, padding, dilation)
        # y[b, i, co] = Σ_{t, ci} x[b, i·s + t·d − lo, ci]·W[t, ci, co]
        y = lax.conv_general_dilated(
            x, W, strides, pads, rhs_dilation=dilation, dimension_numbers=forward_dims
        )
        if use_bias:
            b = params["b"]
            expect(
                b.shape == (out_channels,),
                name,
                f"expected b of shape ({out_channels},), got {b.shape}",
            )
            y = y + row(b, y.ndim)  # + bias[co], explicit broadcast
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

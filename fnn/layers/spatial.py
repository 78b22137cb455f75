"""Shapes and paddings of convolution and pooling windows, channels last.

Per spatial axis: input size `n`, output size `o`, window (kernel) size `k`, stride `s`,
dilation `d`, the effective window `k_eff = (k − 1)·d + 1`, and the explicit padding
`(lo, hi)` that "SAME" and "VALID" resolve to:

    VALID: lo = hi = 0,                  o = ⌊(n − k_eff)/s⌋ + 1
    SAME:  o = ⌈n/s⌉, total = max((o − 1)·s + k_eff − n, 0), lo = ⌊total/2⌋, hi = total − lo
    explicit (lo, hi):                   o = ⌊(n + lo + hi − k_eff)/s⌋ + 1

(the same rule as `jax.lax.padtype_to_pads`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

from fnn.core import Array
from fnn.errors import SettingError, ShapeError

# "SAME", "VALID", one (lo, hi) pair per spatial axis, or a 1-d layer's (lo, hi)
Padding = str | Sequence[tuple[int, int]] | tuple[int, int]

SPATIAL = {1: "W", 2: "HW"}
AXES = {1: "(batch, width, channels)", 2: "(batch, height, width, channels)"}
IN_SHAPES = {1: "(width, channels)", 2: "(height, width, channels)"}


def ints(value: int | Sequence[int], rank: int, what: str, name: str) -> tuple[int, ...]:
    """`value` as `rank` positive ints (an int is repeated), or a SettingError naming
    `what`."""
    values = (value,) * rank if isinstance(value, int) else tuple(value)
    if len(values) != rank or not all(isinstance(v, int) and v >= 1 for v in values):
        raise SettingError(
            f"{name}: {what} must be a positive int or {rank} of them, got {value!r}",
            settings=(what,),
        )
    return values


def parse_padding(padding: Padding, rank: int, name: str) -> str | tuple[tuple[int, int], ...]:
    """Padding as "SAME", "VALID" or `rank` (lo, hi) pairs of ints ≥ 0 (one pair for 1-d)."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise SettingError(
                f"{name}: padding must be 'SAME', 'VALID' or (lo, hi) pairs",
                settings=("padding",),
            )
        return padding.upper()
    pairs: tuple[Any, ...] = tuple(padding)  # not validated yet
    if rank == 1 and len(pairs) == 2 and all(isinstance(p, int) for p in pairs):
        pairs = (pairs,)  # conv1d(..., padding=(lo, hi))
    try:
        pairs = tuple((int(lo), int(hi)) for lo, hi in pairs)
    except (TypeError, ValueError):
        pairs = ()
    if len(pairs) != rank or any(p < 0 for pair in pairs for p in pair):
        raise SettingError(
            f"{name}: padding must be 'SAME', 'VALID' or {rank} (lo, hi) pairs of "
            f"non-negative ints, got {padding!r}",
            settings=("padding",),
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


def spatial_out(name, in_sizes, window, strides, padding, dilation):
    """(pads, output sizes) for these input sizes, or a ShapeError for too small an input."""
    pads = resolve_padding(padding, in_sizes, window, strides, dilation)
    out = output_sizes(in_sizes, window, strides, pads, dilation)
    if any(o < 1 for o in out):
        raise ShapeError(
            f"{name}: spatial input size {tuple(in_sizes)} is smaller than the window "
            f"{tuple(window)} (dilation {tuple(dilation)}, padding {pads}): no output"
        )
    return pads, out


def shape_carrier(x: Array) -> Array:
    """A zero-size array of shape `(0, *x.shape[1:])`: no data, only x's shape, which a
    backward needs when it cannot be told from dy's (a stride that does not divide)."""
    return jnp.zeros((0, *x.shape[1:]), x.dtype)

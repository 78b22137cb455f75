"""The tie point of a layer check: integer-valued inputs, where relu sees exact zeros and
max_pool sees tied maxima, and directions that keep those ties.

At a tie several backwards are right: any split of `dy` among tied maxima that adds up
to `dy` is a valid subgradient (JAX's `maximum` splits it in half, fnn's max_pool gives it
to the first), so the hand-written backward is not compared with `jax.vjp` leaf by leaf
there. What every valid backward shares is its inner product with a direction along
which the forward is differentiable. A direction `v` with `v_i = h(x_i)`, `h` a random
function of the VALUE (the same number for every entry of the same value) with
`h(0) = 0`, moves tied entries together and leaves zeros at zero, so along it no tie
breaks, neither between entries nor against the constant 0 (relu's kink), and

    ⟨backward(dy), v⟩ = ⟨dy, J·v⟩ = d/dt ⟨dy, f(θ + t·v_θ, x + t·v_x)⟩ at t = 0.

A backward that creates gradient (dy to every tied maximum) or loses it (to none) breaks
this equality for almost every `h`; a valid split keeps it. The params stay at the check's
point in general position (scales away from 0, as the main check draws them) and move
along N(0, 1) directions: ties come from the input, and params shared by the tied entries
move them together. Three directions, each its own `h`, so that no single coincidence
passes.

The right side is measured by finite differences in float64, from the one-sided
quotients `d+ = (φ(ε) − φ(0))/ε` and `d− = (φ(0) − φ(−ε))/ε`, φ(t) = ⟨dy, f(point +
t·v)⟩, ε = 1e-8; their mean is the central difference. The step is far below the gap of
1 between distinct integer inputs, so it flips no other comparison, and its truncation
(ε·φ'') and rounding (1e-16/ε) errors are far below the tolerance, check_grads's 1e-5
absolute and relative (`FD_TOL`), which both tests below use:

- `|d+ − d−|` over the tolerance: the direction crossed a kink it does not keep (one
  at a constant other than 0, as in a clipped activation at ±1, or a tie between
  unequal inputs inside a network). There the inner product has no single right value:
  that direction is set aside, not failed; with none left the verdict is "n/a". (Under
  the tolerance, any valid value lies within half of it of the central difference.)
- else `⟨backward(dy), v⟩` must equal the central difference within the tolerance.

Not applicable ("n/a", with the reason): an input from `make_input` (token ids, or any
input a layer needs of its own kind), and a whole network (`sublayers`), whose ties
inside are not the input's.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from fnn.check.point import draw_like, inner
from fnn.check.report import FD_TOL

TIE_VALUES = np.arange(-2, 3)  # the tie point's input values: {-2, ..., 2}
TIE_DIRECTIONS = 3  # directions that keep the ties, each with its own h
TIE_EPS = 1e-8  # the one-sided finite-difference step along a tie-keeping direction


def not_applicable(layer: Any, custom_input: bool) -> str:
    """Why the tie check does not apply to `layer`, or ""."""
    if custom_input:
        return "n/a (the input comes from make_input)"
    walk = getattr(layer, "walk", None)
    if walk is not None and walk.holds == "tuple":  # a chain: serial, a network
        return "n/a (a whole network: its inner ties are not the input's)"
    return ""


def draw_tie_point(params: Any, x_shape: tuple[int, ...], dtype: Any, rng: np.random.Generator):
    """The tie point's input, integers from `TIE_VALUES` in `dtype`, and `TIE_DIRECTIONS`
    directions `(v_params, v_x)`: `v_x = h(x)` with `h(0) = 0`, `v_params ~ N(0, 1)`."""
    x = rng.choice(TIE_VALUES, size=x_shape).astype(dtype)
    directions = []
    for _ in range(TIE_DIRECTIONS):
        h = rng.standard_normal(TIE_VALUES.size)
        h[TIE_VALUES == 0] = 0.0  # h(0) = 0: entries at the constant 0 stay there
        v_x = h[np.searchsorted(TIE_VALUES, x.astype(np.int64))].astype(dtype)
        directions.append((draw_like(params, rng), v_x))
    return x, directions


def tie_points(params: Any, x: Any, directions: list) -> list:
    """`(params, x)` at the tie point, then at `± TIE_EPS` along each direction."""
    points = [(params, x)]
    for v in directions:
        points += [shift((params, x), v, TIE_EPS), shift((params, x), v, -TIE_EPS)]
    return points


def shift(tree: Any, direction: Any, eps: float) -> Any:
    """`tree + eps·direction` on the host, leaf by leaf; leaves whose direction is float0
    (integers) as they are."""

    def one(a, d):
        a = np.asarray(a)
        if np.asarray(d).dtype == jax.dtypes.float0:
            return a
        return (a + np.asarray(eps, a.dtype) * np.asarray(d, a.dtype)).astype(a.dtype)

    return jax.tree.map(one, tree, direction)


def stack(points: list) -> Any:
    """A list of equally shaped pytrees as one pytree of stacked leaves (axis 0)."""
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(a) for a in leaves]), *points)


def tie_verdict(manual: Any, directions: list, dy: Any, outputs: Any) -> str:
    """The verdict of the tie check from the backward at the tie point (`manual`, as
    `(dparams, dx)`) and the outputs at `tie_points` (stacked, axis 0)."""
    outputs = np.asarray(outputs, np.float64)
    dy = np.asarray(dy, np.float64)
    base = outputs[0]
    used, kinked, failed = 0, 0, []
    for k, v in enumerate(directions):
        plus = float(np.vdot(dy, outputs[1 + 2 * k] - base)) / TIE_EPS  # (φ(ε) − φ(0))/ε
        minus = float(np.vdot(dy, base - outputs[2 + 2 * k])) / TIE_EPS  # (φ(0) − φ(−ε))/ε
        numeric = (plus + minus) / 2  # the central difference
        tol = FD_TOL + FD_TOL * abs(numeric)
        if abs(plus - minus) > tol:  # a kink the direction crosses: no single right value
            kinked += 1
            continue
        used += 1
        analytic = inner(v, manual)  # ⟨backward(dy), v⟩
        if not (abs(analytic - numeric) <= tol and math.isfinite(analytic)):
            failed.append((analytic, numeric))
    if failed:
        analytic, numeric = max(failed, key=lambda f: abs(f[0] - f[1]))  # the worst
        return (
            f"failed: at integer inputs (ties, zeros), along a direction that keeps their "
            f"ties, the hand-written backward gives {analytic:.6e}, finite differences "
            f"{numeric:.6e} ({len(failed)} of {used} directions)"
        )
    if not used:
        return (
            f"n/a (not differentiable along any of {kinked} tie-keeping directions: a kink "
            "other than a tie or a zero)"
        )
    return "passed" if not kinked else f"passed ({used} of {used + kinked} directions)"


__all__ = [
    "TIE_DIRECTIONS",
    "TIE_EPS",
    "TIE_VALUES",
    "draw_tie_point",
    "not_applicable",
    "shift",
    "stack",
    "tie_points",
    "tie_verdict",
]

"""The point a check looks at: params in general position, and random inputs,
cotangents and finite-difference directions, all drawn on the host (numpy), so that a
check compiles one program and nothing else.

A floating param leaf of two or more axes (a weight `(in, out)`, a kernel `(kh, kw, in,
out)`) is drawn from N(0, 1/fan_in), fan_in the product of all axes but the last; a leaf
of one axis or none (biases, scales, slopes) from U(0.5, 1.5), away from 0 and 1.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def rngs(key: int | jax.Array) -> tuple[np.random.Generator, jax.Array]:
    """A numpy generator (params, inputs, cotangents, directions) and a PRNG key (`init`
    with `at_init`, `make_input`) from one seed or key."""
    if isinstance(key, int):
        return np.random.default_rng(key), jax.random.PRNGKey(key)
    data = np.asarray(
        jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    )
    return np.random.default_rng(data.astype(np.uint64).ravel().tolist()), key


def draw_params(shapes: Any, rng: np.random.Generator) -> Any:
    """Params in general position, shaped like `shapes` (arrays or `ShapeDtypeStruct`s):
    N(0, 1/fan_in) for leaves of two or more axes, U(0.5, 1.5) for the others; integer
    leaves are zeros."""

    def one(leaf):
        shape, dtype = tuple(leaf.shape), np.dtype(leaf.dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            return np.zeros(shape, dtype)
        if len(shape) >= 2:
            fan_in = math.prod(shape[:-1])
            return (rng.standard_normal(shape) / math.sqrt(max(fan_in, 1))).astype(dtype)
        return rng.uniform(0.5, 1.5, shape).astype(dtype)

    return jax.tree.map(one, shapes)


def draw_like(tree: Any, rng: np.random.Generator) -> Any:
    """N(0, 1) draws shaped like every floating leaf of `tree` (zeros of float0 for the
    others: no direction for integers)."""

    def one(leaf):
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            return np.zeros(np.shape(leaf), jax.dtypes.float0)
        return rng.standard_normal(np.shape(leaf)).astype(leaf.dtype)

    return jax.tree.map(one, tree)


def step(tree: Any, direction: Any, eps: float) -> Any:
    """`tree + eps·direction` on floating leaves; integer leaves as they are."""

    def one(a, d):
        if d.dtype == jax.dtypes.float0:
            return a
        return a + jnp.asarray(eps, a.dtype) * d

    return jax.tree.map(one, tree, direction)


def inner(a: Any, b: Any) -> float:
    """Σ over floating leaves of ⟨a, b⟩, in float64 on the host."""
    total = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if np.asarray(x).dtype == jax.dtypes.float0 or np.asarray(y).dtype == jax.dtypes.float0:
            continue
        total += float(np.vdot(np.asarray(x, np.float64), np.asarray(y, np.float64)))
    return total

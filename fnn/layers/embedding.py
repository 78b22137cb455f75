"""Embedding layers, each with a hand-written backward pass.

`embedding` looks integer token ids up in a learned table; `positional_embedding` adds a
learned vector per position. Together they turn a sequence of ids `(batch, T)` into the
`(batch, T, D)` activations an attention layer takes.

**Token embedding.** For ids `x` and a table `E` of shape `(vocab, D)`, the forward is a
gather, `y[b, t] = E[x[b, t]]`. Each output row is a copy of one table row, so row `v` of
the table receives the cotangent of every position that reads it:

    dE[v] = Σ_{(b, t) : x[b, t] = v} dy[b, t]       (a scatter-add: dE = 0; dE[x] += dy)

A token used k times in the batch sums k cotangents; a token never used gets a zero row.
Writing the scatter as an assignment (`dE[x] = dy`) instead keeps one of the k
cotangents and is wrong whenever a batch repeats a token. The ids themselves are
integers: no derivative exists, and the input cotangent is `jax.vjp`'s for an integer
argument, an array of `float0` zeros shaped like `x`.

**Positional embedding.** For `x: (batch, T, D)` and a table `P: (T, D)`, the forward is
`y[b] = x[b] + P`, the same table added to every example, so

    dx = dy
    dP = Σ_batch dy

**Out-of-range ids** (outside `[0, vocab)`, negative ones included: they do not wrap
around as Python indices do). Called eagerly (outside `jit`), `embedding` raises a
ValueError listing them. Under `jit` the ids cannot be inspected, so the gathered row is
NaN (whatever the loss computes from it is NaN, which the NaN guard of a training loop
stops on) and the backward drops that position's cotangent (no table row receives it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fnn.core import Layer, check_floating, check_in_range, expect
from fnn.errors import DTypeError, SettingError
from fnn.initializers import Initializer, get_initializer

__all__ = ["embedding", "positional_embedding"]


def _get_init(init: str | Initializer, stddev: float) -> Initializer:
    """`"normal"`: N(0, stddev²); another name: from `fnn.initializers`; or `init` itself."""
    if isinstance(init, str) and init == "normal":
        return jax.nn.initializers.normal(stddev)
    return get_initializer(init)


def embedding(vocab_size: int, features: int, *, init: str | Initializer = "normal") -> Layer:
    """A lookup table of learned vectors, `y = table[x]`, for integer token ids `x`.

    Arguments:
      vocab_size: the number of distinct ids; valid ids are `0 … vocab_size − 1`.
      features: the width `D` of each vector.
      init: the table's initialiser: `"normal"` (the default) draws N(0, 1), so that the
        rows start at unit scale like the activations a network expects; any other name
        from `fnn.initializers` or a callable `(key, shape, dtype) -> array` is used as is.

    Shapes: `x: (batch, ...)` integer ids (e.g. `(batch, T)`, `in_shape=(T,)`), params
    `{"table": (vocab_size, features)}`, `y: (batch, ..., features)` in the table's dtype.
    Residuals: the ids only (out-of-range ones replaced by `vocab_size`). The backward is
    the scatter-add described in fnn/layers/embedding.py; the input cotangent is `float0` zeros
    shaped like `x`.

    Floating-point ids raise a `DTypeError` (a TypeError); ids outside `[0, vocab_size)`
    raise a `DataError` (a ValueError) when `x` is a concrete array and give NaN rows
    under `jit`.
    """
    for arg, value in (("vocab_size", vocab_size), ("features", features)):
        if not isinstance(value, int) or value < 1:
            raise SettingError(
                f"embedding: {arg} must be a positive int, got {value!r}", settings=(arg,)
            )
    table_init = _get_init(init, 1.0)
    name = f"embedding({vocab_size}, {features})"

    def init_fn(key, in_shape, dtype=jnp.float32):
        table = table_init(key, (vocab_size, features), dtype)
        return (*tuple(in_shape), features), {"table": table}

    def forward(params, x):
        table = params["table"]
        expect(
            table.shape == (vocab_size, features),
            name,
            f"expected table of shape ({vocab_size}, {features}), got {table.shape}",
        )
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise DTypeError(
                f"{name}: expected integer token ids, got dtype {x.dtype}; "
                f"cast them first, e.g. x.astype(jnp.int32)"
            )
        expect(x.ndim >= 1, name, f"expected ids of shape (batch, ...), got {x.shape}")
        check_in_range(name, "token ids", x, vocab_size)
        valid = (x >= 0) & (x < vocab_size)
        ids = jnp.where(valid, x, vocab_size)  # out of range (negatives too) → vocab_size
        y = jnp.take(table, ids, axis=0, mode="fill", fill_value=jnp.nan)  # y = E[x]; NaN rows
        return y, ids

    def backward(params, ids, dy):
        table = params["table"]
        flat_ids = ids.reshape(-1)  # (batch·...,)
        flat_dy = dy.reshape(-1, features).astype(table.dtype)  # (batch·..., D)
        # dE[v] = Σ_{positions p with x_p = v} dy_p: a scatter-ADD (repeated ids accumulate);
        # ids set to vocab_size (out of range) fall outside the table and are dropped
        dtable = jnp.zeros_like(table).at[flat_ids].add(flat_dy, mode="drop")
        dx = np.zeros(ids.shape, dtype=jax.dtypes.float0)  # ids are integers: no derivative
        return {"table": dtable}, dx

    return Layer(init_fn, forward, backward, name)


def positional_embedding(*, init: str | Initializer = "normal") -> Layer:
    """A learned vector per position added to the input, `y[b] = x[b] + table`.

    Arguments:
      init: the table's initialiser: `"normal"` (the default) draws N(0, 0.02²), small
        next to unit-scale token embeddings; any other name from `fnn.initializers` or a
        callable `(key, shape, dtype) -> array` is used as is.

    Shapes: `x: (batch, T, D)`, `in_shape=(T, D)`, params `{"table": (T, D)}`, `y` shaped
    like `x`. The table is built for one sequence length `T`: a different `T` or `D` at
    call time is a ValueError. Residuals: none. The backward is `dx = dy`,
    `dtable = Σ_batch dy`.

    Inputs must be floating point: integer inputs raise a TypeError (put an `embedding`
    first to turn ids into vectors).
    """
    table_init = _get_init(init, 0.02)
    name = "positional_embedding"

    def init_fn(key, in_shape, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        expect(len(in_shape) == 2, name, f"in_shape must be (T, D), got {in_shape}")
        return in_shape, {"table": table_init(key, in_shape, dtype)}

    def forward(params, x):
        check_floating(name, x)
        table = params["table"]
        expect(table.ndim == 2, name, f"expected table of shape (T, D), got {table.shape}")
        expect(
            x.ndim == 3 and x.shape[1:] == table.shape,
            name,
            "expected input of shape (batch, {}, {}), got {}".format(*table.shape, x.shape),
        )
        y = x + table.reshape((1, *table.shape))  # y[b] = x[b] + P (explicit broadcast)
        return y, ()

    def backward(params, residuals, dy):
        del residuals
        dtable = jnp.sum(dy, axis=0).astype(params["table"].dtype)  # dP = Σ_batch dy
        return {"table": dtable}, dy  # dx = dy

    return Layer(init_fn, forward, backward, name)

"""A language model's head fused with its cross-entropy (llm.c's fused classifier), which
never keeps the `(batch·T, V)` logits or probabilities.

Notation: the `N = batch·T` positions are rows `n`, each with a final hidden state
`h_n: (D,)`, a target id `y_n` in `[0, V)`; the head's weight is `W = table: (V, D)`
(GPT-2 ties it to the token embedding). The forward:

    z_n = W·h_n                      the logits, (V,) a row: z = H·Wᵀ, (N, V)
    L_n = log Σ_k e^(z_nk)           the log-sum-exp, ONE number a row
    ℓ   = (1/N)·Σ_n (L_n − z_n,y_n)  the mean cross-entropy

The backward, for an upstream `dℓ` (1 for the loss itself). `∂L_n/∂z_nk = e^(z_nk − L_n)
= p_nk`, the softmax, and `∂z_n,y_n/∂z_nk = [k = y_n]`, so

    dz_nk = dℓ·(p_nk − [k = y_n])/N    the tutorial's `(A − Y)/m`, a row at a time
    dh_n  = Σ_k dz_nk·W_k              dH = dz·W,  (N, D)
    dW_k  = Σ_n dz_nk·h_n              dW = dzᵀ·H, (V, D)

**What is kept.** The unfused head (`tied_logits`, then `softmax_cross_entropy`) keeps
`z` or `softmax(z)`: `N·V` numbers, for GPT-2 (V = 50257) at batch 4 × T 1024 in float32
785 MiB, more than the model's 124M parameters (474 MiB). This head keeps `h`, `W` (both
arguments anyway), `L` (`N` numbers) and the targets. Its backward recomputes `z` and
gets `p = e^(z − L)` with neither a max nor a sum: the forward's `L` is both. The price
is one more `N·D·V` matmul (four instead of three).

**Chunks.** Forward and backward run over the rows in chunks of `c = chunk_size` rows
(a `lax.map` and a `lax.scan`), so that at most `c·V` logits live at once; `dW` is summed
over the chunks. When `c` does not divide `N`, the last chunk is filled with zero rows,
dropped from `L`, the value and `dH`, and given `dz = 0` (no share of `dW`).

**Precision.** `z`, `L`, `p`, `dz` and the sum `dW` are computed in float32 at least
(`promote(h, W, float32)`): bfloat16 or float16 inputs give float32 logits, as llm.c's
mixed precision does; float64 stays float64. The value is in that dtype; `dH` and `dW`
come back in `h`'s and `W`'s dtypes. The backward's `p = e^(z − L)` takes `z` from a
recomputation and `L` from the forward: where the two matmuls round differently (a
chunked loop compiles them apart), `z` moves by the rounding of numbers of its size,
`ε·|z|`, and `p` by that fraction of itself. In float32 that is a relative error of
~4e-6 on the gradients at logits of 30 and ~1e-3 at 3e4 (tests/core/test_robustness.py),
where jax.grad of the unfused head, which keeps `p`, was exact to 1e-7.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from fnn.core import Array, DType, Loss, as_array, check_floating, check_in_range, expect
from fnn.errors import ArgumentError, DTypeError, SettingError


class HeadInput(NamedTuple):
    """What a language model hands its fused head: hidden states and the head's weight."""

    h: Array  # shape=(batch, T, D): the final hidden states (after the last layer_norm)
    table: Array  # shape=(V, D): the head's weight; logits = h·tableᵀ (GPT-2 ties it
    #               to the token embedding)


class HeadResiduals(NamedTuple):
    """What `lm_cross_entropy`'s backward needs: no `(batch·T, V)` array."""

    h: Array  # shape=(batch, T, D): the hidden states
    table: Array  # shape=(V, D): the head's weight
    lse: Array  # shape=(batch·T,), float32 at least: L = logsumexp(z) of each row
    target: Array  # shape=(batch, T), integer: the next-token ids


def accumulation_dtype(h: Array, table: Array) -> DType:
    """The dtype of the logits and their sums: float32 at least (bfloat16 and float16
    inputs are promoted), float64 for float64 inputs."""
    return jnp.promote_types(jnp.result_type(h, table), jnp.float32)


def _logits(h: Array, table: Array) -> Array:
    """z = h·tableᵀ over the last axis, in the accumulation dtype."""
    acc = accumulation_dtype(h, table)
    return jnp.einsum("...d,vd->...v", h.astype(acc), table.astype(acc))


def tied_logits(pred: HeadInput) -> Array:
    """The plain, unfused logits `h·tableᵀ`: shape `(batch, T, V)`, in float32 at least
    (as the fused head computes them), for sampling and tests."""
    return _logits(*pred)


def _chunked(x: Array, size: int, chunks: int) -> Array:
    """`x: (N, ...)` as `(chunks, size, ...)`, zero rows appended to fill the last chunk."""
    x = jnp.pad(x, [(0, chunks * size - x.shape[0])] + [(0, 0)] * (x.ndim - 1))
    return x.reshape(chunks, size, *x.shape[1:])


def lm_cross_entropy(chunk_size: int | None = 1024) -> Loss:
    """The mean next-token cross-entropy of the logits `h·tableᵀ`, fused with the head.

    `pred` is a `HeadInput(h, table)`: `h: (batch, T, D)` floating, `table: (V, D)`
    floating; `target: (batch, T)` integer ids in `[0, V)`. Value: mean over the `batch·T`
    rows of `logsumexp(z) − z[target]`, `z = h·tableᵀ`; `backward(residuals, dvalue=1.0)`
    returns `HeadInput(dh, dtable)` in the input dtypes. The formulas are in
    fnn/lm/head.py's docstring.

    Arguments:
      chunk_size: rows per chunk (the most logits alive at once are `chunk_size·V`);
        `None` for one chunk of all rows.

    Ids outside `[0, V)`: called eagerly this raises a `DataError` (a ValueError) listing
    them; under
    `jit` the value is NaN and the backward treats such a row as having no target.

    Not in `fnn.losses.LOSSES`: its `pred` is a `HeadInput`, not a network's output.
    """
    whole = isinstance(chunk_size, int) and not isinstance(chunk_size, bool)
    if chunk_size is not None and (not whole or chunk_size < 1):
        raise SettingError(
            f"lm_cross_entropy: chunk_size must be a positive int or None, got {chunk_size!r}",
            settings=("chunk_size",),
        )
    name = f"lm_cross_entropy({chunk_size})"

    def layout(rows):
        """(rows a chunk, chunks)."""
        size = rows if chunk_size is None else min(chunk_size, rows)
        return size, -(-rows // size)

    def forward(pred, target):
        h, table, target = _checked(name, pred, target)
        rows, vocab = target.size, table.shape[0]
        check_in_range(name, "target ids", target, vocab)
        size, chunks = layout(rows)
        ids = target.reshape(rows)
        w = table.astype(accumulation_dtype(h, table))

        def one(chunk):
            h_c, ids_c = chunk
            z = _logits(h_c, w)  # z = h·Wᵀ, (size, V): the only logits alive
            picked = jnp.take_along_axis(z, ids_c[:, None], axis=-1, mode="clip")[:, 0]
            return jax.nn.logsumexp(z, axis=-1), picked  # L = log Σ_k e^z_k, z_y

        xs = (_chunked(h.reshape(rows, -1), size, chunks), _chunked(ids, size, chunks))
        lse, picked = (a.reshape(-1)[:rows] for a in lax.map(one, xs))  # padding dropped
        valid = (ids >= 0) & (ids < vocab)
        value = jnp.sum(jnp.where(valid, lse - picked, jnp.nan)) / rows  # ℓ = Σ(L − z_y)/N
        return value, HeadResiduals(h, table, lse, target)

    def backward(residuals, dvalue=1.0):
        h, table, lse, target = residuals
        rows, vocab = lse.shape[0], table.shape[0]
        size, chunks = layout(rows)
        acc = lse.dtype
        w = table.astype(acc)
        scale = jnp.asarray(dvalue, acc) / rows  # dℓ/N: the mean's 1/N times upstream dℓ
        weight = jnp.where(jnp.arange(chunks * size) < rows, scale, 0)  # 0 on the padding
        xs = (
            _chunked(h.reshape(rows, -1), size, chunks),
            _chunked(target.reshape(rows), size, chunks),
            _chunked(lse, size, chunks),
        )

        def one(dw, chunk):
            (h_c, ids_c, lse_c), weight_c = chunk
            h_c = h_c.astype(acc)
            p = jnp.exp(_logits(h_c, w) - lse_c[:, None])  # p = e^(z − L): z recomputed
            onehot = ids_c[:, None] == jnp.arange(vocab)[None, :]  # [k = y]; none if y ∉ [0, V)
            dz = (p - onehot) * weight_c[:, None]  # dz = dℓ·(p − onehot(y))/N
            return dw + dz.T @ h_c, dz @ w  # dW += dzᵀ·h;  dh = dz·W

        dw, dh = lax.scan(one, jnp.zeros(w.shape, acc), (xs, weight.reshape(chunks, size)))
        dh = dh.reshape(chunks * size, -1)[:rows].reshape(h.shape)  # padding dropped
        return HeadInput(dh.astype(h.dtype), dw.astype(table.dtype))

    return Loss(forward, backward, name)


def _checked(name: str, pred, target) -> tuple[Array, Array, Array]:
    """`(h, table, target)` as arrays, after checking their types and shapes."""
    if not isinstance(pred, HeadInput):
        raise ArgumentError(
            f"{name}: pred must be a HeadInput(h, table), got {type(pred).__name__}"
        )
    h, table, target = as_array(pred.h), as_array(pred.table), as_array(target)
    check_floating(f"{name}: h", h)
    check_floating(f"{name}: table", table)
    expect(h.ndim == 3, name, f"h must have shape (batch, T, D), got {h.shape}")
    expect(table.ndim == 2, name, f"table must have shape (V, D), got {table.shape}")
    expect(
        h.shape[-1] == table.shape[-1],
        name,
        f"h's width D = {h.shape[-1]} differs from table's {table.shape[-1]} (table is (V, D))",
    )
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise DTypeError(f"{name}: target must be integer token ids, got dtype {target.dtype}")
    expect(
        target.shape == h.shape[:2],
        name,
        f"target must have shape (batch, T) = {h.shape[:2]}, got {target.shape}",
    )
    expect(target.size > 0, name, "there must be at least one row (batch·T > 0)")
    return h, table, target

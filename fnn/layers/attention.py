"""Multi-head self-attention with a hand-written backward pass.

Notation, for one example `x: (T, D)` (the batch axis rides along everywhere), `H` heads
of width `dh = D/H`, and `c = 1/√dh`:

    [q | k | v] = x·W_qkv + b_qkv            each (T, D), then split into H heads (T, dh)
    S = c·q·kᵀ                               scores, (T, T) per head
    S_ij = m for j > i  (causal only)        m: the dtype's most negative finite value
    P = softmax(S)                           over the key axis j, per query row i
    O = P·v                                  (T, dh) per head, heads merged back to (T, D)
    y = O·W_o + b_o

The backward runs the same chain in reverse. For a cotangent `dy`:

    dW_o = Oᵀ·dy,  db_o = Σ dy,  dO = dy·W_oᵀ          (sums over batch and positions)
    dv   = Pᵀ·dO                                       (per head)
    dP   = dO·vᵀ
    dS   = P ⊙ (dP − rowsum(dP ⊙ P))                   (the softmax VJP)
    dq   = c·dS·k
    dk   = c·dSᵀ·q
    dW_qkv = xᵀ·[dq | dk | dv],  db_qkv = Σ [dq | dk | dv],  dx = [dq | dk | dv]·W_qkvᵀ

The softmax line follows from `∂P_ij/∂S_il = P_ij(δ_jl − P_il)`: for one row,
`dS_l = Σ_j dP_j·P_j(δ_jl − P_l) = P_l·(dP_l − Σ_j dP_j·P_j)`. The subtracted row sum is
the path through the normaliser; without it the gradient would be that of `exp(S)`.

`dv = Pᵀ·dO` and `dk = c·dSᵀ·q` carry a transpose because `v` and `k` are indexed by the
key position `j`, summed over the query position `i` in the forward: each key feeds every
query that attends to it.

Causal masking sets the scores of future keys (`j > i`) to `m`, a large negative FINITE
number rather than −∞: `exp(m − max)` underflows to exactly 0, so `P_ij = 0` there, and
no `−∞ − (−∞)` can make a NaN. The backward needs no mask of its own: `dS = P ⊙ (…)` is
0 wherever `P` is, which is also the derivative of the masking `where` (a masked score
does not depend on `S`). The row maximum subtracted before the exponential (for a
stable softmax) is a constant for the derivative: softmax does not change under a shift.

With `block_size`, the same function is computed blockwise in O(T) memory, from the same
projections: fnn/layers/flash_attention.py.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fnn.core import Array, Layer, check_floating, expect
from fnn.errors import SettingError
from fnn.initializers import Initializer, get_initializer
from fnn.layers import flash_attention
from fnn.layers.flash_attention import FlashAttentionResiduals

__all__ = ["multi_head_attention"]


class AttentionResiduals(NamedTuple):
    """What the attention backward needs (H heads of width dh, T positions)."""

    x: Array  # shape=(batch, T, D): the input
    q: Array  # shape=(batch, H, T, dh): the queries
    k: Array  # shape=(batch, H, T, dh): the keys
    v: Array  # shape=(batch, H, T, dh): the values
    P: Array  # shape=(batch, H, T, T): the attention weights softmax(S)
    O: Array  # shape=(batch, H, T, dh): the heads' outputs P·v, before W_o


def multi_head_attention(
    num_heads: int,
    *,
    causal: bool = False,
    w_init: str | Initializer = "glorot_uniform",
    use_bias: bool = True,
    block_size: int | None = None,
) -> Layer:
    """Multi-head scaled dot-product self-attention over a sequence.

    Arguments:
      num_heads: the number of heads `H`; the model width `D` must be divisible by it
        (checked at init), each head having width `dh = D/H`.
      causal: when True, position `i` attends only to positions `j ≤ i` (for
        autoregressive models: the output at `i` does not depend on inputs after `i`).
      w_init: the initialiser of `W_qkv` and `W_o` (a name from `fnn.initializers` or a
        callable `(key, shape, dtype) -> array`). The biases start at zero.
      use_bias: whether to add `b_qkv` and `b_o`.
      block_size: None for the layer above; a positive int `b` for the same function
        computed blockwise (fnn/layers/flash_attention.py): `b` queries against `b` keys
        at a time with an online softmax, in O(T) memory, never a `(T, T)` array; with
        `causal`, the blocks above the diagonal are skipped. Any `T` (the last block is
        padded). The params are the same.

    Shapes: `x: (batch, T, D)`, `in_shape=(T, D)`; params `{"W_qkv": (D, 3D), "b_qkv":
    (3D,), "W_o": (D, D), "b_o": (D,)}` (no biases without `use_bias`); `y: (batch, T, D)`.
    The columns of `W_qkv` are `[q | k | v]`, each `D` wide and split into `H` heads of
    `dh` consecutive columns; the rows of `W_o` take the heads in the same order. Any `T`
    works for the same params (no position information inside: add a
    `positional_embedding` first).

    Residuals (`AttentionResiduals`): the input `x`, the heads `q, k, v`, the attention
    weights `P` and the heads' outputs `O = P·v` (before `W_o`). The formulas of the
    backward are in fnn/layers/attention.py.

    Residuals with `block_size` (`FlashAttentionResiduals`): `x`, `O` and each row's
    log-sum-exp `L: (batch, H, T)`; the backward recomputes `q, k, v` from `x` and `P`
    block by block from `L`.

    Inputs must be floating point: integer inputs raise a TypeError.
    """
    if not isinstance(num_heads, int) or num_heads < 1:
        raise SettingError(
            f"multi_head_attention: num_heads must be a positive int, got {num_heads!r}",
            settings=("num_heads",),
        )
    if block_size is not None:
        flash_attention.check_block_size("multi_head_attention", block_size)
    w_init = get_initializer(w_init)
    H = num_heads
    blocks = "" if block_size is None else f", block_size={block_size}"
    name = f"multi_head_attention({H}{', causal' if causal else ''}{blocks})"

    def init(key, in_shape, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        expect(len(in_shape) == 2, name, f"in_shape must be (T, D), got {in_shape}")
        D = in_shape[1]
        expect(
            D % H == 0,
            name,
            f"the width D = {D} must be divisible by num_heads = {H} "
            "(each head gets D/num_heads features)",
        )
        qkv_key, o_key = jax.random.split(key)
        params = {"W_qkv": w_init(qkv_key, (D, 3 * D), dtype)}
        if use_bias:
            params["b_qkv"] = jnp.zeros((3 * D,), dtype)
        params["W_o"] = w_init(o_key, (D, D), dtype)
        if use_bias:
            params["b_o"] = jnp.zeros((D,), dtype)
        return in_shape, params

    def _width(params):
        """D, after checking that every parameter has the shape it must have for it."""
        D = params["W_o"].shape[-1]
        expected: dict[str, tuple[int, ...]] = {"W_qkv": (D, 3 * D), "W_o": (D, D)}
        if use_bias:
            expected.update(b_qkv=(3 * D,), b_o=(D,))
        for key, shape in expected.items():
            expect(
                params[key].shape == shape,
                name,
                f"expected {key} of shape {shape}, got {params[key].shape}",
            )
        expect(D % H == 0, name, f"the width D = {D} must be divisible by num_heads = {H}")
        return D

    def project(params, x):
        """`(q, k, v)`, each (batch, H, T, dh), after checking x and the params."""
        check_floating(name, x)
        D = _width(params)
        expect(
            x.ndim == 3 and x.shape[-1] == D,
            name,
            f"expected input of shape (batch, T, {D}), got {x.shape}",
        )
        dh = D // H
        # [q | k | v] = x·W_qkv + b_qkv, heads split off: W_qkv viewed as (D, 3, H, dh)
        qkv = jnp.einsum("btd,dchk->cbhtk", x, params["W_qkv"].reshape(D, 3, H, dh))
        if use_bias:
            qkv = qkv + params["b_qkv"].reshape(3, 1, H, 1, dh)
        return qkv[0], qkv[1], qkv[2]  # each (batch, H, T, dh)

    def merge(params, O):
        """y = O·W_o + b_o, heads merged: W_o viewed as (H, dh, D)."""
        D = params["W_o"].shape[-1]
        y = jnp.einsum("bhtk,hke->bte", O, params["W_o"].reshape(H, D // H, D))
        if use_bias:
            y = y + params["b_o"].reshape(1, 1, D)
        return y

    def merge_backward(params, O, dy):
        """`(grads of W_o and b_o, dO)`."""
        D = dy.shape[-1]
        grads = {}
        W_o = params["W_o"].reshape(H, D // H, D)
        grads["W_o"] = jnp.einsum("bhtk,bte->hke", O, dy).reshape(D, D)  # dW_o = Oᵀ·dy
        if use_bias:
            grads["b_o"] = jnp.sum(dy, axis=(0, 1))  # db_o = Σ_batch,t dy
        dO = jnp.einsum("bte,hke->bhtk", dy, W_o)  # dO = dy·W_oᵀ
        return grads, dO

    def project_backward(params, x, dq, dk, dv):
        """`(grads of W_qkv and b_qkv, dx)`."""
        D = x.shape[-1]
        grads = {}
        dqkv = jnp.stack([dq, dk, dv])  # d[q | k | v]: (3, batch, H, T, dh)
        grads["W_qkv"] = jnp.einsum("btd,cbhtk->dchk", x, dqkv).reshape(D, 3 * D)  # xᵀ·dqkv
        if use_bias:
            grads["b_qkv"] = jnp.sum(dqkv, axis=(1, 3)).reshape(3 * D)  # db_qkv = Σ dqkv
        W_qkv = params["W_qkv"].reshape(D, 3, H, D // H)
        dx = jnp.einsum("cbhtk,dchk->btd", dqkv, W_qkv)  # dx = dqkv·W_qkvᵀ
        return grads, dx

    def forward(params, x):
        q, k, v = project(params, x)
        T, dh = q.shape[2], q.shape[3]
        c = jnp.asarray(1 / math.sqrt(dh), x.dtype)  # c = 1/√dh
        S = c * jnp.einsum("bhik,bhjk->bhij", q, k)  # S = c·q·kᵀ
        if causal:
            allowed = jnp.tril(jnp.ones((T, T), dtype=bool)).reshape(1, 1, T, T)  # j ≤ i
            S = jnp.where(allowed, S, jnp.finfo(S.dtype).min)  # future keys: most negative
        shifted = S - jax.lax.stop_gradient(jnp.max(S, axis=-1, keepdims=True))  # stable
        E = jnp.exp(shifted)
        P = E / jnp.sum(E, axis=-1, keepdims=True)  # P = softmax(S) over keys j
        O = jnp.einsum("bhij,bhjk->bhik", P, v)  # O = P·v
        return merge(params, O), AttentionResiduals(x, q, k, v, P, O)

    def backward(params, residuals, dy):
        x, q, k, v, P, O = residuals
        c = jnp.asarray(1 / math.sqrt(q.shape[-1]), x.dtype)
        grads, dO = merge_backward(params, O, dy)
        dv = jnp.einsum("bhij,bhik->bhjk", P, dO)  # dv = Pᵀ·dO
        dP = jnp.einsum("bhik,bhjk->bhij", dO, v)  # dP = dO·vᵀ
        dS = P * (dP - jnp.sum(dP * P, axis=-1, keepdims=True))  # dS = P ⊙ (dP − Σ_j dP⊙P)
        dq = c * jnp.einsum("bhij,bhjk->bhik", dS, k)  # dq = c·dS·k
        dk = c * jnp.einsum("bhij,bhik->bhjk", dS, q)  # dk = c·dSᵀ·q
        grads_qkv, dx = project_backward(params, x, dq, dk, dv)
        return {**grads, **grads_qkv}, dx

    def blockwise_forward(params, x):
        assert block_size is not None  # the layer with a block_size only
        q, k, v = project(params, x)
        O, L = flash_attention.blockwise_forward(q, k, v, causal=causal, block_size=block_size)
        return merge(params, O), FlashAttentionResiduals(x, O, L)

    def blockwise_backward(params, residuals, dy):
        x, O, L = residuals
        assert block_size is not None  # the layer with a block_size only
        q, k, v = project(params, x)  # recomputed: [q | k | v] = x·W_qkv + b_qkv
        grads, dO = merge_backward(params, O, dy)
        dq, dk, dv = flash_attention.blockwise_backward(
            q, k, v, O, L, dO, causal=causal, block_size=block_size
        )
        grads_qkv, dx = project_backward(params, x, dq, dk, dv)
        return {**grads, **grads_qkv}, dx

    if block_size is not None:
        return Layer(init, blockwise_forward, blockwise_backward, name)
    return Layer(init, forward, backward, name)

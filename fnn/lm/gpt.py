"""A GPT (GPT-2's shape) as one fnn Layer whose backward composes its blocks' hand-written
ones, with the LM head tied to the token embedding.

For token ids `x: (batch, T)`, `T ≤ context`, a table `E: (V, D)` and positions
`P: (context, D)`:

    z₀ = E[x] + P[:T]                       (token and learned position embeddings)
    z₀ = dropout(z₀)
    z_ℓ = block_ℓ(z_{ℓ−1}),  ℓ = 1 … L      (fnn/lm/block.py; a `lax.scan` over blocks)
    h  = layer_norm_f(z_L)
    logits = h·Eᵀ                           (the head: the SAME table E, tied)

**A shared parameter in a functional contract.** The table `E` is used twice, by the
embedding at the bottom and by the head at the top, so its gradient is the sum of two:

    dE = scatter_add(x, dz₀)  +  dlogitsᵀ·h        (dE[v] += dz₀[b, t] where x[b, t] = v)

fnn expresses this by making the model ONE layer, with `E` stored once in its params
(`params["wte"]`), rather than a `serial` of an embedding and a head each holding a copy:
a chain of layers owns disjoint params by construction (its params are a tuple, one
entry a layer), and a tie across it would need a combinator that maps one leaf to two
places and adds their gradients: more machinery than the one `+` above, and a second
meaning for every tool that walks a chain. The blocks inside are ordinary fnn Layers
(`gpt_block`), checked one by one; the model's backward is the chain rule over them,
checked whole against `jax.vjp` (the catalogue's `gpt` items) and against PyTorch.

**The head.** `head="logits"` returns the logits `(batch, T, V)`, for
`softmax_cross_entropy`, sampling and any tool. `head="fused"` returns
`HeadInput(h, E)` instead, for `lm_cross_entropy`, which computes the logits in chunks
of rows and never keeps them (llm.c's fused classifier); the model's backward then
receives `HeadInput(dh, dE_head)` and adds `dE_head` to the embedding's share.

Backward, for the logits head and a cotangent `dlogits`:

    dE_head = dlogitsᵀ·h ,   dh = dlogits·E
    dz_L    = layer_norm_f.backward(dh)
    dz_{ℓ−1} = block_ℓ.backward(dz_ℓ)       (the reverse scan, ℓ = L … 1)
    dP[:T]  = Σ_batch dz₀ ,  dP[T:] = 0
    dE      = scatter_add(x, dz₀) + dE_head
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fnn.core import EVALUATION, Array, Ctx, Layer, expect, forward
from fnn.errors import SettingError
from fnn.layers import dropout, embedding, layer_norm, positional_embedding
from fnn.lm.block import INIT_STD, RECOMPUTE, gpt_block, layer_with_optional_ctx
from fnn.lm.head import HeadInput

HEADS = ("logits", "fused")


class GPTResiduals(NamedTuple):
    """What the GPT's backward needs (L blocks, stacked along a leading axis)."""

    ids: Array  # shape=(batch, T), int: the token ids (out-of-range ones set to V)
    drop0: Any  # the embedding dropout's mask, or none
    blocks: Any  # every block's `BlockResiduals`, each leaf with a leading axis of L
    ln_f: Any  # the final layer_norm's residuals
    h: Array | None  # shape=(batch, T, D): the head's input (the logits head only)


def gpt(
    vocab: int,
    context: int,
    width: int,
    heads: int,
    blocks: int,
    *,
    mlp_ratio: int = 4,
    dropout_rate: float = 0.0,
    block_size: int | None = None,
    recompute: str = "gelu",
    head: str = "logits",
) -> Layer:
    """A GPT-2-shaped language model over integer token ids, every backward hand-written.

    Arguments:
      vocab: the number of token ids `V` (256 for bytes; GPT-2: 50 257).
      context: the longest sequence it takes (the position table's length).
      width: the model width `D`; heads: attention heads (`D` divisible by them);
        blocks: the number of transformer blocks `L`.
      mlp_ratio: the MLP's hidden width over `D` (GPT-2: 4).
      dropout_rate: dropout on the embeddings and on each residual branch (0: none;
        otherwise the model takes a `fnn.Ctx` with a key in training).
      block_size: attention in blocks of this many positions, O(T) memory
        (`multi_head_attention(block_size=)`); None keeps the (T, T) weights.
      recompute: "none", "gelu" or "all": what each block's backward recomputes instead of
        keeping (llm.c's `-r`; fnn/lm/block.py).
      head: "logits": the output is `(batch, T, V)` logits; "fused": `HeadInput(h, E)`
        for `fnn.lm_cross_entropy` (the logits are never kept).

    Shapes: `x: (batch, T)` integer ids with `T ≤ context` (`in_shape=(T,)`). Params:
    `{"wte": (V, D), "wpe": (context, D), "blocks": {...}, "ln_f": {...}}`, the blocks'
    params stacked along a leading axis of `L` (`gpt_block`'s, each leaf `(L, ...)`).
    Init as GPT-2: N(0, 0.02²) embeddings and weights, the residual projections
    N(0, (0.02/√(2L))²), zero biases. The head is tied: the logits are `h·wteᵀ`, and
    `wte`'s gradient is the sum of the embedding's and the head's (fnn/lm/gpt.py).
    """
    for arg, value in (("vocab", vocab), ("context", context), ("width", width),
                       ("heads", heads), ("blocks", blocks)):  # fmt: skip
        if not isinstance(value, int) or value < 1:
            raise SettingError(f"gpt: {arg} must be a positive int, got {value!r}", settings=(arg,))
    if head not in HEADS:
        raise SettingError(f"gpt: head must be one of {HEADS}, got {head!r}", settings=("head",))
    if recompute not in RECOMPUTE:
        raise SettingError(
            f"gpt: recompute must be one of {RECOMPUTE}, got {recompute!r}",
            settings=("recompute",),
        )
    if width % heads:
        raise SettingError(
            f"gpt: width {width} must be divisible by heads {heads}", settings=("width", "heads")
        )
    L = blocks
    block = gpt_block(
        width, heads, blocks=L, mlp_ratio=mlp_ratio, dropout_rate=dropout_rate,
        block_size=block_size, recompute=recompute,
    )  # fmt: skip
    tokens, positions, ln_f = embedding(vocab, width), positional_embedding(), layer_norm()
    drop = dropout(dropout_rate) if dropout_rate else None
    name = f"gpt(vocab={vocab}, context={context}, width={width}, heads={heads}, blocks={L})"

    def _length(in_shape_or_ids_shape):
        T = in_shape_or_ids_shape[-1]
        expect(
            T <= context,
            name,
            f"sequences of at most context = {context} tokens, got T = {T}",
        )
        return T

    def init(key, in_shape, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        expect(len(in_shape) == 1, name, f"in_shape must be (T,), got {in_shape}")
        T = _length(in_shape)
        k_wte, k_wpe, k_blocks = jax.random.split(key, 3)
        block_keys = jax.random.split(k_blocks, L)
        params = {
            "wte": INIT_STD * jax.random.normal(k_wte, (vocab, width), dtype),
            "wpe": INIT_STD * jax.random.normal(k_wpe, (context, width), dtype),
            "blocks": jax.vmap(lambda k: block.init(k, (T, width), dtype)[1])(block_keys),
            "ln_f": ln_f.init(key, (T, width), dtype)[1],
        }
        return (T, vocab) if head == "logits" else (T, width), params

    def _check(params, ids):
        expect(
            isinstance(params, dict) and set(params) == {"wte", "wpe", "blocks", "ln_f"},
            name,
            "expected params {'wte', 'wpe', 'blocks', 'ln_f'} (from fnn.init of this gpt), "
            f"got {sorted(params) if isinstance(params, dict) else type(params).__name__}",
        )
        expect(
            params["wpe"].shape == (context, width),
            name,
            f"expected wpe of shape ({context}, {width}), got {params['wpe'].shape}",
        )
        lengths = {leaf.shape[0] for leaf in jax.tree.leaves(params["blocks"])}
        expect(lengths == {L}, name, f"expected blocks stacked {L} deep, got {lengths}")
        expect(
            jnp.ndim(ids) == 2,
            name,
            f"expected token ids of shape (batch, T), got {jnp.shape(ids)}",
        )
        return _length(jnp.shape(ids))

    def model_forward(params, x, ctx=EVALUATION):
        T = _check(params, x)
        z, ids = tokens.forward({"table": params["wte"]}, x)  # z = E[x]
        z, _ = positions.forward({"table": params["wpe"][:T]}, z)  # z₀ = E[x] + P[:T]
        r_drop0 = ()
        if drop is not None:
            z, r_drop0 = forward(drop, (), z, _sub_ctx(ctx, L))

        def run_block(z, inputs):
            block_params, i = inputs
            return forward(block, block_params, z, _sub_ctx(ctx, i))

        z, r_blocks = jax.lax.scan(run_block, z, (params["blocks"], jnp.arange(L)))
        h, r_ln_f = ln_f.forward(params["ln_f"], z)  # h = layer_norm_f(z_L)
        if head == "fused":
            return HeadInput(h, params["wte"]), GPTResiduals(ids, r_drop0, r_blocks, r_ln_f, None)
        logits = jnp.einsum("btd,vd->btv", h, params["wte"])  # logits = h·Eᵀ
        return logits, GPTResiduals(ids, r_drop0, r_blocks, r_ln_f, h)

    def backward(params, residuals, dy):
        ids, r_drop0, r_blocks, r_ln_f, h = residuals
        E = params["wte"]
        if head == "fused":
            dh, dE_head = dy.h, dy.table  # the loss's gradients of h and of the tied table
        else:
            dE_head = jnp.einsum("btv,btd->vd", dy, h)  # dE_head = dlogitsᵀ·h
            dh = jnp.einsum("btv,vd->btd", dy, E)  # dh = dlogits·E
        dln_f, dz = ln_f.backward(params["ln_f"], r_ln_f, dh)  # dz_L

        def back_block(dz, inputs):
            block_params, r = inputs
            dparams, dz = block.backward(block_params, r, dz)  # dz_{ℓ−1} from dz_ℓ
            return dz, dparams

        dz, dblocks = jax.lax.scan(back_block, dz, (params["blocks"], r_blocks), reverse=True)
        if drop is not None:
            _, dz = drop.backward((), r_drop0, dz)
        T = ids.shape[1]
        dP = positions.backward({"table": params["wpe"][:T]}, (), dz)[0]["table"]
        dwpe = jnp.zeros_like(params["wpe"]).at[:T].set(dP)  # dP[:T] = Σ_batch dz₀; past T: 0
        dtokens, dx = tokens.backward({"table": E}, ids, dz)  # dx: float0 zeros (ids)
        dE_embed = dtokens["table"]  # scatter_add(x, dz₀)
        grads = {
            "wte": dE_embed + dE_head.astype(E.dtype),  # dE = embedding's + head's (tied)
            "wpe": dwpe,
            "blocks": dblocks,
            "ln_f": dln_f,
        }
        return grads, dx

    return layer_with_optional_ctx(init, model_forward, backward, name, drop is not None)


def _sub_ctx(ctx: Ctx, i: Any) -> Ctx:
    """Block i's share of `ctx` (i = L for the embedding dropout): its own key."""
    key = None if ctx.key is None else jax.random.fold_in(ctx.key, i)
    return Ctx(ctx.train, key)

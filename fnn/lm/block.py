"""One GPT-2 block as an fnn Layer, its backward composed from its layers' hand-written ones.

For one block's input `x: (batch, T, D)` (the residual stream), with pre-layer-norm
residual branches (GPT-2's order):

    a   = layer_norm₁(x)                   b   = layer_norm₂(x₂)
    o   = attention(a)   (causal)          h   = b·W_fc + b_fc          (width r·D)
    x₂  = x + dropout(o)                   g   = gelu_tanh(h)
                                           m   = g·W_proj + b_proj
                                           y   = x₂ + dropout(m)

The backward runs the chain rule in reverse. A skip connection passes its cotangent
through untouched and adds the branch's: for `y = x₂ + f(x₂)`,

    dx₂ = dy + ∂f/∂x₂ᵀ·dy                 (the residual stream's gradient: two paths)
    dx  = dx₂ + ∂(attention∘layer_norm₁)/∂xᵀ·dx₂

and every `∂…ᵀ·d…` above is a layer's own `backward` (dense, gelu, layer_norm,
multi_head_attention, dropout), each checked against `jax.vjp` in the catalogue.

**Recompute** (as llm.c's `-r`), chosen by `recompute`:
- `"none"`: keep every layer's residuals: the normalised inputs `x̂₁, x̂₂` and the layer
  norms' outputs `a, b` (each `(batch, T, D)`), `h` and `g` (each `(batch, T, r·D)`),
  and attention's.
- `"gelu"`: keep `h` only and recompute `g = gelu(h)` in the backward (one elementwise
  pass) for `dW_proj = gᵀ·dm`: saves `r·D` numbers per token.
- `"all"`: also recompute both layer norms from the block's input `x` and the mid-stream
  `x₂` (kept instead of `x̂` and the normalised outputs): saves `2·D` more per token for
  two more elementwise passes over `(T, D)`.
The backward then is the same chain, fed with recomputed residuals; the gradients are
identical (tested). In a `lax.scan` over blocks (as `gpt` runs them), the recomputation
lives in the backward loop, so XLA cannot merge it back into the forward.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fnn.core import EVALUATION, Array, Ctx, Layer, choose, expect, forward
from fnn.errors import SettingError
from fnn.layers import dense, dropout, gelu, layer_norm, multi_head_attention

RECOMPUTE = ("none", "gelu", "all")  # what a block's backward recomputes (see the docstring)
INIT_STD = 0.02  # GPT-2's init: N(0, 0.02²) for every weight matrix and embedding


class BlockResiduals(NamedTuple):
    """What a block's backward needs; `None` marks what it recomputes instead."""

    x: Array | None  # shape=(batch, T, D): the block's input ("all": layer_norm₁ recomputed)
    ln1: Any  # layer_norm₁'s residuals (x̂₁, 1/σ₁); None under "all"
    attn: Any  # attention's residuals, its input `a` left out under "all"
    drop1: Any  # the attention branch's dropout mask (1 bit per element), or none
    x_mid: Array | None  # shape=(batch, T, D): x₂ = x + dropout(o), kept under "all"
    ln2: Any  # layer_norm₂'s residuals; None under "all"
    b: Array | None  # shape=(batch, T, D): the MLP's input layer_norm₂(x₂); None under "all"
    h: Array  # shape=(batch, T, r·D): the MLP's hidden pre-activation (gelu's input)
    g: Array | None  # shape=(batch, T, r·D): gelu(h), W_proj's input; None unless "none"
    drop2: Any  # the MLP branch's dropout mask, or none


def _without_input(attn_residuals: Any) -> Any:
    """Attention's residuals with its input `x` left out (recomputed from layer_norm₁)."""
    return attn_residuals._replace(x=None)


def gpt_block(
    width: int,
    heads: int,
    *,
    blocks: int = 1,
    mlp_ratio: int = 4,
    dropout_rate: float = 0.0,
    block_size: int | None = None,
    recompute: str = "gelu",
) -> Layer:
    """A pre-layer-norm GPT-2 block: causal self-attention and a GELU MLP, each a residual
    branch, with the backward composed from its layers' hand-written ones.

    Arguments:
      width: the model width `D` (divisible by `heads`).
      heads: the number of attention heads.
      blocks: how many blocks the model stacks: GPT-2 draws the residual branches' output
        projections (`W_o`, `W_proj`) from N(0, (0.02/√(2·blocks))²), so that the residual
        stream's variance does not grow with depth. Every other weight: N(0, 0.02²);
        biases 0; layer norms scale 1, bias 0.
      mlp_ratio: the MLP's hidden width is `mlp_ratio·D` (GPT-2: 4).
      dropout_rate: dropout on each branch's output before it joins the stream (0: none;
        then the block takes no `Ctx`).
      block_size: attention's key/query block (`multi_head_attention(block_size=)`): O(T)
        memory instead of keeping the (T, T) weights; None for the plain layer.
      recompute: "none", "gelu" or "all" (gelu and both layer norms): what the backward
        recomputes instead of keeping (fnn/lm/block.py).

    Shapes: `x: (batch, T, D)` floats, `in_shape=(T, D)`, `y` shaped like `x`. Params:
    `{"ln1", "attn", "ln2", "fc", "proj"}`, each the params of its layer.
    """
    for arg, value in (("width", width), ("heads", heads), ("blocks", blocks),
                       ("mlp_ratio", mlp_ratio)):  # fmt: skip
        if not isinstance(value, int) or value < 1:
            raise SettingError(
                f"gpt_block: {arg} must be a positive int, got {value!r}", settings=(arg,)
            )
    choose("recompute mode", recompute, dict.fromkeys(RECOMPUTE))
    ln1, ln2 = layer_norm(), layer_norm()
    attn = multi_head_attention(heads, causal=True, block_size=block_size)
    fc, act, proj = dense(mlp_ratio * width), gelu(approximate=True), dense(width)
    drop = dropout(dropout_rate) if dropout_rate else None
    keep_g, keep_ln = recompute == "none", recompute != "all"
    name = f"gpt_block({width}, {heads}, recompute={recompute})"

    def init(key, in_shape, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        expect(
            len(in_shape) == 2 and in_shape[1] == width,
            name,
            f"in_shape must be (T, {width}), got {in_shape}",
        )
        expect(width % heads == 0, name, f"width {width} must be divisible by heads {heads}")
        keys = jax.random.split(key, 4)
        std, out_std = INIT_STD, INIT_STD / math.sqrt(2 * blocks)

        def normal(k, shape, s):
            return s * jax.random.normal(k, shape, dtype)

        D, F = width, mlp_ratio * width
        params = {
            "ln1": ln1.init(key, in_shape, dtype)[1],
            "attn": {
                "W_qkv": normal(keys[0], (D, 3 * D), std),
                "b_qkv": jnp.zeros((3 * D,), dtype),
                "W_o": normal(keys[1], (D, D), out_std),
                "b_o": jnp.zeros((D,), dtype),
            },
            "ln2": ln2.init(key, in_shape, dtype)[1],
            "fc": {"W": normal(keys[2], (D, F), std), "b": jnp.zeros((F,), dtype)},
            "proj": {"W": normal(keys[3], (F, D), out_std), "b": jnp.zeros((D,), dtype)},
        }
        return in_shape, params

    def branch_dropout(x, ctx, salt):
        """dropout(x) with its own key (salt 0: attention branch, 1: MLP branch)."""
        if drop is None:
            return x, ()
        key = None if ctx.key is None else jax.random.fold_in(ctx.key, salt)
        return forward(drop, (), x, Ctx(ctx.train, key))

    def block_forward(params, x, ctx=EVALUATION):
        a, r_ln1 = ln1.forward(params["ln1"], x)  # a = layer_norm₁(x)
        o, r_attn = attn.forward(params["attn"], a)  # o = attention(a)
        o, r_drop1 = branch_dropout(o, ctx, 0)
        x_mid = x + o  # x₂ = x + dropout(o)
        b, r_ln2 = ln2.forward(params["ln2"], x_mid)  # b = layer_norm₂(x₂)
        h, _ = fc.forward(params["fc"], b)  # h = b·W_fc + b_fc
        g, _ = act.forward((), h)  # g = gelu(h)
        m, _ = proj.forward(params["proj"], g)  # m = g·W_proj + b_proj
        m, r_drop2 = branch_dropout(m, ctx, 1)
        y = x_mid + m  # y = x₂ + dropout(m)
        residuals = BlockResiduals(
            x=None if keep_ln else x,
            ln1=r_ln1 if keep_ln else None,
            attn=r_attn if keep_ln else _without_input(r_attn),
            drop1=r_drop1,
            x_mid=None if keep_ln else x_mid,
            ln2=r_ln2 if keep_ln else None,
            b=b if keep_ln else None,
            h=h,
            g=g if keep_g else None,
            drop2=r_drop2,
        )
        return y, residuals

    def backward(params, residuals, dy):
        r = residuals
        r_ln1, r_attn, r_ln2, b, g = r.ln1, r.attn, r.ln2, r.b, r.g
        if not keep_ln:  # recompute both layer norms from the kept streams x and x₂
            a, r_ln1 = ln1.forward(params["ln1"], r.x)
            r_attn = r_attn._replace(x=a)
            b, r_ln2 = ln2.forward(params["ln2"], r.x_mid)
        if not keep_g:
            g, _ = act.forward((), r.h)  # recompute g = gelu(h)
        dm = dy if drop is None else drop.backward((), r.drop2, dy)[1]  # through the dropout
        dproj, dg = proj.backward(params["proj"], g, dm)  # dW_proj = gᵀ·dm, dg = dm·W_projᵀ
        _, dh = act.backward((), r.h, dg)  # dh = dg ⊙ gelu′(h)
        dfc, db = fc.backward(params["fc"], b, dh)  # dW_fc = bᵀ·dh, db = dh·W_fcᵀ
        dln2, dx_mid_branch = ln2.backward(params["ln2"], r_ln2, db)
        dx_mid = dy + dx_mid_branch  # dx₂ = dy (skip) + the MLP branch's
        do = dx_mid if drop is None else drop.backward((), r.drop1, dx_mid)[1]
        dattn, da = attn.backward(params["attn"], r_attn, do)  # attention's backward
        dln1, dx_branch = ln1.backward(params["ln1"], r_ln1, da)
        dx = dx_mid + dx_branch  # dx = dx₂ (skip) + the attention branch's
        grads = {"ln1": dln1, "attn": dattn, "ln2": dln2, "fc": dfc, "proj": dproj}
        return grads, dx

    return layer_with_optional_ctx(init, block_forward, backward, name, drop is not None)


def layer_with_optional_ctx(init, forward, backward, name: str, takes_ctx: bool) -> Layer:
    """A Layer from `forward(params, x, ctx=EVALUATION)`: taking the `Ctx` only when it is
    random (`takes_ctx`, dropout on); otherwise with the contract's two-argument forward."""
    if takes_ctx:
        return Layer(init, forward, backward, name, takes_ctx=True)
    return Layer(init, lambda params, x: forward(params, x), backward, name)

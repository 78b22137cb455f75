"""Sampling from a trained `gpt`: one compiled loop, with a key-value cache.

Generating token `t + 1` needs the logits at position `t`, which depend on positions
`0 … t` only (causal attention). Two ways to get them:

- **Window** (`kv_cache=False`): run the whole model on the last `context` tokens every
  step, `O(context²)` attention and `O(context)` of everything else per token.
- **Key-value cache** (`kv_cache=True`, the default): keep every block's keys and values
  of the positions done, `(L, batch, H, context, dh)` each, and run only the new
  position through the model: `O(t)` attention and `O(1)` of everything else per token.
  For one new position `t` in a block, with its `q_t, k_t, v_t` from `a_t = layer_norm₁(x_t)`:

      K[:, t] = k_t,  V[:, t] = v_t                   (write the cache)
      s_j = c·q_t·K[:, j]   for j ≤ t, masked after    (the row t of S; c = 1/√dh)
      o_t = softmax(s)·V                              (the row t of P·V)

  exactly the row `t` of the full model's causal attention, so the logits are the same
  (tested to 1e-10 in float64). A sequence longer than `context` leaves the cache's
  range (the positions are learned, `context` of them): from there on each step runs
  the window over the last `context` tokens, as the window mode does.

`benchmarks/generate_speed.py` measures the two on the same model.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fnn.core import Array, SettingError, expect
from fnn.layers import gelu, layer_norm

_LN = layer_norm()
_GELU = gelu(approximate=True)


def _shape(params, heads):
    """(V, context, D, L, dh) of a gpt's params, checked."""
    expect(
        isinstance(params, dict) and {"wte", "wpe", "blocks", "ln_f"} <= set(params),
        "generate",
        "expected a gpt's params {'wte', 'wpe', 'blocks', 'ln_f'}",
    )
    V, D = params["wte"].shape
    context = params["wpe"].shape[0]
    L = params["blocks"]["attn"]["W_o"].shape[0]
    expect(D % heads == 0, "generate", f"width {D} is not divisible by heads = {heads}")
    return V, context, D, L, D // heads


def _block_step(p, x, k_cache, v_cache, t, heads):
    """One new position `x: (batch, D)` at position `t` through one block, its keys and
    values written into the cache `(batch, H, context, dh)`."""
    B, D = x.shape
    H, dh = heads, D // heads
    c = jnp.asarray(1 / math.sqrt(dh), x.dtype)
    a, _ = _LN.forward(p["ln1"], x)  # a = layer_norm₁(x)
    qkv = (a @ p["attn"]["W_qkv"] + p["attn"]["b_qkv"].reshape(1, -1)).reshape(B, 3, H, dh)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # each (batch, H, dh)
    k_cache = jax.lax.dynamic_update_slice_in_dim(k_cache, k[:, :, None], t, axis=2)
    v_cache = jax.lax.dynamic_update_slice_in_dim(v_cache, v[:, :, None], t, axis=2)
    s = c * jnp.einsum("bhk,bhjk->bhj", q, k_cache)  # s_j = c·q·K_j
    done = (jnp.arange(k_cache.shape[2]) <= t).reshape(1, 1, -1)  # positions j ≤ t
    s = jnp.where(done, s, jnp.finfo(s.dtype).min)
    P = jax.nn.softmax(s, axis=-1)
    o = jnp.einsum("bhj,bhjk->bhk", P, v_cache).reshape(B, D)  # o = softmax(s)·V, heads merged
    x = x + o @ p["attn"]["W_o"] + p["attn"]["b_o"].reshape(1, -1)  # x₂ = x + attention
    b, _ = _LN.forward(p["ln2"], x)  # b = layer_norm₂(x₂)
    g, _ = _GELU.forward((), b @ p["fc"]["W"] + p["fc"]["b"].reshape(1, -1))
    x = x + g @ p["proj"]["W"] + p["proj"]["b"].reshape(1, -1)  # y = x₂ + MLP
    return x, k_cache, v_cache


def _cached_step(params, caches, token, t, heads):
    """Logits `(batch, V)` at position `t` for `token: (batch,)`, and the new caches."""
    x = params["wte"][token] + params["wpe"][t][None]  # z₀ = E[x] + P[t]

    def run(x, inputs):
        p, k_cache, v_cache = inputs
        x, k_cache, v_cache = _block_step(p, x, k_cache, v_cache, t, heads)
        return x, (k_cache, v_cache)

    x, caches = jax.lax.scan(run, x, (params["blocks"], *caches))
    h, _ = _LN.forward(params["ln_f"], x)
    return h @ params["wte"].T, caches  # logits = h·Eᵀ (the tied head)


@functools.lru_cache(maxsize=16)
def _logits_of(net):
    """`logits(params, window) -> (batch, T, V)` of `net`, one function per net (a static
    argument of the compiled loop: the same net compiles once)."""

    def logits(params, window):
        y = net.forward(params, window)[0]
        if not hasattr(y, "ndim"):  # the fused head's HeadInput(h, E)
            y = jnp.einsum("btd,vd->btv", y.h, y.table)  # logits = h·Eᵀ
        return y

    return logits


def _pick(logits, key, temperature, top_k):
    """The next token from `logits: (batch, V)`: greedy at temperature 0, else a draw
    from softmax(logits/temperature) over the `top_k` largest (all when None)."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1)
    logits = logits.astype(jnp.float32) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]  # the k-th largest of each row
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1)


@functools.partial(
    jax.jit, static_argnames=("heads", "tokens", "temperature", "top_k", "kv_cache", "forward")
)
def _generate(params, prompt, key, *, heads, tokens, temperature, top_k, kv_cache, forward):
    V, context, D, L, dh = _shape(params, heads)
    B, P = prompt.shape
    total = P + tokens
    ids = jnp.concatenate([prompt, jnp.zeros((B, tokens), prompt.dtype)], axis=1)

    def choose(t, logits, ids):
        """Token t + 1: the prompt's while inside it, else a draw."""
        drawn = _pick(logits, jax.random.fold_in(key, t), temperature, top_k)
        nxt = jnp.where(t + 1 < P, ids[:, jnp.minimum(t + 1, total - 1)], drawn.astype(ids.dtype))
        return ids.at[:, t + 1].set(nxt)

    start = 0
    if kv_cache:
        shape = (L, B, heads, context, dh)
        caches = (jnp.zeros(shape, params["wte"].dtype), jnp.zeros(shape, params["wte"].dtype))
        cached_steps = min(total - 1, context)  # positions 0 … context − 1 fit the cache

        def cached(carry, t):
            ids, caches = carry
            logits, caches = _cached_step(params, caches, ids[:, t], t, heads)
            return (choose(t, logits, ids), caches), None

        (ids, _), _ = jax.lax.scan(cached, (ids, caches), jnp.arange(cached_steps))
        start = cached_steps

    width = min(context, total)

    def windowed(ids, t):
        first = jnp.maximum(t + 1 - width, 0)  # the last `width` tokens up to t
        window = jax.lax.dynamic_slice_in_dim(ids, first, width, axis=1)
        logits = forward(params, window)  # (batch, width, V)
        last = jnp.take(logits, t - first, axis=1)  # position t's logits
        return choose(t, last, ids), None

    if start < total - 1:
        ids, _ = jax.lax.scan(windowed, ids, jnp.arange(start, total - 1))
    return ids


def generate(
    net,
    params,
    prompt: ArrayLike,
    *,
    heads: int,
    tokens: int,
    key: jax.Array,
    temperature: float = 1.0,
    top_k: int | None = None,
    kv_cache: bool = True,
) -> Array:
    """Continues `prompt` by `tokens` tokens sampled from a `fnn.gpt`, as ONE compiled loop.

    Arguments:
      net: the `fnn.gpt(...)` the params belong to (its `head="logits"` or `"fused"`).
      params: its params.
      prompt: `(batch, P)` or `(P,)` integer ids, `1 ≤ P ≤ context`.
      heads: the model's number of attention heads (not recoverable from the params).
      tokens: how many tokens to add (≥ 1).
      key: the PRNG key of the draws (the same key, the same text).
      temperature: ≥ 0; 0 is greedy (argmax), 1 the model's distribution, lower is
        more conservative.
      top_k: draw among the k most likely tokens only (None or 0: all).
      kv_cache: keep each block's keys and values (fnn/lm/generate.py) instead of running
        the model over the whole window each step. The same tokens either way.

    Returns:
      `(batch, P + tokens)` ids (or `(P + tokens,)` for a 1-D prompt), the prompt first.

    Raises:
      SettingError: tokens < 1, a negative temperature or top_k, an empty prompt or one
        longer than the context, ids outside the vocabulary.
    """
    prompt = np.asarray(prompt)  # checked on the host: no program compiled per prompt shape
    squeeze = prompt.ndim == 1
    prompt = prompt[None] if squeeze else prompt
    V, context, _, _, _ = _shape(params, heads)
    for ok, setting, message in (
        (isinstance(tokens, int | np.integer) and tokens >= 1, "tokens",
         f"tokens must be an int >= 1, got {tokens!r}"),
        (temperature >= 0, "temperature", f"temperature must be >= 0, got {temperature}"),
        (top_k is None or top_k >= 0, "top_k", f"top_k must be >= 0, got {top_k}"),
        (jnp.issubdtype(prompt.dtype, jnp.integer) and prompt.ndim == 2, "prompt",
         f"the prompt must be integer ids of shape (P,) or (batch, P), got {prompt.dtype} "
         f"{prompt.shape}"),
        (1 <= prompt.shape[-1] <= context, "prompt",
         f"the prompt must have 1 to context = {context} tokens, got {prompt.shape[-1]}"),
    ):  # fmt: skip
        if not ok:
            raise SettingError(message, settings=(setting,))
    low, high = int(prompt.min()), int(prompt.max())
    if low < 0 or high >= V:
        raise SettingError(f"prompt ids must lie in [0, {V}), got {low if low < 0 else high}",
                           settings=("prompt",))  # fmt: skip

    ids = _generate(
        params, prompt, key, heads=heads, tokens=int(tokens), temperature=float(temperature),
        top_k=top_k or None, kv_cache=kv_cache, forward=_logits_of(net),
    )  # fmt: skip
    return ids[0] if squeeze else ids

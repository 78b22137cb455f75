"""The formulas the forward references compute (fnn/check/references.py holds the table
that maps catalogue items to them).

Each formula is written from the layer's definition with `jax.numpy`, `jax.lax` and
`jax.nn`, never by calling fnn: a forward of fnn that computes the wrong function (a
wrong constant, a branch off by a factor, a forgotten bias, another padding convention)
then disagrees with its reference. The params are read by the names each layer's `init`
gives them (`W`, `b`, `scale`, `bias`, `table`, `W_qkv`, ...); a layer's
hyperparameters (stride, padding, rate, heads) are arguments here, so the table states
what each catalogue item is meant to compute.

A layer's formula is `f(params, x, ctx) -> y`, a loss's `f(pred, target) -> value`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

LayerRef = Callable  # (params, x, ctx) -> y
LossRef = Callable  # (pred, target) -> value

LN_EPSILON = 1e-5  # layer_norm's, rms_norm's and batch_norm's default ε


def _row(v, ndim: int):
    """A vector over the last axis, shaped to broadcast against `ndim` axes explicitly."""
    return jnp.reshape(v, (1,) * (ndim - 1) + v.shape)


def elementwise(fn: Callable) -> LayerRef:
    """A parameter-free layer's formula from `fn(x)`."""
    return lambda params, x, ctx: fn(x)


def _softmax(x):
    e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))  # a shift softmax does not see
    return e / jnp.sum(e, axis=-1, keepdims=True)  # e^xᵢ / Σⱼ e^xⱼ


def _log_softmax(x):
    return x - jnp.log(jnp.sum(jnp.exp(x), axis=-1, keepdims=True))  # xᵢ − log Σⱼ e^xⱼ


def _gelu_exact(x):
    return 0.5 * x * (1 + lax.erf(x / math.sqrt(2)))  # x·Φ(x) = ½x(1 + erf(x/√2))


ACTIVATIONS: dict[str, Callable] = {
    "identity": lambda x: x,
    "sigmoid": lambda x: 1 / (1 + jnp.exp(-x)),  # σ(x) = 1/(1 + e⁻ˣ)
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, negative_slope=0.01),
    "elu": lambda x: jax.nn.elu(x, alpha=1.0),
    "softplus": lambda x: jnp.log1p(jnp.exp(x)),  # log(1 + eˣ)
    "gelu": _gelu_exact,
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": lambda x: x / (1 + jnp.exp(-x)),  # x·σ(x)
    "softmax": _softmax,
    "log_softmax": _log_softmax,
}


# ----------------------------------------------------------------------------- layers


def dense(bias: bool = True) -> LayerRef:
    """y = x·W + b over the last axis (`x: (batch, ..., in)`, `W: (in, out)`)."""

    def ref(params, x, ctx):
        y = jnp.einsum("...i,io->...o", x, params["W"])
        return y + _row(params["b"], y.ndim) if bias else y

    return ref


def conv(rank: int, stride=1, padding="SAME", dilation=1, bias: bool = True) -> LayerRef:
    """A cross-correlation, channels last (NHWC input, HWIO kernel; NWC/WIO in 1-d), from
    `lax.conv_general_dilated` with lax's own reading of "SAME"/"VALID" or the explicit
    pairs: `y[b, i, co] = Σ_{t, ci} x[b, i·s + t·d − lo, ci]·W[t, ci, co] + b[co]`."""
    axes = "HW" if rank == 2 else "W"
    strides = (stride,) * rank if isinstance(stride, int) else tuple(stride)
    dilations = (dilation,) * rank if isinstance(dilation, int) else tuple(dilation)

    def ref(params, x, ctx):
        y = lax.conv_general_dilated(
            x,
            params["W"],
            window_strides=strides,
            padding=padding,
            rhs_dilation=dilations,
            dimension_numbers=(f"N{axes}C", f"{axes}IO", f"N{axes}C"),
        )
        return y + _row(params["b"], y.ndim) if bias else y

    return ref


def _window(x, window, stride, padding, init, op):
    """`lax.reduce_window` over the spatial axes (batch and channels untouched)."""
    strides = window if stride is None else (stride,) * len(window)
    pads = padding if isinstance(padding, str) else [(0, 0), *padding, (0, 0)]
    return lax.reduce_window(
        x, jnp.asarray(init, x.dtype), op, (1, *window, 1), (1, *strides, 1), pads
    )


def max_pool(window, stride=None, padding="VALID") -> LayerRef:
    """The maximum of each window; padding never wins (it is −∞)."""
    return lambda params, x, ctx: _window(x, window, stride, padding, -jnp.inf, lax.max)


def avg_pool(window, stride=None, padding="VALID") -> LayerRef:
    """The mean of each window over the INPUT elements it covers: at a "SAME" border the
    sum is divided by how many real elements the window holds, not by the window size
    (padding is not averaged in: TensorFlow's and Keras' convention, PyTorch's
    `count_include_pad=False`). The count is the same window sum over ones."""

    def ref(params, x, ctx):
        total = _window(x, window, stride, padding, 0, lax.add)  # Σ of the real elements
        count = _window(jnp.ones_like(x), window, stride, padding, 0, lax.add)  # how many
        return total / count

    return ref


def flatten(params, x, ctx):
    return jnp.reshape(x, (x.shape[0], -1))  # row-major: (batch, h·W·C + w·C + c)


def _normalise(x, mean, var, params, scale, bias):
    """(x − μ)/√(var + ε) ⊙ scale + bias, each of scale and bias where the layer has it."""
    y = (x - mean) / jnp.sqrt(var + LN_EPSILON)
    y = y * _row(params["scale"], y.ndim) if scale else y
    return y + _row(params["bias"], y.ndim) if bias else y


def layer_norm(scale: bool = True, bias: bool = True) -> LayerRef:
    """Per example over the last axis: μ = mean(x), var = mean((x − μ)²) (biased)."""

    def ref(params, x, ctx):
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
        return _normalise(x, mean, var, params, scale, bias)

    return ref


def rms_norm(params, x, ctx):
    """Per example over the last axis: x/√(mean(x²) + ε) ⊙ scale, neither centred nor
    shifted."""
    return _normalise(x, 0.0, jnp.mean(x**2, axis=-1, keepdims=True), params, True, False)


def residual(inner: LayerRef) -> LayerRef:
    """y = x + inner(x)."""
    return lambda params, x, ctx: x + inner(params, x, ctx)


def batch_norm(scale: bool = True, bias: bool = True) -> LayerRef:
    """Per feature (the last axis). Training: the batch's μ and biased variance over
    every other axis. Evaluation: the running `ctx.state["mean"]`, `ctx.state["var"]`."""

    def ref(params, x, ctx):
        if ctx.train:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes, keepdims=True)
            var = jnp.mean((x - mean) ** 2, axis=axes, keepdims=True)
        else:
            mean, var = _row(ctx.state["mean"], x.ndim), _row(ctx.state["var"], x.ndim)
        return _normalise(x, mean, var, params, scale, bias)

    return ref


def dropout_mask(key, rate: float, shape) -> jax.Array:
    """Which elements training keeps: Bernoulli(1 − rate) from the forward's key, shaped
    like x (fnn/layers/dropout.py: "the same key gives the same mask")."""
    return jax.random.bernoulli(key, 1 - rate, shape)


def dropout(rate: float) -> LayerRef:
    """Training: mask ⊙ x/(1 − rate) (inverted dropout). Evaluation: x."""

    def ref(params, x, ctx):
        if not ctx.train:
            return x
        return dropout_mask(ctx.key, rate, x.shape) * x / (1 - rate)

    return ref


def embedding(params, x, ctx):
    return params["table"][x]  # y[b, t] = table[x[b, t]]


def positional_embedding(params, x, ctx):
    return x + params["table"][None]  # y[b] = x[b] + P


def attention(heads: int, causal: bool = False, bias: bool = True) -> LayerRef:
    """Multi-head self-attention from the params, one plain softmax per head:
    `[q | k | v] = x·W_qkv + b_qkv` (each D wide, head h its columns h·dh … (h+1)·dh − 1),
    `O = softmax(q·kᵀ/√dh)·v` (causal: key j > query i gets weight 0), the heads side by
    side, `y = O·W_o + b_o`. The same function with or without `block_size`."""

    def ref(params, x, ctx):
        batch, T, D = x.shape
        dh = D // heads
        qkv = x @ params["W_qkv"] + (_row(params["b_qkv"], 3) if bias else 0)
        q, k, v = (
            qkv[..., i * D : (i + 1) * D].reshape(batch, T, heads, dh).transpose(0, 2, 1, 3)
            for i in range(3)
        )  # each (batch, H, T, dh)
        S = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)  # (batch, H, T, T)
        if causal:
            allowed = jnp.tril(jnp.ones((1, 1, T, T), bool))  # key j ≤ query i
            S = jnp.where(allowed, S, -jnp.inf)  # j > i: weight e^−∞ = 0
        O = _softmax(S) @ v  # (batch, H, T, dh)
        O = O.transpose(0, 2, 1, 3).reshape(batch, T, D)  # heads side by side
        return O @ params["W_o"] + (_row(params["b_o"], 3) if bias else 0)

    return ref


def gpt_block(heads: int, rate: float = 0.0) -> LayerRef:
    """GPT-2's pre-layer-norm block: `x₂ = x + drop(attention(ln₁(x)))` (causal), `y = x₂ +
    drop(gelu_tanh(ln₂(x₂)·W_fc + b_fc)·W_proj + b_proj)`. In training each branch's
    dropout draws its mask from `fold_in(ctx.key, 0)` (attention) and `fold_in(ctx.key, 1)`
    (MLP), as fnn/lm/block.py documents."""
    ln, attend, fc = layer_norm(), attention(heads, causal=True), dense()
    act = ACTIVATIONS["gelu_tanh"]

    def drop(y, ctx, salt):
        if not (rate and ctx.train):
            return y
        return dropout_mask(jax.random.fold_in(ctx.key, salt), rate, y.shape) * y / (1 - rate)

    def ref(params, x, ctx):
        x2 = x + drop(attend(params["attn"], ln(params["ln1"], x, ctx), ctx), ctx, 0)
        h = act(fc(params["fc"], ln(params["ln2"], x2, ctx), ctx))
        return x2 + drop(fc(params["proj"], h, ctx), ctx, 1)

    return ref


def serial_dense_softmax(params, x, ctx):
    return _softmax(dense()(params[0], x, ctx))  # softmax(x·W + b)


def residual_mlp(params, x, ctx):
    first, _, second = params
    return x + dense()(second, jnp.tanh(dense()(first, x, ctx)), ctx)  # x + tanh(xW₁+b₁)W₂+b₂


# ----------------------------------------------------------------------------- losses


def mean_squared_error(pred, target):
    return jnp.mean((pred - target) ** 2)  # mean over every element, no ½


def huber(delta: float = 1.0) -> LossRef:
    def ref(pred, target):
        a = jnp.abs(pred - target)  # ½r² inside δ, δ(|r| − ½δ) outside
        return jnp.mean(jnp.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta)))

    return ref


def binary_cross_entropy(pred, target):
    return -jnp.mean(target * jnp.log(pred) + (1 - target) * jnp.log(1 - pred))


def sigmoid_binary_cross_entropy(pred, target):
    p = 1 / (1 + jnp.exp(-pred))  # σ(z), then the cross-entropy on probabilities
    return -jnp.mean(target * jnp.log(p) + (1 - target) * jnp.log(1 - p))


def softmax_cross_entropy(pred, target):
    """Integer labels: mean over the batch of −log softmax(z)[label]; targets shaped like
    the logits: −Σ_k t_k log softmax(z)_k summed over classes, mean over the batch."""
    logp = _log_softmax(pred)
    if jnp.issubdtype(target.dtype, jnp.integer):
        return -jnp.mean(jnp.take_along_axis(logp, target[..., None], axis=-1))
    return -jnp.mean(jnp.sum(target * logp, axis=-1))


def lm_cross_entropy(pred, target):
    """pred = HeadInput(h, table): logits z = h·tableᵀ, mean over batch·T rows of the
    softmax cross-entropy of z against the next-token ids."""
    h, table = pred
    return softmax_cross_entropy(h @ table.T, target)

"""Composition: `serial` chains layers; `mlp` builds the usual dense network; `residual`
adds a skip connection around a layer."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from fnn.activations import get_activation
from fnn.core import Ctx, Layer, forward, init_state, update_state
from fnn.dropout import dropout as dropout_layer
from fnn.initializers import Initializer
from fnn.layers import dense
from fnn.normalization import batch_norm as batch_norm_layer


def chain_of(net: Layer) -> tuple[Layer, ...] | None:
    """The layers that `serial` chained into `net`, in order; None for a leaf layer.
    Used by `fnn.per_example` to walk a network."""
    return net.sublayers or None


def serial(*layers: Layer) -> Layer:
    """Chains `layers`: forwards in order, backwards in reverse (the chain rule).

    Params and residuals are tuples with one entry per layer. An error raised by a layer's
    forward is re-raised as a ValueError/TypeError that names its index and kind.

    With random or stateful layers inside, the chain takes a `Ctx` too: layer i gets
    `ctx.train`, the key `fold_in(ctx.key, i)` and `ctx.state[i]`; the state is a tuple
    with one entry per layer (`()` for a layer without state).
    """
    if not all(isinstance(layer, Layer) for layer in layers):
        kinds = [type(layer).__name__ for layer in layers]
        raise TypeError(f"serial: every argument must be an fnn Layer, got {kinds}")
    name = "serial(" + ", ".join(layer.name for layer in layers) + ")"

    def init(key, in_shape, dtype=jnp.float32):
        keys = jax.random.split(key, max(len(layers), 1))
        params = []
        shape = tuple(in_shape)
        for layer_key, layer in zip(keys, layers, strict=False):
            shape, layer_params = layer.init(layer_key, shape, dtype)
            params.append(layer_params)
        return shape, tuple(params)

    takes_ctx = any(layer.takes_ctx for layer in layers)
    stateful = any(layer.init_state is not None for layer in layers)

    def sub_ctx(ctx, i):
        """Layer i's share of `ctx`: its own key and state."""
        if ctx is None or not layers[i].takes_ctx:
            return None
        key = None if ctx.key is None else jax.random.fold_in(ctx.key, i)
        state = ctx.state[i] if stateful and ctx.state != () else ()
        return Ctx(ctx.train, key, state)

    def forward_(params, x, ctx=None):
        if not isinstance(params, tuple | list) or len(params) != len(layers):
            got = len(params) if isinstance(params, tuple | list) else type(params).__name__
            raise ValueError(f"serial: expected params for {len(layers)} layers, got {got}")
        if stateful and ctx is not None and ctx.state != () and len(ctx.state) != len(layers):
            raise ValueError(
                f"serial: expected state for {len(layers)} layers (from fnn.init_state), "
                f"got {len(ctx.state) if isinstance(ctx.state, tuple) else ctx.state!r}"
            )
        residuals = []
        for i, (layer, layer_params) in enumerate(zip(layers, params, strict=True)):
            try:
                x, res = forward(layer, layer_params, x, sub_ctx(ctx, i))
            except (ValueError, TypeError) as error:
                if type(error) not in (ValueError, TypeError):  # e.g. JAX's tracer errors
                    raise
                message = str(error).removeprefix(f"{layer.name}: ")
                raise type(error)(f"layer {i} ({layer.name}): {message}") from None
            residuals.append(res)
        return x, tuple(residuals)

    def backward(params, residuals, dy):
        grads = [None] * len(layers)
        for i in reversed(range(len(layers))):
            grads[i], dy = layers[i].backward(params[i], residuals[i], dy)  # chain rule
        return tuple(grads), dy

    def init_state_(params):
        return tuple(init_state(layer, p) for layer, p in zip(layers, params, strict=True))

    def update_state_(state, residuals):
        return tuple(
            update_state(layer, s, r) for layer, s, r in zip(layers, state, residuals, strict=True)
        )

    return Layer(
        init,
        forward_,
        backward,
        name,
        tuple(layers),
        takes_ctx,
        init_state_ if stateful else None,
        update_state_ if stateful else None,
    )


def mlp(
    features: Sequence[int],
    activation: str | Layer = "relu",
    *,
    output_activation: str | Layer | None = None,
    w_init: str | Initializer = "glorot_uniform",
    b_init: str | Initializer = "zeros",
    batch_norm: bool = False,
    dropout: float = 0.0,
) -> Layer:
    """A multi-layer perceptron: dense layers of widths `features`, activations between.

    Arguments:
      features: widths of the dense layers after the input, e.g. `[5, 4, 1]` for the
        tutorial's 100→5→4→1 network (the input width comes from `init`'s `in_shape`).
      activation: the hidden activation (a name or a Layer).
      output_activation: an activation after the last dense layer, or None for raw
        outputs (logits), which is what the fused losses such as
        `sigmoid_binary_cross_entropy` and `softmax_cross_entropy` take.
      w_init, b_init: initialisers for every dense layer.
      batch_norm: put a `batch_norm` between each hidden dense layer and its activation.
      dropout: put a `dropout(rate)` after each hidden activation (0: none).

    With `batch_norm` or `dropout` the network takes a `fnn.Ctx` (training or
    evaluation; see `fnn.core`).
    """
    features = list(features)
    if not features:
        raise ValueError("mlp: features must name at least one layer width")
    hidden_activation = get_activation(activation)  # validates the name even for one layer
    layers: list[Layer] = []
    for i, width in enumerate(features):
        layers.append(dense(width, w_init=w_init, b_init=b_init))
        if i < len(features) - 1:
            layers += [batch_norm_layer()] if batch_norm else []
            layers.append(hidden_activation)
            layers += [dropout_layer(dropout)] if dropout else []
    if output_activation is not None:
        layers.append(get_activation(output_activation))
    return serial(*layers)


def residual(layer: Layer) -> Layer:
    """A skip connection around `layer`: `y = x + layer(x)`.

    `layer` must keep the shape of its input (checked at init). Params and residuals are
    `layer`'s own; the backward is the chain rule through the sum, `dx = dy + dx_inner`,
    where `dx_inner` is `layer`'s backward for the same `dy`.

    The result is a leaf layer: its `sublayers` stays empty, since `sublayers` means a
    serial chain (what `fnn.per_example` walks), which a skip connection is not. A `Ctx`
    (key, state) passes through to `layer` unchanged, and so does its state.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"residual: the argument must be an fnn Layer, got {type(layer).__name__}")
    name = f"residual({layer.name})"

    def init(key, in_shape, dtype=jnp.float32):
        out_shape, params = layer.init(key, tuple(in_shape), dtype)
        if tuple(out_shape) != tuple(in_shape):
            raise ValueError(
                f"{name}: the inner layer {layer.name} must keep the shape of its input; "
                f"input {tuple(in_shape)}, output {tuple(out_shape)}"
            )
        return tuple(in_shape), params

    def forward_(params, x, ctx=None):
        y, residuals = forward(layer, params, x, ctx)
        if y.shape != x.shape:
            raise ValueError(
                f"{name}: the inner layer {layer.name} must keep the shape of its input; "
                f"input {x.shape}, output {y.shape}"
            )
        return x + y, residuals  # y = x + layer(x)

    def backward(params, residuals, dy):
        dparams, dx_inner = layer.backward(params, residuals, dy)  # ∂/∂(params, x) of layer(x)
        return dparams, dy + dx_inner  # dx = dy·∂x/∂x + dy·∂layer(x)/∂x = dy + dx_inner

    return Layer(
        init,
        forward_,
        backward,
        name,
        (),
        layer.takes_ctx,
        layer.init_state,
        layer.update_state,
    )

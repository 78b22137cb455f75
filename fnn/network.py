"""Composition: `serial` chains layers; `mlp` builds the usual dense network; `residual`
adds a skip connection around a layer."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from fnn.activations import get_activation
from fnn.core import Layer
from fnn.initializers import Initializer
from fnn.layers import dense


def chain_of(net: Layer) -> tuple[Layer, ...] | None:
    """The layers that `serial` chained into `net`, in order; None for a leaf layer.
    Used by `fnn.per_example` to walk a network."""
    return net.sublayers or None


def serial(*layers: Layer) -> Layer:
    """Chains `layers`: forwards in order, backwards in reverse (the chain rule).

    Params and residuals are tuples with one entry per layer. An error raised by a layer's
    forward is re-raised as a ValueError/TypeError that names its index and kind.
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

    def forward(params, x):
        if not isinstance(params, tuple | list) or len(params) != len(layers):
            got = len(params) if isinstance(params, tuple | list) else type(params).__name__
            raise ValueError(f"serial: expected params for {len(layers)} layers, got {got}")
        residuals = []
        for i, (layer, layer_params) in enumerate(zip(layers, params, strict=True)):
            try:
                x, res = layer.forward(layer_params, x)
            except (ValueError, TypeError) as error:
                message = str(error).removeprefix(f"{layer.name}: ")
                raise type(error)(f"layer {i} ({layer.name}): {message}") from None
            residuals.append(res)
        return x, tuple(residuals)

    def backward(params, residuals, dy):
        grads = [None] * len(layers)
        for i in reversed(range(len(layers))):
            grads[i], dy = layers[i].backward(params[i], residuals[i], dy)  # chain rule
        return tuple(grads), dy

    return Layer(init, forward, backward, name, tuple(layers))


def mlp(
    features: Sequence[int],
    activation: str | Layer = "relu",
    *,
    output_activation: str | Layer | None = None,
    w_init: str | Initializer = "glorot_uniform",
    b_init: str | Initializer = "zeros",
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
    """
    features = list(features)
    if not features:
        raise ValueError("mlp: features must name at least one layer width")
    hidden_activation = get_activation(activation)  # validates the name even for one layer
    layers: list[Layer] = []
    for i, width in enumerate(features):
        layers.append(dense(width, w_init=w_init, b_init=b_init))
        if i < len(features) - 1:
            layers.append(hidden_activation)
    if output_activation is not None:
        layers.append(get_activation(output_activation))
    return serial(*layers)


def residual(layer: Layer) -> Layer:
    """A skip connection around `layer`: `y = x + layer(x)`.

    `layer` must keep the shape of its input (checked at init). Params and residuals are
    `layer`'s own; the backward is the chain rule through the sum, `dx = dy + dx_inner`,
    where `dx_inner` is `layer`'s backward for the same `dy`.

    The result is a leaf layer: its `sublayers` stays empty, since `sublayers` means a
    serial chain (what `fnn.per_example` walks), which a skip connection is not.
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

    def forward(params, x):
        y, residuals = layer.forward(params, x)
        if y.shape != x.shape:
            raise ValueError(
                f"{name}: the inner layer {layer.name} must keep the shape of its input; "
                f"input {x.shape}, output {y.shape}"
            )
        return x + y, residuals  # y = x + layer(x)

    def backward(params, residuals, dy):
        dparams, dx_inner = layer.backward(params, residuals, dy)  # ∂/∂(params, x) of layer(x)
        return dparams, dy + dx_inner  # dx = dy·∂x/∂x + dy·∂layer(x)/∂x = dy + dx_inner

    return Layer(init, forward, backward, name)

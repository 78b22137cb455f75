"""Whole networks built from the layers: `mlp`, the small conv net `cnn`, and a one-block
causal `transformer`. Each is a `serial` chain, so every tool that takes a layer takes
them."""

from __future__ import annotations

from collections.abc import Sequence

from fnn.core import Layer
from fnn.errors import SettingError
from fnn.initializers import Initializer
from fnn.layers.activations import gelu, get_activation
from fnn.layers.attention import multi_head_attention
from fnn.layers.combinators import residual, serial
from fnn.layers.conv import conv2d
from fnn.layers.dense import dense
from fnn.layers.dropout import dropout as dropout_layer
from fnn.layers.embedding import embedding, positional_embedding
from fnn.layers.normalization import batch_norm as batch_norm_layer
from fnn.layers.normalization import layer_norm
from fnn.layers.reshape import flatten

__all__ = ["cnn", "mlp", "transformer"]


def _hidden(linear: Layer, activation: Layer, batch_norm: bool, dropout: float) -> list[Layer]:
    """A hidden block: `linear`, then `batch_norm` (when asked), the activation, then
    `dropout` (when its rate is not 0): where both models put them."""
    return [
        linear,
        *([batch_norm_layer()] if batch_norm else []),
        activation,
        *([dropout_layer(dropout)] if dropout else []),
    ]


def _output(layers: list[Layer], output_activation: str | Layer | None) -> Layer:
    """The chain of `layers`, with `output_activation` after the last when given."""
    if output_activation is not None:
        layers = [*layers, get_activation(output_activation)]
    return serial(*layers)


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
        raise SettingError(
            "mlp: features must name at least one layer width", settings=("features",)
        )
    act = get_activation(activation)  # validates the name even for one layer
    layers: list[Layer] = []
    for width in features[:-1]:
        layers += _hidden(dense(width, w_init=w_init, b_init=b_init), act, batch_norm, dropout)
    layers.append(dense(features[-1], w_init=w_init, b_init=b_init))
    return _output(layers, output_activation)


def cnn(
    outputs: int,
    *,
    channels: Sequence[int] = (16, 32),
    strides: Sequence[int] = (1, 2),
    kernel_size: int = 3,
    hidden: Sequence[int] = (64,),
    activation: str | Layer = "relu",
    output_activation: str | Layer | None = None,
    w_init: str | Initializer = "he_normal",
    batch_norm: bool = False,
    dropout: float = 0.0,
) -> Layer:
    """A small convolutional network for images: SAME convolutions with `activation`
    after each, flatten, dense hidden layers, and a dense output layer of width `outputs`.

    `batch_norm` puts a `batch_norm` between each convolution and its activation (per
    channel, over batch, height and width); `dropout` a `dropout(rate)` after each hidden
    dense layer's activation. Either makes the network take a `fnn.Ctx`.

    The default is `conv2d(16, 3) relu, conv2d(32, 3, stride 2) relu, flatten, dense(64)
    relu, dense(outputs)`; input `(batch, height, width, channels)`, output
    `(batch, outputs)` (logits unless `output_activation` is given).
    """
    channels, strides, hidden = list(channels), list(strides), list(hidden)
    if not channels or len(channels) != len(strides):
        raise SettingError(
            f"cnn: channels and strides must be non-empty and of the same length, got "
            f"{channels} and {strides}",
            settings=("channels", "strides"),
        )
    act = get_activation(activation)
    layers: list[Layer] = []
    for width, stride in zip(channels, strides, strict=True):
        conv = conv2d(width, kernel_size, stride=stride, w_init=w_init)
        layers += _hidden(conv, act, batch_norm, 0.0)
    layers.append(flatten())
    for width in hidden:
        layers += _hidden(dense(width, w_init=w_init), act, False, dropout)
    layers.append(dense(outputs))
    return _output(layers, output_activation)


def transformer(
    vocab: int, width: int, heads: int, ffn: int, *, outputs: int | None = None
) -> Layer:
    """A one-block causal transformer over token ids.

    `embedding(vocab, width)`, `positional_embedding()`, a pre-norm residual
    `multi_head_attention(heads, causal=True)`, a pre-norm residual feed-forward block
    `dense(ffn)`, gelu, `dense(width)`, a final `layer_norm` and `dense(outputs)` (default
    `vocab`: a language model's next-token logits): input `(batch, T)` integer ids
    (`in_shape=(T,)`), output `(batch, T, outputs)` logits for `softmax_cross_entropy`.
    """
    return serial(
        embedding(vocab, width),
        positional_embedding(),
        residual(serial(layer_norm(), multi_head_attention(heads, causal=True))),
        residual(serial(layer_norm(), dense(ffn), gelu(), dense(width))),
        layer_norm(),
        dense(vocab if outputs is None else outputs),
    )

"""Composition: `serial` chains layers (forwards in order, backwards in reverse) and
`residual` adds a skip connection around a layer. Each is one `Walk`, the statement of
how it calls its layers; `fnn.combinator` derives the rest of the layer from it."""

from __future__ import annotations

from fnn.core import Layer, Walk, expect
from fnn.errors import ArgumentError
from fnn.walk import combinator

__all__ = ["residual", "serial"]


def serial(*layers: Layer) -> Layer:
    """Chains `layers`: forwards in order, backwards in reverse (the chain rule).

    Params and residuals are tuples with one entry per layer. An error raised by a layer's
    forward gets a note naming its index and kind (the original error and its traceback
    are kept).

    With random or stateful layers inside, the chain takes a `Ctx` too: layer i gets
    `ctx.train`, the key `fold_in(ctx.key, i)` and `ctx.state[i]`; the state is a tuple
    with one entry per layer (`()` for a layer without state). The chain has a
    per-example backward when every layer has one.
    """
    if not all(isinstance(layer, Layer) for layer in layers):
        kinds = [type(layer).__name__ for layer in layers]
        raise ArgumentError(f"serial: every argument must be an fnn Layer, got {kinds}")
    count = len(layers)

    def chain_forward(call, x):
        for i in range(count):
            x = call(i, x)  # x_{i+1} = layer_i(x_i)
        return x

    def chain_backward(call, dy):
        for i in reversed(range(count)):
            dy = call(i, dy)  # dx_i = dy_{i+1}·∂layer_i/∂x_i, last layer first
        return dy

    name = "serial(" + ", ".join(layer.name for layer in layers) + ")"
    return combinator(Walk(layers, chain_forward, chain_backward), name)


def residual(layer: Layer) -> Layer:
    """A skip connection around `layer`: `y = x + layer(x)`.

    `layer` must keep the shape of its input (checked at init and in the forward). Params,
    residuals, state and ctx are `layer`'s own (the walk "holds" it as "inner"); the
    backward is the chain rule through the sum, `dx = dy + dx_inner`, where `dx_inner` is
    `layer`'s backward for the same `dy`.
    """
    if not isinstance(layer, Layer):
        raise ArgumentError(
            f"residual: the argument must be an fnn Layer, got {type(layer).__name__}"
        )
    name = f"residual({layer.name})"

    def same_shape(in_shape, out_shape):
        expect(
            tuple(in_shape) == tuple(out_shape),
            name,
            f"the inner layer {layer.name} must keep the shape of its input; "
            f"input {tuple(in_shape)}, output {tuple(out_shape)}",
        )
        return tuple(in_shape)

    def skip_forward(call, x):
        y = call(0, x)
        same_shape(x.shape, y.shape)
        return x + y  # y = x + layer(x)

    def skip_backward(call, dy):
        return dy + call(0, dy)  # dx = dy·∂x/∂x + dy·∂layer(x)/∂x = dy + dx_inner

    def skip_shapes(call, in_shape):
        return same_shape(in_shape, call(0, in_shape))

    return combinator(Walk((layer,), skip_forward, skip_backward, skip_shapes, "inner"), name)

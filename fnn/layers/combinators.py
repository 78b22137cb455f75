"""Composition: `serial` chains layers (forwards in order, backwards in reverse) and
`residual` adds a skip connection around a layer. Both are layers themselves."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnn.core import Ctx, Layer, expect, forward, init_state, update_state


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
        raise TypeError(f"serial: every argument must be an fnn Layer, got {kinds}")
    name = "serial(" + ", ".join(layer.name for layer in layers) + ")"
    takes_ctx = any(layer.takes_ctx for layer in layers)
    stateful = any(layer.init_state is not None for layer in layers)

    def init(key, in_shape, dtype=jnp.float32):
        keys = jax.random.split(key, max(len(layers), 1))
        params = []
        shape = tuple(in_shape)
        for layer_key, layer in zip(keys, layers, strict=False):
            shape, layer_params = layer.init(layer_key, shape, dtype)
            params.append(layer_params)
        return shape, tuple(params)

    def sub_ctx(ctx, i):
        """Layer i's share of `ctx`: its own key and state."""
        if ctx is None or not layers[i].takes_ctx:
            return None
        key = None if ctx.key is None else jax.random.fold_in(ctx.key, i)
        state = ctx.state[i] if stateful and ctx.state != () else ()
        return Ctx(ctx.train, key, state)

    def chain_forward(params, x, ctx=None):
        expect(
            isinstance(params, tuple | list) and len(params) == len(layers),
            "serial",
            f"expected params for {len(layers)} layers, got "
            f"{len(params) if isinstance(params, tuple | list) else type(params).__name__}",
        )
        if stateful and ctx is not None and ctx.state != ():
            expect(
                isinstance(ctx.state, tuple) and len(ctx.state) == len(layers),
                "serial",
                f"expected state for {len(layers)} layers (from fnn.init_state), got "
                f"{len(ctx.state) if isinstance(ctx.state, tuple) else ctx.state!r}",
            )
        residuals = []
        for i, (layer, layer_params) in enumerate(zip(layers, params, strict=True)):
            try:
                x, res = forward(layer, layer_params, x, sub_ctx(ctx, i))
            except (ValueError, TypeError) as error:
                error.add_note(f"in layer {i} ({layer.name}) of {name}")
                raise
            residuals.append(res)
        return x, tuple(residuals)

    def reverse(backward_of):
        """The chain rule over the layers' `backward_of(layer)` functions, last first."""

        def chain_backward(params, residuals, dy):
            grads = [None] * len(layers)
            for i in reversed(range(len(layers))):
                grads[i], dy = backward_of(layers[i])(params[i], residuals[i], dy)
            return tuple(grads), dy

        return chain_backward

    def chain_trace(params, residuals, dy, visit):
        grads = [None] * len(layers)
        for i in reversed(range(len(layers))):
            grads[i], dy = visit(layers[i], params[i], residuals[i], dy, i, lambda t, i=i: t[i])
        return tuple(grads), dy

    def chain_init_state(params):
        return tuple(init_state(layer, p) for layer, p in zip(layers, params, strict=True))

    def chain_update_state(state, residuals):
        return tuple(
            update_state(layer, s, r) for layer, s, r in zip(layers, state, residuals, strict=True)
        )

    per_example = all(layer.per_example_backward is not None for layer in layers)
    return Layer(
        init,
        chain_forward,
        reverse(lambda layer: layer.backward),
        name,
        sublayers=tuple(layers),
        takes_ctx=takes_ctx,
        init_state=chain_init_state if stateful else None,
        update_state=chain_update_state if stateful else None,
        per_example_backward=reverse(lambda layer: layer.per_example_backward)
        if per_example
        else None,
        trace_backward=chain_trace,
    )


def residual(layer: Layer) -> Layer:
    """A skip connection around `layer`: `y = x + layer(x)`.

    `layer` must keep the shape of its input (checked at init). Params and residuals are
    `layer`'s own; the backward is the chain rule through the sum, `dx = dy + dx_inner`,
    where `dx_inner` is `layer`'s backward for the same `dy`.

    The result is a leaf layer: its `sublayers` stays empty, since `sublayers` means a
    serial chain, which a skip connection is not. A `Ctx` (key, state) passes through to
    `layer` unchanged, and so does its state.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"residual: the argument must be an fnn Layer, got {type(layer).__name__}")
    name = f"residual({layer.name})"

    def same_shape(in_shape, out_shape):
        expect(
            tuple(in_shape) == tuple(out_shape),
            name,
            f"the inner layer {layer.name} must keep the shape of its input; "
            f"input {tuple(in_shape)}, output {tuple(out_shape)}",
        )

    def init(key, in_shape, dtype=jnp.float32):
        out_shape, params = layer.init(key, tuple(in_shape), dtype)
        same_shape(in_shape, out_shape)
        return tuple(in_shape), params

    def skip_forward(params, x, ctx=None):
        y, residuals = forward(layer, params, x, ctx)
        same_shape(x.shape, y.shape)
        return x + y, residuals  # y = x + layer(x)

    def skip(backward):
        def skip_backward(params, residuals, dy):
            dparams, dx_inner = backward(params, residuals, dy)  # ∂/∂(params, x) of layer(x)
            return dparams, dy + dx_inner  # dx = dy·∂x/∂x + dy·∂layer(x)/∂x = dy + dx_inner

        return skip_backward

    def skip_trace(params, residuals, dy, visit):
        dparams, dx_inner = visit(layer, params, residuals, dy, 0, lambda t: t)  # same params
        return dparams, dy + dx_inner  # dx = dy + dx_inner

    return Layer(
        init,
        skip_forward,
        skip(layer.backward),
        name,
        takes_ctx=layer.takes_ctx,
        init_state=layer.init_state,
        update_state=layer.update_state,
        per_example_backward=None
        if layer.per_example_backward is None
        else skip(layer.per_example_backward),
        trace_backward=skip_trace,
    )

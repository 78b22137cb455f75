"""Combinators from one statement of how they walk their layers.

A combinator (`serial`, `residual`, a user's own) states once, in a `Walk`, the order in
which its forward calls its layers and how their outputs combine, and the chain rule of
that forward. `combinator(walk, name)` derives the rest of the `Layer` from it: init,
forward (each layer's params, key and state handed to it), backward, the per-example
backward (when every layer has one), state (`init_state`, `update_state`) and `takes_ctx`.
The tools that look inside a network (`fnn.backward_trace`, `fnn.bench.summary`, the
gradient-flow probe, per-example gradients) walk the same statement through
`run_backward`, so a user's combinator is seen inside without extra code:

    def parallel_sum(f, g):
        return fnn.combinator(
            fnn.Walk(
                (f, g),
                forward=lambda call, x: call(0, x) + call(1, x),      # y = f(x) + g(x)
                backward=lambda call, dy: call(0, dy) + call(1, dy),  # dx = f'ᵀdy + g'ᵀdy
                shapes=lambda call, s: same_shapes("parallel_sum", call(0, s), call(1, s)),
            ),
            f"sum({f.name}, {g.name})",
        )
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fnn.core import (
    Array,
    Ctx,
    Layer,
    Params,
    Residuals,
    Shape,
    Walk,
    expect,
    forward,
    init_state,
    update_state,
)
from fnn.errors import ArgumentError, SettingError

HOLDS = ("tuple", "inner")

# run_layer(i, layer, params_i, residuals_i, dy_i) -> (grads_i, dx_i): one layer's backward
RunLayer = Callable[[int, Layer, Params, Residuals, Array], tuple[Params, Array]]


def layer_path(indices: tuple[int, ...] | list[int]) -> str:
    """Where a layer sits in a network: `net` for the network, `net[2]` for its third
    layer, `net[3][0][1]` for a layer inside a combinator inside a combinator."""
    return "net" + "".join(f"[{i}]" for i in indices)


def chain_shapes(call: Callable[[int, Shape], Shape], in_shape: Shape, count: int) -> Shape:
    """A chain's shapes: each layer's output shape is the next one's input shape."""
    shape = tuple(in_shape)
    for i in range(count):
        shape = tuple(call(i, shape))
    return shape


def same_shapes(name: str, *shapes: Shape) -> Shape:
    """The one shape that `shapes` all are, for outputs that must agree (`y = x + f(x)`,
    `y = f(x) + g(x)`); raises naming `name` when they differ."""
    distinct = {tuple(shape) for shape in shapes}
    expect(
        len(distinct) == 1,
        name,
        "the shapes that are added must agree, got " + ", ".join(str(tuple(s)) for s in shapes),
    )
    return tuple(shapes[0])


def split(walk: Walk, tree: Any, what: str, name: str, hint: str = "") -> tuple:
    """The layers' shares of a combinator's params (or residuals, grads, state): one per
    layer. `what` and `hint` word the error for a tree that is not one entry a layer."""
    if walk.holds == "inner":
        return (tree,)
    n = len(walk.layers)
    expect(
        isinstance(tree, tuple | list) and len(tree) == n,
        name.partition("(")[0],  # the combinator's kind: "serial"
        f"expected {what} for {n} layers{hint}, got "
        f"{len(tree) if isinstance(tree, tuple | list) else type(tree).__name__}",
    )
    return tuple(tree)


def join(walk: Walk, parts: list | tuple) -> Any:
    """The combinator's tree from the layers' shares: `split`'s inverse."""
    return parts[0] if walk.holds == "inner" else tuple(parts)


def part(walk: Walk, tree: Any, i: int) -> Any:
    """Layer i's share of a tree shaped like the combinator's params (no checks)."""
    return tree if walk.holds == "inner" else tree[i]


class _Once:
    """Counts the calls of each layer during one walk, so that a walk that skips a layer
    or calls one twice fails with its name instead of returning a wrong gradient."""

    def __init__(self, walk: Walk, name: str, direction: str):
        self.calls = [0] * len(walk.layers)
        self.name, self.direction = name, direction

    def __call__(self, i: int) -> None:
        expect(
            isinstance(i, int) and 0 <= i < len(self.calls),
            self.name,
            f"the {self.direction} walk called layer {i!r}; it holds {len(self.calls)}",
        )
        self.calls[i] += 1

    def done(self) -> None:
        wrong = [(i, n) for i, n in enumerate(self.calls) if n != 1]
        expect(
            not wrong,
            self.name,
            f"the {self.direction} walk must call each layer exactly once; "
            + ", ".join(f"layer {i} {n} times" for i, n in wrong),
        )


def run_backward(layer: Layer, params: Params, residuals: Residuals, dy: Array,
                 run_layer: RunLayer) -> tuple[Params, Array]:  # fmt: skip
    """A combinator's backward with each inner layer's run through `run_layer(i, layer_i,
    params_i, residuals_i, dy_i) -> (grads_i, dx_i)`: the layers' `backward` (the
    combinator's own backward), their `per_example_backward`, or a tool's visitor that
    records each layer (`fnn.backward_trace`)."""
    walk = layer.walk
    if walk is None:
        raise ArgumentError(f"{layer.name} is a leaf layer: it has no walk")
    ps = split(walk, params, "params", layer.name)
    rs = split(walk, residuals, "residuals", layer.name)
    grads: list[Any] = [None] * len(walk.layers)
    once = _Once(walk, layer.name, "backward")

    def call(i, dy_i):
        once(i)
        grads[i], dx_i = run_layer(i, walk.layers[i], ps[i], rs[i], dy_i)
        return dx_i

    dx = walk.backward(call, dy)
    once.done()
    return join(walk, grads), dx


def combinator(walk: Walk, name: str) -> Layer:
    """The `Layer` that walks `walk.layers` as `walk` states: init, forward, backward,
    per-example backward, state and `takes_ctx`, all derived.

    Arguments:
      walk: how the combinator calls its layers forward and backward (see `fnn.Walk`).
      name: the combinator's name in reports, e.g. `"serial(dense(4), relu)"`.

    Returns:
      A `Layer` whose `walk` is `walk`. Layer i gets `fold_in(ctx.key, i)` and its share
      of `ctx.state` ("tuple"), or the combinator's own ctx ("inner"). An error raised in
      layer i's forward gets a note naming its index and kind.
    """
    layers = tuple(walk.layers)
    if not all(isinstance(layer, Layer) for layer in layers):
        kinds = [type(layer).__name__ for layer in layers]
        raise ArgumentError(f"{name}: every layer must be an fnn Layer, got {kinds}")
    if walk.holds not in HOLDS:
        raise SettingError(f"{name}: Walk.holds must be one of {HOLDS}, got {walk.holds!r}")
    if walk.holds == "inner" and len(layers) != 1:
        raise SettingError(f"{name}: Walk.holds='inner' needs one layer, got {len(layers)}")
    walk = walk._replace(layers=layers)
    inner = walk.holds == "inner"
    stateful = any(layer.init_state is not None for layer in layers)

    def init(key, in_shape, dtype=jnp.float32):
        keys = [key] if inner else jax.random.split(key, max(len(layers), 1))
        params: list[Any] = [None] * len(layers)
        once = _Once(walk, name, "shapes")

        def call(i, shape):
            once(i)
            out_shape, params[i] = layers[i].init(keys[i], tuple(shape), dtype)
            return tuple(out_shape)

        if walk.shapes is None:
            out_shape = chain_shapes(call, tuple(in_shape), len(layers))
        else:
            out_shape = walk.shapes(call, tuple(in_shape))
        once.done()
        return tuple(out_shape), join(walk, params)

    def sub_ctx(ctx, i):
        """Layer i's share of `ctx`: its own key and state."""
        if ctx is None or not layers[i].takes_ctx or inner:
            return ctx
        key = None if ctx.key is None else jax.random.fold_in(ctx.key, i)
        state = ctx.state[i] if stateful and ctx.state != () else ()
        return Ctx(ctx.train, key, state)

    def walk_forward(params, x, ctx=None):
        ps = split(walk, params, "params", name)
        if stateful and ctx is not None and ctx.state != () and not inner:
            split(walk, ctx.state, "state", name, " (from fnn.init_state)")
        residuals: list[Any] = [None] * len(layers)
        once = _Once(walk, name, "forward")

        def call(i, x_i):
            once(i)
            try:
                y_i, residuals[i] = forward(layers[i], ps[i], x_i, sub_ctx(ctx, i))
            except (ValueError, TypeError) as error:
                error.add_note(f"in layer {i} ({layers[i].name}) of {name}")
                raise
            return y_i

        y = walk.forward(call, x)
        once.done()
        return y, join(walk, residuals)

    def backward(params, residuals, dy):
        return run_backward(
            layer, params, residuals, dy, lambda i, sub, p, r, d: sub.backward(p, r, d)
        )

    def per_example_backward(params, residuals, dy):
        def run_layer(i, sub, p, r, d):
            assert sub.per_example_backward is not None  # set only when every layer has one
            return sub.per_example_backward(p, r, d)

        return run_backward(layer, params, residuals, dy, run_layer)

    def walk_init_state(params):
        ps = split(walk, params, "params", name)
        return join(walk, [init_state(sub, p) for sub, p in zip(layers, ps, strict=True)])

    def walk_update_state(state, residuals):
        ss = split(walk, state, "state", name)
        rs = split(walk, residuals, "residuals", name)
        return join(
            walk, [update_state(sub, s, r) for sub, s, r in zip(layers, ss, rs, strict=True)]
        )

    layer = Layer(
        init,
        walk_forward,
        backward,
        name,
        takes_ctx=any(sub.takes_ctx for sub in layers),
        init_state=walk_init_state if stateful else None,
        update_state=walk_update_state if stateful else None,
        per_example_backward=per_example_backward
        if all(sub.per_example_backward is not None for sub in layers)
        else None,
        walk=walk,
    )
    return layer

"""See the backward pass: what flows back through each layer of a network.

`backward_trace(net, loss, params, x, y)` runs ONE forward and hand-written backward pass
and keeps, for every layer (those inside `serial` and `residual` included), the cotangent
that reaches its output (the tutorial's `dA`; `dZ` for a dense layer's output), the
cotangent it passes down, and its parameter gradients: the numbers `jax.grad` computes
but never shows. `LayerTrace.summary` reduces them to root-mean-squares, and, with the
update an optimiser would apply, to the update-to-weight ratio ‖update‖/‖W‖.

    trace = fnn.backward_trace(net, loss, params, x, y)
    for layer in trace.layers:
        print(layer.path, layer.name, layer.rms_dy, layer.rms_grads)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn.core import Array, Ctx, Layer, Loss, Params, forward, update_state
from fnn.errors import NotFoundError
from fnn.walk import layer_path, part, run_backward


@dataclasses.dataclass(frozen=True)
class LayerTrace:
    """One layer's share of a backward pass.

    Attributes:
      path: where the layer sits, e.g. "net[2]" (the third layer of the network) or
        "net[3][0][1]" (inside a residual block's chain); "net" is the network itself.
      name: the layer's name.
      depth: how deep it is nested (0: the network).
      leaf: whether it is a leaf layer (no inner layers of its own).
      dy: the cotangent reaching its output, ∂L/∂y, shaped like its output.
      dx: the cotangent it passes down, ∂L/∂x, shaped like its input.
      grads: ∂L/∂params, shaped like its params (`()` for none).
      params: its params (for update ratios).
      select: `select(tree)` picks its share of a tree shaped like the network's params
        (an optimiser's updates, say).
    """

    path: str
    name: str
    depth: int
    leaf: bool
    dy: Array
    dx: Array
    grads: Params
    params: Params
    select: Callable[[Any], Any] = lambda tree: tree

    @property
    def rms_dy(self) -> float:
        return _rms(self.dy)

    @property
    def rms_dx(self) -> float:
        return _rms(self.dx)

    @property
    def rms_grads(self) -> float | None:
        """The RMS over every entry of its parameter gradients; None without params."""
        return _rms(self.grads) if _size(self.grads) else None

    def update_ratio(self, update: Params) -> float | None:
        """‖update‖/‖params‖ for `update` shaped like its params (what an optimiser would
        add); None without params or with params of norm 0."""
        norm = _norm(self.params)
        return _norm(update) / norm if _size(self.params) and norm > 0 else None

    def summary(self, update: Params = None) -> dict[str, Any]:
        """The RMS of dy, dx and the gradients, and the update ratio when `update` is
        given: plain floats, for tables and JSON."""
        row = {
            "path": self.path,
            "name": self.name,
            "rms_dy": self.rms_dy,
            "rms_dx": self.rms_dx,
            "rms_grads": self.rms_grads,
        }
        if update is not None:
            row["update_ratio"] = self.update_ratio(update)
        return row


@dataclasses.dataclass(frozen=True)
class Trace:
    """A whole backward pass: the loss, and one `LayerTrace` per layer, outermost first,
    then in the order the forward runs them."""

    loss: float
    layers: list[LayerTrace]
    state: Any = ()

    def __getitem__(self, path: str) -> LayerTrace:
        for layer in self.layers:
            if layer.path == path:
                return layer
        raise NotFoundError(f"no layer at {path!r}; paths: {[layer.path for layer in self.layers]}")

    def summaries(self, updates: Params = None) -> list[dict[str, Any]]:
        """Each layer's `summary`; `updates` shaped like the network's params gives each
        its update ratio."""
        rows = []
        for layer in self.layers:
            update = None if updates is None else layer.select(updates)
            rows.append(layer.summary(update))
        return rows


def _leaves(tree) -> list[np.ndarray]:
    return [
        np.asarray(leaf, np.float64)
        for leaf in jax.tree.leaves(tree)
        if np.asarray(leaf).dtype != jax.dtypes.float0
    ]


def _size(tree) -> int:
    return sum(leaf.size for leaf in _leaves(tree))


def _norm(tree) -> float:
    return math.sqrt(sum(float(np.sum(leaf * leaf)) for leaf in _leaves(tree)))


def _rms(tree) -> float:
    size = _size(tree)
    return _norm(tree) / math.sqrt(size) if size else 0.0


def walk_backward(net: Layer, params: Params, residuals: Any, dy: Array) -> list[tuple]:
    """The hand-written backward of `net` from `dy`, each layer's share recorded: a list of
    `(path indices, layer, select, dy, dx, grads, params, residuals)`, inner layers before the
    combinator holding them, the network itself last. `select(tree)` picks the layer's
    share of a tree shaped like the network's params."""
    records: list[tuple] = []

    def visit(path, select, layer, params, residuals, dy):
        if layer.walk is not None:  # a combinator: its layers' backwards, each recorded

            def run_layer(i, sub, p, r, d, walk=layer.walk):
                return visit((*path, i), lambda t: part(walk, select(t), i), sub, p, r, d)

            grads, dx = run_backward(layer, params, residuals, dy, run_layer)
        else:
            grads, dx = layer.backward(params, residuals, dy)
        records.append((path, layer, select, dy, dx, grads, params, residuals))
        return grads, dx

    visit((), lambda t: t, net, params, residuals, dy)
    return records


def traced_function(net: Layer, loss: Loss) -> tuple[Callable, list[tuple]]:
    """`(run, layout)`: `run(params, x, y, ctx) -> (value, state, records)`, a pure
    function (jit it) doing one forward and hand-written backward, `records` holding
    `(dy, dx, grads, params)` per layer; `layout` is filled, as `run` is traced, with
    each record's `(path indices, layer, select)` (see `walk_backward`)."""
    layout: list[tuple] = []

    def run(params, x, y, ctx):
        pred, residuals = forward(net, params, x, ctx)
        value, loss_residuals = loss.forward(pred, y)
        dpred = loss.backward(loss_residuals, jnp.ones_like(value))  # ∂L/∂pred
        walked = walk_backward(net, params, residuals, dpred)
        layout[:] = [record[:3] for record in walked]
        train = ctx is not None and ctx.train
        state = update_state(net, ctx.state, residuals) if train else ()
        return value, state, [record[3:7] for record in walked]  # not the residuals

    return run, layout


@functools.lru_cache(maxsize=16)
def _jitted(net: Layer, loss: Loss) -> tuple[Callable, list[tuple]]:
    run, layout = traced_function(net, loss)
    return jax.jit(run), layout


def _compiled(net: Layer, loss: Loss) -> tuple[Callable, list[tuple]]:
    """`traced_function`, jitted, and reused for the same net and loss (a trace per step
    of a loop compiles once); unhashable ones get a fresh one."""
    try:
        return _jitted(net, loss)
    except TypeError:
        return _jitted.__wrapped__(net, loss)


def backward_trace(
    net: Layer, loss: Loss, params: Params, x: Array, y: Array, ctx: Ctx | None = None
) -> Trace:
    """Every layer's cotangents and gradients from one hand-written backward pass.

    Arguments:
      net, loss: the network and loss.
      params: the network's params.
      x, y: a batch and its targets.
      ctx: the `fnn.Ctx` of random and stateful layers (default: evaluation).

    Returns:
      A `Trace`: the loss, and per layer (`trace["net[2]"]`) `dy` = ∂L/∂(its output),
      `dx` = ∂L/∂(its input) and `grads` = ∂L/∂(its params), outermost layers first. The
      network's own `grads` are `fnn.value_and_grad(net, loss)`'s.
    """
    run, layout = _compiled(net, loss)
    value, state, records = run(params, x, y, ctx)
    order = sorted(range(len(layout)), key=lambda i: layout[i][0])  # outermost, then forward
    layers = []
    for i in order:
        indices, layer, select = layout[i]
        dy, dx, grads, layer_params = records[i]
        layers.append(
            LayerTrace(
                path=layer_path(indices),
                name=layer.name,
                depth=len(indices),
                leaf=layer.walk is None,
                dy=dy,
                dx=dx,
                grads=grads,
                params=layer_params,
                select=select,
            )
        )
    return Trace(float(value), layers, state)

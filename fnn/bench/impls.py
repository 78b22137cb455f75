"""Implementations: `Impl` (one way to train a workload: a timed unit, its gradient and
its compiled artefacts), the names of all of them, and the fnn ones: a jitted step called
from Python, the same step repeated in one `lax.scan`, `jax.grad` through the custom_vjp
bridge, and per-example gradients."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from fnn.bench.measure import count_residuals, repeat_calls
from fnn.bench.problems import Problem, bridge_objective, gradients
from fnn.train import TrainState, make_train_step

JAX_IMPLS = ("manual", "autodiff", "manual_scan", "autodiff_scan", "custom_vjp")
PEER_MODULES = {"equinox": "equinox", "flax_nnx": "flax", "torch": "torch"}
PEER_IMPLS = tuple(PEER_MODULES)
PER_EXAMPLE_IMPLS = ("per_example", "per_example_vmap")
IMPLS = (*JAX_IMPLS, "numpy", *PEER_IMPLS, *PER_EXAMPLE_IMPLS)
REFERENCE = {  # the impl each one's ratio is taken against; autodiff where not listed
    "manual_scan": "autodiff_scan",
    "autodiff_scan": "autodiff_scan",
    "per_example": "per_example_vmap",
}


@dataclasses.dataclass
class Impl:
    """One way to train a workload. Everything after `state` is passed by keyword.

    Attributes:
      name: the impl name.
      unit: `unit(state) -> state`, `problem.workload.steps` steps, blocked until ready.
      state: the initial state passed to the first `unit`.
      grads: `grads() -> pytree` shaped like fnn's params at the initial params, or None.
      compiled: the compiled XLA executable (memory, HLO), or None.
      compile_s: seconds of lower + compile, or None.
      residuals: (arrays, bytes) kept for the backward, or None.
      kind: "dispatched", "scan", "numpy" or "peer".
      note: anything a reader should know.
    """

    name: str
    unit: Callable[[Any], Any]
    state: Any
    _: dataclasses.KW_ONLY
    grads: Callable[[], Any] | None = None
    compiled: Any = None
    compile_s: float | None = None
    residuals: tuple[int, int] | None = None
    kind: str = "dispatched"
    note: str = ""


class Skip(Exception):
    """An implementation that cannot run here; the message says why."""


def timed_compile(fn, *args):
    """(compiled, seconds) for `jax.jit(fn).lower(*args).compile()`."""
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def dispatch_unit(step: Callable, batch, steps: int) -> Callable:
    """A unit of `steps` Python calls of `step(state, batch) -> (state, metrics)`, a
    compiled step over a `TrainState` or a peer's own, blocked until the state is ready."""

    def unit(state):
        for _ in range(steps):
            state, _ = step(state, batch)
        return jax.block_until_ready(state)

    return unit


def repeat_step(step: Callable, steps: int) -> Callable:
    """`run(train_state, batch) -> (train_state, last_loss)`: `steps` steps of `step` on
    ONE fixed batch, fused into one `lax.scan` (one compiled call). Unlike
    `fnn.train.scan_steps`, which runs over stacked batches, nothing is stacked."""

    def run(train_state, batch):
        def body(train_state, _):
            train_state, metrics = step(train_state, batch)
            return train_state, metrics["loss"]

        train_state, losses = jax.lax.scan(body, train_state, None, length=steps)
        return train_state, losses[-1]

    return run


def _custom_vjp_step(problem: Problem) -> Callable:
    """A step whose gradient is `jax.grad` through the custom_vjp bridge."""
    objective = bridge_objective(problem)
    optimizer = problem.optimizer

    def step(train_state, batch):
        params, opt_state, state = train_state
        x, y = batch
        value, grads = jax.value_and_grad(lambda p: objective(p, x, y))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return TrainState(optax.apply_updates(params, updates), opt_state, state), {"loss": value}

    return step


def _residuals(problem: Problem, manual: bool) -> tuple[int, int]:
    """What the backward keeps: through the bridge for the manual backward, of the plain
    forward for autodiff."""
    if manual:
        objective = bridge_objective(problem)
    else:

        def objective(p, x, y):
            return problem.loss.forward(problem.net.forward(p, x)[0], y)[0]

    return count_residuals(objective, problem.params, problem.x, problem.y)


def build_jax_impl(name: str, problem: Problem) -> Impl:
    """One of `manual`, `autodiff`, `manual_scan`, `autodiff_scan`, `custom_vjp`."""
    steps = problem.workload.steps
    batch = (problem.x, problem.y)
    train_state = TrainState.create(problem.net, problem.params, problem.optimizer)
    manual = name != "autodiff" and name != "autodiff_scan"
    if name == "custom_vjp":
        step, kind, mode = jax.jit(_custom_vjp_step(problem)), "dispatched", "custom_vjp"
    else:
        mode = "manual" if manual else "autodiff"
        scan = name.endswith("_scan")
        step = make_train_step(problem.net, problem.loss, problem.optimizer, mode, jit=not scan)
        if scan:
            step = jax.jit(repeat_step(step, steps))
        kind = "scan" if scan else "dispatched"
    compiled, compile_s = timed_compile(step, train_state, batch)
    if kind == "scan":

        def unit(train_state):
            return jax.block_until_ready(compiled(train_state, batch)[0])
    else:
        unit = dispatch_unit(compiled, batch, steps)
    return Impl(
        name,
        unit,
        train_state,
        grads=lambda: gradients(problem, mode),
        compiled=compiled,
        compile_s=compile_s,
        residuals=_residuals(problem, manual),
        kind=kind,
    )


def build_per_example_impl(name: str, problem: Problem) -> Impl:
    """`per_example` (hand-written outer products, `fnn.per_example_grads`) or
    `per_example_vmap` (`jax.vmap(jax.grad)` of one example's loss): a unit is `steps`
    calls of one compiled function returning all B per-example gradients (the pytree of
    `(B, *leaf)` arrays, B × params numbers) at fixed params. Its `grads` is their mean,
    the batch gradient, compared with autodiff's."""
    from fnn.per_example import per_example_grads, per_example_grads_autodiff

    fn = per_example_grads if name == "per_example" else per_example_grads_autodiff
    net, loss = problem.net, problem.loss
    args = (problem.params, problem.x, problem.y)
    compiled, compile_s = timed_compile(lambda p, x, y: fn(net, loss, p, x, y), *args)

    def grads():
        return jax.tree.map(lambda g: jnp.mean(g, axis=0), compiled(*args))

    reference = "per_example_vmap" if name == "per_example" else "autodiff's batch step"
    return Impl(
        name,
        repeat_calls(compiled, args, problem.workload.steps),
        None,
        grads=grads,
        compiled=compiled,
        compile_s=compile_s,
        kind="dispatched",
        note=f"per-example gradients only (no update); ratio vs {reference}",
    )

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

from fnn.bench.measure import count_kept, count_residuals, repeat_calls
from fnn.bench.problems import Problem, bridge_objective, gradients
from fnn.core import Layer, SettingError, forward
from fnn.errors import FnnError
from fnn.train import TrainState, make_train_step

JAX_IMPLS = ("manual", "autodiff", "manual_scan", "autodiff_scan", "custom_vjp")
PEER_MODULES = {
    "equinox": "equinox",
    "flax_nnx": "flax",
    "torch": "torch",
    "torch_compile": "torch",
}
PEER_IMPLS = tuple(PEER_MODULES)
PER_EXAMPLE_IMPLS = ("per_example", "per_example_vmap")
IMPLS = (*JAX_IMPLS, "numpy", *PEER_IMPLS, *PER_EXAMPLE_IMPLS)
REFERENCE = {  # the impl each one's ratio is taken against; autodiff where not listed
    "manual_scan": "autodiff_scan",
    "autodiff_scan": "autodiff_scan",
    "per_example": "per_example_vmap",
}
# the references other than autodiff, in words (the record's field list, the report)
REFERENCE_NOTE = ", ".join(f"{ref} for {name}" for name, ref in REFERENCE.items() if name != ref)


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


class Skip(FnnError):
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
    """What the backward keeps from the forward, arguments excluded: the hand-written
    residuals of the network and the loss, or what `jax.grad` of the plain forward
    saves (JAX's saved-residuals analysis)."""
    net, loss = problem.net, problem.loss

    def residuals(p, x, y):
        pred, kept = forward(net, p, x)
        return kept, loss.forward(pred, y)[1]

    def objective(p, x, y):
        return loss.forward(forward(net, p, x)[0], y)[0]

    count = count_kept if manual else count_residuals
    return count(residuals if manual else objective, problem.params, problem.x, problem.y)


def build_jax_impl(name: str, problem: Problem) -> Impl:
    """One of `manual`, `autodiff`, `manual_scan`, `autodiff_scan`, `custom_vjp`."""
    steps = problem.steps
    batch = (problem.x, problem.y)
    train_state = TrainState.create(problem.net, problem.params, problem.optimizer)
    manual = name != "autodiff" and name != "autodiff_scan"
    step: Callable[..., Any]  # a train step, jitted or to be scanned
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


def build_custom_impl(name: str, builder: Callable[[Problem], Any], problem: Problem) -> Impl:
    """A user's implementation, from `builder(problem)`, which returns either

    - an fnn `Layer` taking the problem's params (a variant of its network, e.g. a layer
      whose backward keeps other residuals): trained like `manual`, with that layer's
      hand-written backward; or
    - a gradient function `grad_fn(params, x, y) -> (loss, grads)`, `grads` shaped like
      the params (a hand-written JAX gradient of your own): jitted and trained with the
      problem's optimizer, like fnn's steps.

    Raises:
      SettingError: `builder` returned something else, or a function or layer whose
        gradients or params do not have the problem's structure.
    """
    made = builder(problem)
    if isinstance(made, Layer):
        variant = dataclasses.replace(problem, net=made, grads={})
        try:
            jax.eval_shape(lambda p, x: forward(made, p, x)[0], problem.params, problem.x)
        except (TypeError, ValueError) as error:
            raise SettingError(
                f"impl {name!r}: the layer {made.name} does not take the problem's params "
                f"and x: {error}",
                settings=("impls",),
            ) from error
        impl = build_jax_impl("manual", variant)
        return dataclasses.replace(impl, name=name, note=f"{made.name}, hand-written backward")
    if not callable(made):
        raise SettingError(
            f"impl {name!r}: its builder must return an fnn Layer or a function "
            f"grad_fn(params, x, y) -> (loss, grads); got {type(made).__name__}",
            settings=("impls",),
        )
    args = (problem.params, problem.x, problem.y)
    try:
        _, shapes = jax.eval_shape(made, *args)
        # jaxlib has no stubs: mypy cannot compare PyTreeDefs
        same = jax.tree.structure(shapes) == jax.tree.structure(problem.params) and all(  # type: ignore[operator]
            a.shape == b.shape
            for a, b in zip(jax.tree.leaves(shapes), jax.tree.leaves(problem.params), strict=True)
        )
    except (TypeError, ValueError) as error:
        raise SettingError(
            f"impl {name!r}: grad_fn(params, x, y) failed: {error}", settings=("impls",)
        ) from error
    if not same:
        raise SettingError(
            f"impl {name!r}: grad_fn(params, x, y) must return (loss, grads) with grads "
            "shaped like the params",
            settings=("impls",),
        )
    optimizer = problem.optimizer

    def step(train_state, batch):
        params, opt_state, state = train_state
        value, grads = made(params, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return TrainState(optax.apply_updates(params, updates), opt_state, state), {"loss": value}

    train_state = TrainState.create(problem.net, problem.params, optimizer)
    batch = (problem.x, problem.y)
    compiled, compile_s = timed_compile(step, train_state, batch)
    grad_fn = jax.jit(made)
    return Impl(
        name,
        dispatch_unit(compiled, batch, problem.steps),
        train_state,
        grads=lambda: grad_fn(*args)[1],
        compiled=compiled,
        compile_s=compile_s,
        kind="dispatched",
        note="a user's gradient function",
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
        repeat_calls(compiled, args, problem.steps),
        None,
        grads=grads,
        compiled=compiled,
        compile_s=compile_s,
        kind="dispatched",
        note=f"per-example gradients only (no update); ratio vs {reference}",
    )

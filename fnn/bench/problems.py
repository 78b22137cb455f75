"""A workload made concrete in one dtype: its fnn network, loss, fixed batch, initial
parameters and optimiser (`Problem`, `make_problem`), and the gradient at those parameters
by each of fnn's modes (`gradients`, computed once per problem)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn import initializers
from fnn.bench.workloads import Workload
from fnn.core import Layer, Loss, SettingError, Shape, as_array, forward
from fnn.grad import as_custom_vjp, loss_as_custom_vjp, value_and_grad
from fnn.layers import cnn, mlp, transformer
from fnn.lm import gpt
from fnn.lm.head import lm_cross_entropy
from fnn.losses import sigmoid_binary_cross_entropy, softmax_cross_entropy


@dataclasses.dataclass
class Problem:
    """What one case of the harness trains: a network, a loss, one fixed batch, initial
    parameters and an optimiser, in one dtype; a built-in workload or a user's own.

    Attributes:
      name: the case's name in records (the workload's, or the user's).
      description: one line for reports.
      dtype: the parameters' and the inputs' dtype (`jnp.dtype`).
      net, loss: the fnn network and loss.
      params: the initial parameters, `net.init`'s pytree.
      x: the fixed batch, `(batch, ...)`; y: its targets.
      optimizer: the optax optimiser every implementation applies.
      steps: steps per timed unit (the scan length of the fused implementations).
      flops_per_step: the FLOPs of one training step, or None when they are not known.
      flops_source: how `flops_per_step` was counted ("6·B·P": dense and conv arithmetic;
        "XLA cost analysis": of the compiled autodiff gradient), or why it is None.
      gemm: `(m, k, n)` of the largest GEMM of a step's forward, for the matmul peak
        probe, or None.
      workload: the built-in workload it makes concrete (numpy and the peers rebuild the
        MLP from it), or None for a user's network.
      grads: the gradients `gradients` computed, by mode.
    """

    name: str
    description: str
    dtype: Any
    net: Layer
    loss: Loss
    params: Any
    x: jax.Array
    y: jax.Array
    optimizer: optax.GradientTransformation
    steps: int
    flops_per_step: float | None = None
    flops_source: str = ""
    gemm: tuple[int, int, int] | None = None
    workload: Workload | None = None
    grads: dict[str, Any] = dataclasses.field(default_factory=dict)  # by mode, memoised

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_params(self) -> int:
        return int(sum(np.size(leaf) for leaf in jax.tree.leaves(self.params)))


def make_problem(workload: Workload, dtype: str, seed: int = 0) -> Problem:
    """Builds the network, a fixed batch and initial parameters for `workload`."""
    dt = jnp.dtype(dtype)
    rng = np.random.default_rng(seed)
    in_shape: Shape
    if workload.sequence is not None:
        T, D, heads, F = workload.sequence
        V = workload.features[-1]
        net, in_shape, loss = transformer(V, D, heads, F), (T,), softmax_cross_entropy()
        if workload.blocks:
            net = gpt(V, T, D, heads, workload.blocks, mlp_ratio=F // D, head="fused")
            loss = lm_cross_entropy()
        x = jnp.asarray(rng.integers(0, V, (workload.batch, T)), jnp.int32)
        y = jnp.asarray(rng.integers(0, V, (workload.batch, T)), jnp.int32)
    else:
        w_init = initializers.uniform(0.01) if workload.w_init == "uniform" else workload.w_init
        net = mlp(workload.features, workload.activation, w_init=w_init)
        in_shape = (workload.in_features,)
        if workload.image is not None:
            channels, strides = zip(*workload.conv, strict=True)
            net = cnn(
                workload.features[-1],
                channels=channels,
                strides=strides,
                hidden=workload.features[:-1],
                activation=workload.activation,
            )
            in_shape = workload.image
        shape = (workload.batch, *in_shape)
        if workload.loss == "sigmoid_bce":
            loss = sigmoid_binary_cross_entropy()
            x = jnp.asarray(rng.random(shape), dt)  # the tutorial's np.random.rand
            y = jnp.asarray(rng.random((workload.batch, workload.features[-1])), dt)
        elif workload.loss == "softmax_ce":
            loss = softmax_cross_entropy()
            x = jnp.asarray(rng.standard_normal(shape), dt)
            y = jnp.asarray(rng.integers(0, workload.features[-1], workload.batch), jnp.int32)
        else:
            raise SettingError(f"unknown workload loss {workload.loss!r}", settings=("workload",))
    params = jax.jit(lambda key: net.init(key, in_shape, dt)[1])(jax.random.PRNGKey(seed))
    return Problem(
        name=workload.name,
        description=workload.description,
        dtype=dt,
        net=net,
        loss=loss,
        params=params,
        x=x,
        y=y,
        optimizer=optax.sgd(workload.learning_rate),
        steps=workload.steps,
        flops_per_step=workload.flops_per_step,
        flops_source="6·B·P",
        gemm=workload.largest_gemm,
        workload=workload,
    )


def user_problem(
    net: Layer,
    loss: Loss,
    x: Any,
    y: Any,
    *,
    optimizer: optax.GradientTransformation | None = None,
    steps: int | None = None,
    dtype: Any = None,
    name: str | None = None,
    params: Any = None,
    key: int = 0,
) -> Problem:
    """A user's network, loss and batch as a `Problem` (see `fnn.bench.compare`).

    `dtype` (default: x's floating dtype, float32 for integer inputs) is the params' and
    floating inputs' and targets' dtype. `params` default to `net.init(PRNGKey(key))`.
    FLOPs come from XLA's cost analysis of the compiled autodiff gradient.

    Raises:
      SettingError: a network that does not take `x`'s shape, or a loss that does not take
        the network's output and `y`, naming both shapes.
    """
    x, y = as_array(x), as_array(y)
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0]:
        raise SettingError(
            f"x and y must be batches of the same length, got shapes {x.shape} and {y.shape}",
            settings=("x", "y"),
        )
    float_x = jnp.issubdtype(x.dtype, jnp.floating)
    dt = jnp.dtype(dtype or (x.dtype if float_x else jnp.float32))
    x = x.astype(dt) if float_x else x
    y = y.astype(dt) if jnp.issubdtype(y.dtype, jnp.floating) else y
    in_shape = tuple(x.shape[1:])
    try:
        if params is None:
            params = jax.jit(lambda k: net.init(k, in_shape, dt)[1])(jax.random.PRNGKey(key))
        out = jax.eval_shape(lambda p, x: forward(net, p, x)[0], params, x)
        jax.eval_shape(lambda p, x, y: loss.forward(forward(net, p, x)[0], y)[0], params, x, y)
    except (TypeError, ValueError) as error:
        notes = "; ".join(n for n in getattr(error, "__notes__", ()) if n.startswith("in layer"))
        raise SettingError(
            f"{net.name} with {loss.name} does not fit x {x.shape} and y {y.shape}: {error}"
            + (f" ({notes})" if notes else ""),
            settings=("net", "loss"),
        ) from error
    flops, source = _cost_analysis_flops(net, loss, params, x, y)
    weights = [leaf.shape for leaf in jax.tree.leaves(params) if np.ndim(leaf) == 2]
    gemm = None
    if weights:
        k, n = max(weights, key=lambda s: s[0] * s[1])
        gemm = (int(x.shape[0]), int(k), int(n))
    return Problem(
        name=name or net.name,
        description=f"{net.name} on x {tuple(x.shape)} → {tuple(out.shape)}, {loss.name} "
        f"against y {tuple(y.shape)}",
        dtype=dt,
        net=net,
        loss=loss,
        params=params,
        x=x,
        y=y,
        optimizer=optimizer or optax.sgd(0.01),
        steps=steps or 10,
        flops_per_step=flops,
        flops_source=source,
        gemm=gemm,
    )


def _cost_analysis_flops(net, loss, params, x, y) -> tuple[float | None, str]:
    """XLA's FLOP count of the compiled autodiff gradient, or (None, why)."""
    grad_fn = value_and_grad(net, loss, "autodiff")
    try:
        compiled = jax.jit(grad_fn).lower(params, x, y).compile()
        analysis = compiled.cost_analysis()
        if isinstance(analysis, list | tuple):  # older JAX: one dict per computation
            analysis = analysis[0] if analysis else None
        flops = float(analysis["flops"]) if analysis and analysis.get("flops") else None
    except Exception as error:  # a backend without cost analysis
        return None, f"FLOPs unknown: {type(error).__name__}"
    if not flops:
        return None, "FLOPs unknown: XLA's cost analysis gave none"
    return flops, "XLA cost analysis"


def bridge_objective(problem: Problem) -> Callable:
    """`objective(params, x, y) -> loss`: the network and loss through the custom_vjp
    bridge (`fnn.as_custom_vjp`, `fnn.loss_as_custom_vjp`), so that `jax.grad` of it runs
    the hand-written backward."""
    net_fn = as_custom_vjp(problem.net)
    loss_fn = loss_as_custom_vjp(problem.loss)

    def objective(params, x, y):
        return loss_fn(net_fn(params, x), y)

    return objective


def gradients(problem: Problem, mode: str) -> Any:
    """The gradient at the initial params (a pytree shaped like `problem.params`) by
    "manual", "autodiff" or "custom_vjp" (`jax.grad` through the bridge), computed once
    per problem."""
    if mode not in problem.grads:
        if mode == "custom_vjp":
            fn = jax.grad(bridge_objective(problem))
        else:
            vg = value_and_grad(problem.net, problem.loss, mode)
            fn = lambda p, x, y: vg(p, x, y)[1]  # noqa: E731
        problem.grads[mode] = jax.jit(fn)(problem.params, problem.x, problem.y)
    return problem.grads[mode]

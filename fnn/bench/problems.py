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
from fnn.core import Layer, Loss
from fnn.grad import as_custom_vjp, loss_as_custom_vjp, value_and_grad
from fnn.layers import cnn, mlp, transformer
from fnn.losses import sigmoid_binary_cross_entropy, softmax_cross_entropy


@dataclasses.dataclass
class Problem:
    """A workload made concrete in one dtype: network, loss, data, params, optimiser.

    Attributes:
      workload: the workload it makes concrete.
      dtype: the parameters' and the inputs' dtype (`jnp.dtype`).
      net, loss: the fnn network and loss (both take and give logits).
      params: the initial parameters, `net.init`'s pytree.
      x: the fixed batch, `(batch, in_features)`, `(batch, h, w, c)` for an image
        workload, or `(batch, T)` int32 token ids for a sequence one.
      y: `(batch, features[-1])` soft targets for "sigmoid_bce", `(batch,)` int32 labels for
        "softmax_ce", `(batch, T)` int32 next tokens for a sequence workload.
      optimizer: `optax.sgd(workload.learning_rate)`.
      grads: the gradients `gradients` computed, by mode.
    """

    workload: Workload
    dtype: Any
    net: Layer
    loss: Loss
    params: Any
    x: jax.Array
    y: jax.Array
    optimizer: optax.GradientTransformation
    grads: dict[str, Any] = dataclasses.field(default_factory=dict)  # by mode, memoised


def make_problem(workload: Workload, dtype: str, seed: int = 0) -> Problem:
    """Builds the network, a fixed batch and initial parameters for `workload`."""
    dt = jnp.dtype(dtype)
    if workload.sequence is not None:
        T, D, heads, F = workload.sequence
        V = workload.features[-1]
        net = transformer(V, D, heads, F)
        params = jax.jit(lambda key: net.init(key, (T,), dt)[1])(jax.random.PRNGKey(seed))
        rng = np.random.default_rng(seed)
        x = jnp.asarray(rng.integers(0, V, (workload.batch, T)), jnp.int32)
        y = jnp.asarray(rng.integers(0, V, (workload.batch, T)), jnp.int32)
        loss = softmax_cross_entropy()
        return Problem(workload, dt, net, loss, params, x, y, optax.sgd(workload.learning_rate))
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
    init = jax.jit(lambda key: net.init(key, in_shape, dt)[1])  # one compile
    params = init(jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
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
        raise ValueError(f"unknown workload loss {workload.loss!r}")
    return Problem(workload, dt, net, loss, params, x, y, optax.sgd(workload.learning_rate))


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

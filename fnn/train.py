"""Training: compiled steps over any optax optimiser."""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax

from fnn.core import Layer, Loss
from fnn.grad import value_and_grad

Batch = tuple[jax.Array, jax.Array]  # (x: (batch, ...features), y: targets)


def make_train_step(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    mode: str = "manual",
    *,
    jit: bool = True,
) -> Callable:
    """Returns `step(params, opt_state, batch) -> (params, opt_state, metrics)`.

    One step computes the loss and gradients with `value_and_grad(net, loss, mode)`,
    then applies `optimizer` (any optax GradientTransformation; the tutorial's plain
    gradient descent is `optax.sgd(lr)`). `metrics` is `{"loss": value}` (the loss before
    the update). The step is jitted unless `jit=False`; either way it can be called inside
    `lax.scan`.
    """
    grad_fn = value_and_grad(net, loss, mode)

    def step(params, opt_state, batch):
        x, y = batch
        value, grads = grad_fn(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)  # θ ← θ − lr·∇θ for optax.sgd
        return params, opt_state, {"loss": value}

    return jax.jit(step) if jit else step

"""Gradients of a network and a loss, by hand or by JAX, and the custom_vjp bridge."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fnn.core import Array, Layer, Loss, Params, choose

GRAD_MODES = ("manual", "autodiff")


def value_and_grad(
    net: Layer, loss: Loss, mode: str = "manual"
) -> Callable[[Params, Array, Array], tuple[Array, Params]]:
    """Returns `f(params, x, y) -> (loss_value, grads)` for `loss(net(params, x), y)`.

    Arguments:
      net: the network (any Layer, e.g. from `serial` or `mlp`).
      loss: the loss applied to the network's output.
      mode: "manual" runs the hand-written backward passes; "autodiff" runs `jax.grad`
        of the forward. Both return the same pytree (shaped like params), both jittable,
        so a training step or a benchmark swaps the mode and nothing else.
    """
    choose("grad mode", mode, dict.fromkeys(GRAD_MODES))

    if mode == "manual":

        def manual(params, x, y):
            pred, residuals = net.forward(params, x)
            value, loss_residuals = loss.forward(pred, y)
            dpred = loss.backward(loss_residuals, jnp.ones_like(value))  # dL/dpred
            grads, _ = net.backward(params, residuals, dpred)  # dx is unused: XLA drops it
            return value, grads

        return manual

    def objective(params, x, y):
        return loss.forward(net.forward(params, x)[0], y)[0]

    return jax.value_and_grad(objective)


def as_custom_vjp(layer: Layer) -> Callable[[Params, Array], Array]:
    """Turns `layer` into `f(params, x) -> y` whose reverse-mode derivative is the
    hand-written backward, through `jax.custom_vjp`.

    `jax.grad`, `jax.vjp`, `jit`, `vmap` and sharding all run through `layer.backward`.
    Second-order reverse mode works too (`jax.grad` of `jax.grad`): JAX differentiates the
    hand-written backward itself. Forward mode (`jax.jvp`, `jax.jacfwd`, `jax.hessian`)
    is refused by JAX for any custom_vjp function: use `fnn.apply(layer, params, x)`,
    the plain forward, for those; it is ordinary JAX code.
    """

    @jax.custom_vjp
    def f(params, x):
        return layer.forward(params, x)[0]

    def f_fwd(params, x):
        y, residuals = layer.forward(params, x)
        return y, (params, residuals)

    def f_bwd(saved, dy):
        params, residuals = saved
        return layer.backward(params, residuals, dy)

    f.defvjp(f_fwd, f_bwd)
    return f


def loss_as_custom_vjp(loss: Loss) -> Callable[[Array, Array], Array]:
    """Turns `loss` into `f(pred, target) -> value` whose gradient in `pred` is the
    hand-written `loss.backward`. The target gets a zero cotangent (targets are data)."""

    @jax.custom_vjp
    def f(pred, target):
        return loss.forward(pred, target)[0]

    def f_fwd(pred, target):
        value, residuals = loss.forward(pred, target)
        return value, (residuals, target)

    def f_bwd(saved, dvalue):
        residuals, target = saved
        return loss.backward(residuals, dvalue), _zero_cotangent(target)

    f.defvjp(f_fwd, f_bwd)
    return f


def _zero_cotangent(x):
    """A zero cotangent for `x`: float0 zeros for integer arrays, as JAX requires."""
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, dtype=jax.dtypes.float0)

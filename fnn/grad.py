"""Gradients of a network and a loss, by hand or by JAX, and the custom_vjp bridge."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fnn.core import Array, Ctx, Layer, Loss, Params, State, choose, forward, update_state

GRAD_MODES = ("manual", "autodiff")


def value_and_grad(
    net: Layer, loss: Loss, mode: str = "manual"
) -> Callable[..., tuple[Array, Params]]:
    """Returns `f(params, x, y, ctx=None) -> (loss_value, grads)` for
    `loss(net(params, x), y)`.

    Arguments:
      net: the network (any Layer, e.g. from `serial` or `mlp`).
      loss: the loss applied to the network's output.
      mode: "manual" runs the hand-written backward passes; "autodiff" runs `jax.grad`
        of the forward. Both return the same pytree (shaped like params), both jittable,
        so a training step or a benchmark swaps the mode and nothing else.

    `ctx` (a `fnn.Ctx`) is passed to random and stateful layers: training needs
    `Ctx(train=True, key=key, state=state)`; the default is evaluation. The new running
    statistics are dropped here: `value_grad_and_state` returns them.
    """
    f = value_grad_and_state(net, loss, mode)

    def value_and_grads(params, x, y, ctx=None):
        value, grads, _ = f(params, x, y, ctx)
        return value, grads

    return value_and_grads


def value_grad_and_state(
    net: Layer, loss: Loss, mode: str = "manual"
) -> Callable[..., tuple[Array, Params, State]]:
    """Returns `f(params, x, y, ctx=None) -> (loss_value, grads, state)`: `value_and_grad`
    plus the network's running statistics after this forward pass.

    `state` is `fnn.update_state(net, ctx.state, residuals)` in training mode
    (`ctx.train`) and `ctx.state` unchanged otherwise; `()` for a network without state.
    Both modes compute it from the same forward pass, so it is identical in both.
    """
    choose("grad mode", mode, dict.fromkeys(GRAD_MODES))

    def new_state(ctx, residuals):
        return update_state(net, ctx.state, residuals) if ctx.train else ctx.state

    if mode == "manual":

        def manual(params, x, y, ctx=None):
            ctx = Ctx() if ctx is None else ctx
            pred, residuals = forward(net, params, x, ctx)
            value, loss_residuals = loss.forward(pred, y)
            dpred = loss.backward(loss_residuals, jnp.ones_like(value))  # dL/dpred
            grads, _ = net.backward(params, residuals, dpred)  # dx is unused: XLA drops it
            return value, grads, new_state(ctx, residuals)

        return manual

    def autodiff(params, x, y, ctx=None):
        ctx = Ctx() if ctx is None else ctx

        def objective(params):
            pred, residuals = forward(net, params, x, ctx)
            return loss.forward(pred, y)[0], new_state(ctx, residuals)

        (value, state), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return value, grads, state

    return autodiff


def as_custom_vjp(layer: Layer, ctx: Ctx | None = None) -> Callable[[Params, Array], Array]:
    """Turns `layer` into `f(params, x) -> y` whose reverse-mode derivative is the
    hand-written backward, through `jax.custom_vjp`.

    `ctx` (fixed, e.g. a training-mode `Ctx` with a key) is passed to a random or
    stateful layer's forward; it is not differentiated.

    `jax.grad`, `jax.vjp`, `jit`, `vmap` and sharding all run through `layer.backward`.
    Second-order reverse mode works too (`jax.grad` of `jax.grad`): JAX differentiates the
    hand-written backward itself. Forward mode (`jax.jvp`, `jax.jacfwd`, `jax.hessian`)
    is refused by JAX for any custom_vjp function: use `fnn.apply(layer, params, x)`,
    the plain forward, for those; it is ordinary JAX code.
    """

    @jax.custom_vjp
    def f(params, x):
        return forward(layer, params, x, ctx)[0]

    def f_fwd(params, x):
        y, residuals = forward(layer, params, x, ctx)
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

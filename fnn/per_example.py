"""Per-example gradients by hand: one gradient per example, in one backward pass.

A dense layer's weight gradient over a batch is a sum of outer products, one per example::

    dW = Aᵀ·δ = Σ_i a_i ⊗ δ_i        a_i: the layer's input for example i   (in,)
                                     δ_i: the cotangent of its output z_i   (out,)

so the gradient of example i alone is the outer product `a_i ⊗ δ_i` (and `db_i = δ_i`).
The backward pass already computes every `a_i` and `δ_i`; keeping them apart instead of
summing (`einsum("bi,bo->bio")` instead of `aᵀ @ δ`) gives all B per-example gradients
for about the cost of one batch gradient, plus writing B copies of the parameters.

What "per-example gradient" means here: the gradient of example i's own loss,
`∇θ ℓ(net(θ, x_i), y_i)`, the loss of a batch of one, which is what
`jax.vmap(jax.grad(loss_of_one))` returns. fnn's losses average over the batch,
`L = (1/B) Σ_i ℓ_i`, so the batch loss's cotangent for example i is `δ_i / B`: the
per-example gradients are `B ×` those terms, and their mean is the batch gradient.

Supported networks: every layer with a `per_example_backward` (dense, the activations,
layer_norm, flatten, the pooling layers, dropout, and `serial`/`residual` of those; a
user's layer too, when it provides one). Any other layer raises a ValueError naming it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnn.core import Array, Layer, Loss, Params, forward
from fnn.errors import SettingError
from fnn.walk import layer_path


def _unsupported(net: Layer, path: tuple[int, ...] = ()) -> str:
    """The path and name of the first layer in `net` without a per-example backward."""
    for i, layer in enumerate(net.sublayers):
        if layer.per_example_backward is None:
            return _unsupported(layer, (*path, i))
    return f"{layer_path(path)} ({net.name})"


def per_example_value_and_grads(
    net: Layer, loss: Loss, params: Params, x: Array, y: Array
) -> tuple[Array, Params]:
    """Each example's own loss and gradient, hand-written, in one backward pass.

    Arguments:
      net: a network whose layers all have a per-example backward (see above).
      loss: any fnn loss that averages over the batch (all the built-in ones).
      params: the network's params.
      x: inputs `(B, ..., in)`; y: targets `(B, ...)`.

    Returns:
      `(losses, grads)`: `losses: (B,)`, `losses[i] = loss(net(params, x[i:i+1]),
      y[i:i+1])`; `grads` shaped like params with a leading `B` axis, `grads[...][i]` the
      gradient of `losses[i]` (what `jax.vmap(jax.grad(...))` of one example gives).

    Raises:
      SettingError (a ValueError): a layer without a per-example backward (naming it).
    """
    if net.per_example_backward is None:
        raise SettingError(
            f"per_example_grads: layer {_unsupported(net)} has no per-example backward; "
            "supported: dense, the activations, layer_norm, flatten, pooling, dropout and "
            "serial/residual of those. For other layers use per_example_grads_autodiff "
            "(jax.vmap of jax.grad)"
        )
    pred, residuals = forward(net, params, x)
    value, loss_res = loss.forward(pred, y)
    scale = jnp.asarray(x.shape[0], pred.dtype)
    dpred = loss.backward(loss_res, jnp.ones_like(value))  # ∂L/∂pred_i = (1/B)·∂ℓ_i/∂pred_i
    delta = dpred * scale  # δ_i = B·∂L/∂pred_i = ∂ℓ_i/∂pred_i, each example's own loss
    grads, _ = net.per_example_backward(params, residuals, delta)  # examples kept apart
    return _per_example_losses(loss, pred, y), grads


def per_example_grads(net: Layer, loss: Loss, params: Params, x: Array, y: Array) -> Params:
    """The per-example gradients of `per_example_value_and_grads`, without the losses:
    params' structure, each leaf with a leading batch axis `(B, *leaf.shape)`."""
    return per_example_value_and_grads(net, loss, params, x, y)[1]


def _per_example_losses(loss: Loss, pred: Array, y: Array) -> Array:
    """`(B,)`: each example's loss as a batch of one (the forward only, vmapped)."""

    def one(p, t):
        return loss.forward(p[None], t[None])[0]

    return jax.vmap(one)(pred, y)


def per_example_grads_autodiff(
    net: Layer, loss: Loss, params: Params, x: Array, y: Array
) -> Params:
    """The reference: `jax.vmap(jax.grad(loss of one example))` over the batch, through
    the plain forward (any network). Same output as `per_example_grads`."""

    def loss_of_one(p, xi, yi):
        return loss.forward(forward(net, p, xi[None])[0], yi[None])[0]

    return jax.vmap(jax.grad(loss_of_one), in_axes=(None, 0, 0))(params, x, y)


def clip_and_noise(
    grads: Params, clip_norm: float, noise_multiplier: float, *, key: jax.Array
) -> Params:
    """DP-SGD's private mean gradient from per-example gradients (leading axis B).

    Each example's gradient is scaled to global norm at most C = `clip_norm`
    (`g_i ← g_i · min(1, C/‖g_i‖)`), the B clipped gradients are summed, Gaussian noise
    `N(0, σ²C²)` with σ = `noise_multiplier` is added to every coordinate (drawn from
    `key`), and the sum is divided by B.
    """
    leaves, treedef = jax.tree.flatten(grads)
    batch = leaves[0].shape[0]
    squares = [jnp.sum(g.reshape(batch, -1) ** 2, axis=1) for g in leaves]
    norms = jnp.sqrt(sum(squares))  # ‖g_i‖ over all parameters, (B,)
    factor = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-12)).astype(leaves[0].dtype)
    keys = jax.random.split(key, len(leaves))
    out = []
    for g, k in zip(leaves, keys, strict=True):
        f = factor.reshape((batch,) + (1,) * (g.ndim - 1))  # explicit broadcast over the leaf
        total = jnp.sum(g * f, axis=0)  # Σ_i clip(g_i)
        noise = noise_multiplier * clip_norm * jax.random.normal(k, total.shape, total.dtype)
        out.append((total + noise) / batch)  # (Σ clip(g_i) + N(0, σ²C²)) / B
    return jax.tree.unflatten(treedef, out)


__all__: list[str] = [
    "clip_and_noise",
    "per_example_grads",
    "per_example_grads_autodiff",
    "per_example_value_and_grads",
]

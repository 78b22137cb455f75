"""Per-example gradients of dense networks, by hand: one gradient per example, in one pass.

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

Supported networks: `serial`/`mlp` chains (nested too) of `dense` layers and fnn's
activations (elementwise, or row-wise such as softmax: each treats examples apart).
Anything else raises a ValueError naming the layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnn import activations as _activations
from fnn.core import Array, Layer, Loss, Params
from fnn.network import chain_of

# Parameter-free layers whose backward treats every example on its own (row-wise).
PER_EXAMPLE_ACTIVATIONS = frozenset(_activations.ACTIVATIONS) | {"leaky_relu", "elu", "gelu"}


def _flatten(net: Layer, params: Params, where: str) -> list[tuple[str, Layer, Params]]:
    """`[(path, layer, params)]` of the dense layers and activations in `net`, in order;
    a ValueError naming the first layer that is neither."""
    chain = chain_of(net)
    if chain is not None:
        out = []
        for i, (layer, layer_params) in enumerate(zip(chain, params, strict=True)):
            out += _flatten(layer, layer_params, f"{where}[{i}]")
        return out
    kind = net.name.split("(")[0]
    if kind == "dense" and isinstance(params, dict) and "W" in params:
        return [(where, net, params)]
    if kind in PER_EXAMPLE_ACTIVATIONS and params == ():
        return [(where, net, params)]
    raise ValueError(
        f"per_example_grads: layer {where} ({net.name}) is not supported; supported: "
        "dense layers and fnn activations chained by serial or mlp. For other layers use "
        "per_example_grads_autodiff (jax.vmap of jax.grad)"
    )


def _dense_per_example(params: Params, a: Array, delta: Array) -> tuple[Params, Array]:
    """Per-example gradients of one dense layer and the cotangent of its input.

    Shapes: `a: (B, ..., in)` the layer's input, `delta: (B, ..., out)` the cotangent of
    its output (already multiplied by B: each example's own loss). Returns
    `({"W": (B, in, out), "b": (B, out)}, da: (B, ..., in))`.
    """
    batch = a.shape[0]
    a3 = a.reshape(batch, -1, a.shape[-1])  # (B, positions, in)
    d3 = delta.reshape(batch, -1, delta.shape[-1])  # (B, positions, out)
    grads = {"W": jnp.einsum("bpi,bpo->bio", a3, d3)}  # dW_i = a_iᵀ·δ_i (outer product)
    if "b" in params:
        grads["b"] = jnp.sum(d3, axis=1)  # db_i = δ_i (summed over positions)
    da = delta @ params["W"].T  # da_i = δ_i·Wᵀ, the next layer down's cotangent
    return grads, da


def per_example_value_and_grads(
    net: Layer, loss: Loss, params: Params, x: Array, y: Array
) -> tuple[Array, Params]:
    """Each example's own loss and gradient, hand-written, for a dense network.

    Arguments:
      net: a `serial`/`mlp` chain of `dense` layers and fnn activations.
      loss: any fnn loss that averages over the batch (all the built-in ones).
      params: the network's params.
      x: inputs `(B, ..., in)`; y: targets `(B, ...)`.

    Returns:
      `(losses, grads)`: `losses: (B,)`, `losses[i] = loss(net(params, x[i:i+1]),
      y[i:i+1])`; `grads` shaped like params with a leading `B` axis, `grads[...][i]` the
      gradient of `losses[i]` (what `jax.vmap(jax.grad(...))` of one example gives).

    Raises:
      ValueError: a layer other than dense and activations (naming it).
    """
    layers = _flatten(net, params, "net")
    batch = x.shape[0]
    residuals = []
    h = x
    for _, layer, layer_params in layers:  # forward, keeping each layer's residuals
        h, res = layer.forward(layer_params, h)
        residuals.append(res)
    value, loss_res = loss.forward(h, y)
    scale = jnp.asarray(batch, h.dtype)
    dpred = loss.backward(loss_res, jnp.ones_like(value))  # ∂L/∂pred_i = (1/B)·∂ℓ_i/∂pred_i
    delta = dpred * scale  # δ_i = B·∂L/∂pred_i = ∂ℓ_i/∂pred_i, each example's own loss
    losses = _per_example_losses(loss, h, y)
    grads: list[Params] = [None] * len(layers)
    for k in reversed(range(len(layers))):  # backward, keeping examples apart
        _, layer, layer_params = layers[k]
        if layer_params == ():
            _, delta = layer.backward((), residuals[k], delta)  # dA = activation's VJP, per row
        else:
            grads[k], delta = _dense_per_example(layer_params, residuals[k], delta)
    return losses, _unflatten(net, params, iter(grads))


def per_example_grads(net: Layer, loss: Loss, params: Params, x: Array, y: Array) -> Params:
    """The per-example gradients of `per_example_value_and_grads`, without the losses:
    params' structure, each leaf with a leading batch axis `(B, *leaf.shape)`."""
    return per_example_value_and_grads(net, loss, params, x, y)[1]


def _per_example_losses(loss: Loss, pred: Array, y: Array) -> Array:
    """`(B,)`: each example's loss as a batch of one (the forward only, vmapped)."""

    def one(p, t):
        return loss.forward(p[None], t[None])[0]

    return jax.vmap(one)(pred, y)


def _unflatten(net: Layer, params: Params, grads) -> Params:
    """Puts the flat list of per-layer grads back into params' nesting (serial tuples)."""
    chain = chain_of(net)
    if chain is None:
        grad = next(grads)  # one entry per flattened layer, None for activations
        return () if params == () else grad
    return tuple(_unflatten(layer, p, grads) for layer, p in zip(chain, params, strict=True))


def per_example_grads_autodiff(
    net: Layer, loss: Loss, params: Params, x: Array, y: Array
) -> Params:
    """The reference: `jax.vmap(jax.grad(loss of one example))` over the batch, through
    the plain forward (any network). Same output as `per_example_grads`."""

    def loss_of_one(p, xi, yi):
        return loss.forward(net.forward(p, xi[None])[0], yi[None])[0]

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

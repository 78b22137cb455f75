"""Gradient flow during training: after each epoch, one hand-written forward and backward
pass on a fixed batch (`fnn.trace`), reduced per layer to the RMS of the cotangent that
reaches it, the RMS of its parameter gradients, and the update-to-weight ratio
‖update‖/‖W‖ of the step the optimiser would take from there.

History keys (one value per epoch): `delta_rms/PATH NAME` for every leaf layer,
`grad_rms/PATH NAME` and `update_ratio/PATH NAME` for every leaf layer with params, e.g.
`grad_rms/net[0] dense(256)`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from fnn.core import Ctx, Layer, Loss
from fnn.trace import traced_function
from fnn.train.step import PROBE_SALT, epoch_key
from fnn.walk import layer_path

KINDS = ("delta_rms", "grad_rms", "update_ratio")


def _norm(tree) -> jax.Array:
    leaves = [leaf for leaf in jax.tree.leaves(tree) if leaf.dtype != jax.dtypes.float0]
    wide = [leaf.astype(jnp.promote_types(leaf.dtype, jnp.float32)) for leaf in leaves]
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in wide))  # float32 or wider


def _size(tree) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


def make_gradient_probe(
    net: Layer, loss: Loss, optimizer: optax.GradientTransformation
) -> Callable[..., dict[str, float]]:
    """Returns `probe(params, opt_state, state, key, epoch, x, y) -> {history key: value}`
    (see the module's docstring): one compiled call and one transfer to the host. The
    network runs in training mode with `state`, as a training step does, and the key
    `fold_in(fold_in(key, epoch), PROBE_SALT)`. The gradients are the hand-written
    backward's, whatever the run's grad mode."""
    run, layout = traced_function(net, loss)  # `layout` fills when `values` is traced

    @jax.jit
    def values(params, opt_state, state, key, epoch, x, y):
        key = epoch_key(key, epoch, PROBE_SALT)
        _, _, records = run(params, x, y, Ctx(True, key, state))
        grads = records[-1][2]  # the last record is the network itself
        updates, _ = optimizer.update(grads, opt_state, params)
        out = []
        for (_, layer, select), (dy, _, layer_grads, layer_params) in zip(
            layout, records, strict=True
        ):
            if layer.walk is not None:
                continue
            out.append(_norm(dy) / jnp.sqrt(dy.size))
            if _size(layer_params):
                out.append(_norm(layer_grads) / jnp.sqrt(_size(layer_grads)))
                out.append(_norm(select(updates)) / _norm(layer_params))
        return jnp.stack(out)  # one array: one transfer

    def probe(params, opt_state, state, key, epoch, x, y) -> dict[str, float]:
        flat = iter(jax.device_get(values(params, opt_state, state, key, epoch, x, y)).tolist())
        named = {}
        for path, layer, select in layout:
            if layer.walk is not None:
                continue  # a combinator: its layers have their own rows
            label = f"{layer_path(path)} {layer.name}"
            for kind in KINDS if _size(select(params)) else KINDS[:1]:
                named[f"{kind}/{label}"] = next(flat)
        return named

    return probe

"""One training step, the same for every network, and a scan of steps.

A step carries a `TrainState` (params, optimiser state, running statistics) and returns
the next one:

    step(train_state, (x, y), key=None) -> (train_state, {"loss": value})

The network runs in training mode: dropout draws its mask from `key` (a network without
random layers needs none) and batch_norm uses batch statistics and updates its running
statistics (a network without state carries `()`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from fnn.core import Array, Ctx, Layer, Loss, Params, PRNGKey, State, init_state
from fnn.grad import value_grad_and_state

Batch = tuple[jax.Array, jax.Array]  # (x: (batch, ...features), y: targets)


class TrainState(NamedTuple):
    """What one training step hands the next.

    Attributes:
      params: the network's parameters.
      opt_state: the optimiser's state (`optimizer.init(params)`).
      state: the running statistics of stateful layers (`fnn.init_state(net, params)`;
        `()` for a network without any, e.g. one without batch_norm).
    """

    params: Params
    opt_state: Any
    state: State = ()

    @classmethod
    def create(
        cls, net: Layer, params: Params, optimizer: optax.GradientTransformation
    ) -> TrainState:
        """The state before the first step: `params`, `optimizer.init(params)` and the
        network's initial running statistics."""
        return cls(params, optimizer.init(params), init_state(net, params))


def make_train_step(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    mode: str = "manual",
    *,
    jit: bool = True,
) -> Callable[..., tuple[TrainState, dict[str, Array]]]:
    """Returns `step(train_state, batch, key=None) -> (train_state, metrics)`.

    One step computes the loss and gradients with `fnn.value_grad_and_state(net, loss,
    mode)` in training mode, then applies `optimizer` (any optax GradientTransformation;
    the tutorial's plain gradient descent is `optax.sgd(lr)`). `batch` is `(x, y)`;
    `key` is this step's PRNG key, needed by random layers (dropout) only. `metrics` is
    `{"loss": value}`, the loss before the update. The step is jitted unless
    `jit=False`; either way it can run inside `lax.scan`.

    Start from `TrainState.create(net, params, optimizer)`.
    """
    grad_fn = value_grad_and_state(net, loss, mode)

    def step(train_state: TrainState, batch: Batch, key: PRNGKey | None = None):
        params, opt_state, state = train_state
        x, y = batch
        value, grads, state = grad_fn(params, x, y, Ctx(True, key, state))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)  # θ ← θ − lr·∇θ for optax.sgd
        return TrainState(params, opt_state, state), {"loss": value}

    return jax.jit(step) if jit else step


def scan_steps(
    step: Callable, train_state: TrainState, batches: Batch, key: PRNGKey | None = None
) -> tuple[TrainState, Array]:
    """Runs `step` once per batch in one `lax.scan`.

    `batches` is `(xs, ys)` stacked along a leading steps axis: `xs: (steps, batch, ...)`;
    step i gets the key `fold_in(key, i)` (None without a key). Returns `(train_state,
    losses)` with `losses: (steps,)`, each the loss before its step. Call it inside `jit`:
    the whole loop is then one compiled call.
    """
    steps = jnp.arange(jax.tree.leaves(batches)[0].shape[0])

    def body(train_state, scanned):
        i, batch = scanned
        key_i = None if key is None else jax.random.fold_in(key, i)
        train_state, metrics = step(train_state, batch, key_i)
        return train_state, metrics["loss"]

    return lax.scan(body, train_state, (steps, batches))


# The keys of an epoch, all from the run's data-order key: `fold_in(key, epoch)` shuffles
# the data (`fnn.train.batching`); each other use folds its salt into that key. Changing a
# salt changes every result of a run with dropout: they are fixed.
STEP_SALT = 1  # the training steps' random layers (dropout): `step_key`
PROBE_SALT = 2  # the gradient-flow probe's forward (`fnn.train.gradient_flow`)


def epoch_key(key: PRNGKey, epoch: Array, salt: int) -> PRNGKey:
    """`fold_in(fold_in(key, epoch), salt)`: one use's key in an epoch, different from the
    data order's `fold_in(key, epoch)` and from the other uses' (`STEP_SALT`,
    `PROBE_SALT`)."""
    return jax.random.fold_in(jax.random.fold_in(key, epoch), salt)


def step_key(key: PRNGKey, epoch: Array) -> PRNGKey:
    """The key of an epoch's random layers (dropout): `epoch_key(key, epoch, STEP_SALT)`;
    step i then uses `fold_in(·, i)`."""
    return epoch_key(key, epoch, STEP_SALT)

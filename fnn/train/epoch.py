"""An epoch of training and an evaluation of a whole split, each ONE compiled call."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from fnn.core import Ctx, Layer, Loss, forward
from fnn.tasks import binary_threshold, metric_name
from fnn.train.batching import epoch_order
from fnn.train.step import TrainState, make_train_step, scan_steps, step_key


def make_epoch_fn(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    mode: str = "manual",
    *,
    batch_size: int,
) -> Callable:
    """Returns a jitted `epoch(train_state, key, epoch, x, y) -> (train_state, mean_loss)`:
    one epoch of minibatch training as ONE compiled call.

    The examples are shuffled and cut into `(n_batches, batch_size, ...)` batches by
    `fnn.train.batching.epoch_order` (the order depends only on `key` and the epoch
    number: a resumed run sees the same order; the `n % batch_size` examples left over sit
    out that epoch), and `lax.scan` runs `make_train_step(..., jit=False)` over them: no
    host round trip between steps. Random layers (dropout) get the key `fold_in(
    step_key(key, epoch), i)` at step i.

    Shapes: `x: (n, ...features)`, `y: (n, ...)`, `epoch`: an int32 scalar (pass an
    array, e.g. `jnp.int32(3)`, so that the function is compiled once); `mean_loss`: the
    mean over the epoch's steps of the loss before each update.
    """
    step = make_train_step(net, loss, optimizer, mode, jit=False)

    def run_epoch(train_state: TrainState, key, epoch, x, y):
        order = epoch_order(key, epoch, x.shape[0], batch_size)
        xs = jnp.take(x, order, axis=0)  # (n_batches, batch_size, ...features)
        ys = jnp.take(y, order, axis=0)
        train_state, losses = scan_steps(step, train_state, (xs, ys), step_key(key, epoch))
        return train_state, jnp.mean(losses)

    return jax.jit(run_epoch)


def make_eval_fn(net: Layer, loss: Loss, task: str) -> Callable:
    """Returns a jitted `evaluate(params, x, y, state=()) -> {"loss": ..., "accuracy" |
    "r2": ...}` over a whole split in one forward pass (scalars, on device), in evaluation
    mode (dropout off, batch_norm on the running statistics in `state`).

    - classification (integer labels `(n,)`): accuracy = mean(argmax(pred) == y);
    - binary (targets `(n, k)` in [0, 1]): accuracy = mean((pred > t) == (y > 0.5)) with
      t = `fnn.tasks.binary_threshold(loss)`: 0.5 where the loss predicts probabilities
      (`binary_cross_entropy`), else 0 (logits);
    - regression (`(n, k)`): R² = 1 − Σ(y − pred)²/Σ(y − ȳ)² per output, averaged over
      outputs (scikit-learn's `r2_score`);
    - language_model (next-token ids `(n, T)`, one token a byte): bits per byte = the
      loss in nats / ln 2.
    """
    metric = metric_name(task)
    threshold = binary_threshold(loss)

    def evaluate(params, x, y, state=()):
        pred = forward(net, params, x, Ctx(False, None, state))[0]
        value = loss.forward(pred, y)[0]
        if task == "language_model":
            score = value / jnp.log(jnp.asarray(2.0, value.dtype))  # nats → bits
        elif task == "classification":
            score = jnp.mean((jnp.argmax(pred, axis=-1) == y).astype(pred.dtype))
        elif task == "binary":
            score = jnp.mean(((pred > threshold) == (y > 0.5)).astype(pred.dtype))
        else:
            residual = jnp.sum((y - pred) ** 2, axis=0)
            total = jnp.sum((y - jnp.mean(y, axis=0, keepdims=True)) ** 2, axis=0)
            score = jnp.mean(1 - residual / total)
        return {"loss": value, metric: score}

    return jax.jit(evaluate)

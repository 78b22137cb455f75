"""Training: compiled steps, epochs and `fit` over any optax optimiser.

The layers of a run, innermost first:

- `make_train_step(net, loss, optimizer, mode)`: one minibatch step,
  `step(params, opt_state, (x, y)) -> (params, opt_state, {"loss": value})`; with
  `stateful=True` (networks with dropout or batch_norm) the step also takes the running
  statistics and a key, `step(params, opt_state, batch, state, key) -> (params,
  opt_state, metrics, state)`;
- `make_epoch_fn(...)`: one epoch as ONE compiled call: shuffle with a PRNG key derived
  from the epoch number, cut into `(n_batches, batch, ...)` and `lax.scan` the step;
- `make_eval_fn(...)`: the loss and accuracy (or R²) of a whole split, compiled;
- `fit(...)`: the epoch loop on the host: history, progress bar, early stopping, the
  non-finite-loss guard (`NonFiniteLossError`) and a per-epoch callback (checkpoints).
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from fnn.core import Array, Ctx, Layer, Loss, Params, PRNGKey, State, choose, forward, init_state
from fnn.grad import GRAD_MODES, value_grad_and_state
from fnn.optim import current_learning_rate
from fnn.tasks import infer_task, metric_name

Batch = tuple[jax.Array, jax.Array]  # (x: (batch, ...features), y: targets)


def make_train_step(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    mode: str = "manual",
    *,
    jit: bool = True,
    stateful: bool = False,
) -> Callable:
    """Returns `step(params, opt_state, batch) -> (params, opt_state, metrics)`.

    One step computes the loss and gradients with `value_and_grad(net, loss, mode)`,
    then applies `optimizer` (any optax GradientTransformation; the tutorial's plain
    gradient descent is `optax.sgd(lr)`). `metrics` is `{"loss": value}` (the loss before
    the update). The step is jitted unless `jit=False`; either way it can be called inside
    `lax.scan`.

    With `stateful=True` the step runs the network in training mode and carries what
    random and stateful layers need: `step(params, opt_state, batch, state, key) ->
    (params, opt_state, metrics, state)`, where `state` holds the running statistics
    (`fnn.init_state(net, params)` to start; `()` for a network without any) and `key` is
    this step's PRNG key (dropout). A network with dropout or batch_norm needs it: without
    it, a ValueError says so.
    """
    if net.takes_ctx and not stateful:
        raise ValueError(
            f"make_train_step: {net.name} has random or stateful layers (dropout, "
            "batch_norm): pass stateful=True and call step(params, opt_state, batch, "
            "state, key), with state from fnn.init_state(net, params)"
        )
    grad_fn = value_grad_and_state(net, loss, mode)

    def stateful_step(params, opt_state, batch, state=(), key=None):
        x, y = batch
        value, grads, state = grad_fn(params, x, y, Ctx(True, key, state))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)  # θ ← θ − lr·∇θ for optax.sgd
        return params, opt_state, {"loss": value}, state

    def step(params, opt_state, batch):
        params, opt_state, metrics, _ = stateful_step(params, opt_state, batch)
        return params, opt_state, metrics

    chosen = stateful_step if stateful else step
    return jax.jit(chosen) if jit else chosen


def scan_steps(
    step: Callable,
    params: Params,
    opt_state: Any,
    batches: Batch,
    state: State = (),
    key: PRNGKey | None = None,
):
    """Runs `step` (from `make_train_step(..., stateful=True)`) once per batch in one
    `lax.scan`.

    `batches` is `(xs, ys)` stacked along a leading steps axis: `xs: (steps, batch, ...)`;
    step i gets the key `fold_in(key, i)` (None without a key). Returns `(params,
    opt_state, losses, state)` with `losses: (steps,)`, each the loss before its step.
    Call it inside `jit`: the whole loop is then one compiled call.
    """
    steps = jnp.arange(jax.tree.leaves(batches)[0].shape[0])

    def body(carry, scanned):
        params, opt_state, state = carry
        i, batch = scanned
        key_i = None if key is None else jax.random.fold_in(key, i)
        params, opt_state, metrics, state = step(params, opt_state, batch, state, key_i)
        return (params, opt_state, state), metrics["loss"]

    (params, opt_state, state), losses = lax.scan(
        body, (params, opt_state, state), (steps, batches)
    )
    return params, opt_state, losses, state


def step_key(key: PRNGKey, epoch: Array) -> PRNGKey:
    """The key of an epoch's random layers (dropout): derived from the data-order key
    `fold_in(key, epoch)`, and different from it; step i then uses `fold_in(·, i)`."""
    return jax.random.fold_in(jax.random.fold_in(key, epoch), 1)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training diverged.

    Attributes:
      epoch: the 1-based epoch whose loss was non-finite.
      loss_value: that loss (nan or ±inf).
      learning_rate: the learning rate in use (None if unknown).
      split: "train" or "test", the split whose loss was non-finite.
      last_good: a `FitResult` holding the params and optimiser state from before that
        epoch (the last state with a finite loss) and the history so far.
    """

    def __init__(self, *, epoch, loss_value, learning_rate, split, last_good):
        self.epoch = epoch
        self.loss_value = loss_value
        self.learning_rate = learning_rate
        self.split = split
        self.last_good = last_good
        lr = "unknown" if learning_rate is None else f"{learning_rate:g}"
        super().__init__(
            f"the {split} loss became {loss_value} at epoch {epoch} (learning rate {lr}): "
            "training diverged. Try a lower learning rate (--lr), gradient clipping "
            "(--clip-norm), or float64 (--dtype float64)"
        )


class FitResult(NamedTuple):
    """What `fit` returns (and what its callback and `NonFiniteLossError` carry).

    Attributes:
      params, opt_state: the trained parameters and optimiser state (the best epoch's
        when early stopping restored them).
      history: per-epoch lists; see `fit`.
      epoch: the number of epochs completed in total (resumed ones included).
      best_epoch: the 1-based epoch with the lowest test loss (0 without a test split).
      stopped_early: whether early stopping ended the run.
      state: the running statistics of stateful layers (batch_norm), `()` for none;
        evaluate with `fnn.apply(net, params, x, fnn.Ctx(state=state))`.
    """

    params: Params
    opt_state: Any
    history: dict[str, list[float]]
    epoch: int
    best_epoch: int = 0
    stopped_early: bool = False
    state: State = ()


def make_epoch_fn(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    mode: str = "manual",
    *,
    batch_size: int,
) -> Callable:
    """Returns a jitted `epoch(params, opt_state, key, epoch, x, y, state=()) -> (params,
    opt_state, mean_loss, state)`: one epoch of minibatch training as ONE compiled call.

    The epoch's examples are shuffled with `jax.random.permutation(fold_in(key, epoch),
    n)` (so the order depends only on `key` and the epoch number: a resumed run sees the
    same order), cut into `n // batch_size` batches of shape `(batch_size, ...)`, and
    `lax.scan` runs `make_train_step(..., jit=False)` over them: no host round trip
    between steps. The `n % batch_size` examples left over after the shuffle are dropped
    for that epoch (a different few each epoch), so every step has the same shape.

    Shapes: `x: (n, ...features)`, `y: (n, ...)`, `epoch`: an int32 scalar (pass an
    array, e.g. `jnp.int32(3)`, so that the function is compiled once); `mean_loss`: the
    mean over the epoch's steps of the loss before each update.

    `state` holds the running statistics of stateful layers (`fnn.init_state(net,
    params)`; `()` for none), carried from step to step; random layers (dropout) get the
    key `fold_in(step_key(key, epoch), i)` at step i.
    """
    step = make_train_step(net, loss, optimizer, mode, jit=False, stateful=True)

    def run_epoch(params, opt_state, key, epoch, x, y, state=()):
        n = x.shape[0]
        n_batches = n // batch_size
        if n_batches < 1:
            raise ValueError(batch_size_message(batch_size, n))
        order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        batches = order[: n_batches * batch_size].reshape(n_batches, batch_size)
        xs = jnp.take(x, batches, axis=0)  # (n_batches, batch_size, ...features)
        ys = jnp.take(y, batches, axis=0)

        params, opt_state, losses, state = scan_steps(
            step, params, opt_state, (xs, ys), state, step_key(key, epoch)
        )
        return params, opt_state, jnp.mean(losses), state

    return jax.jit(run_epoch)


def make_eval_fn(net: Layer, loss: Loss, task: str) -> Callable:
    """Returns a jitted `evaluate(params, x, y, state=()) -> {"loss": ..., "accuracy" |
    "r2": ...}` over a whole split in one forward pass (scalars, on device), in evaluation
    mode (dropout off, batch_norm on the running statistics in `state`).

    - classification (integer labels `(n,)`): accuracy = mean(argmax(pred) == y);
    - binary (targets `(n, k)` in [0, 1]): accuracy = mean((pred > t) == (y > 0.5)) with
      t = 0.5 for `binary_cross_entropy` (pred holds probabilities), else 0 (logits);
    - regression (`(n, k)`): R² = 1 − Σ(y − pred)²/Σ(y − ȳ)² per output, averaged over
      outputs (scikit-learn's `r2_score`).
    """
    metric = metric_name(task)
    threshold = 0.5 if loss.name == "binary_cross_entropy" else 0.0

    def evaluate(params, x, y, state=()):
        pred = forward(net, params, x, Ctx(False, None, state))[0]
        value = loss.forward(pred, y)[0]
        if task == "classification":
            score = jnp.mean((jnp.argmax(pred, axis=-1) == y).astype(pred.dtype))
        elif task == "binary":
            score = jnp.mean(((pred > threshold) == (y > 0.5)).astype(pred.dtype))
        else:
            residual = jnp.sum((y - pred) ** 2, axis=0)
            total = jnp.sum((y - jnp.mean(y, axis=0, keepdims=True)) ** 2, axis=0)
            score = jnp.mean(1 - residual / total)
        return {"loss": value, metric: score}

    return jax.jit(evaluate)


@functools.lru_cache(maxsize=32)
def _cached_epoch_fn(net, loss, optimizer, mode, batch_size):
    return make_epoch_fn(net, loss, optimizer, mode, batch_size=batch_size)


@functools.lru_cache(maxsize=32)
def _cached_eval_fn(net, loss, task):
    return make_eval_fn(net, loss, task)


def _cached(cached, *args):
    """`cached(*args)`, reusing compiled code across calls with the same net, loss and
    optimiser objects; a fresh function when an argument does not hash."""
    try:
        hash(args)
    except TypeError:
        return cached.__wrapped__(*args)
    return cached(*args)


def batch_size_message(batch_size: int, n: int) -> str:
    return (
        f"batch size {batch_size} is larger than the {n} training examples; "
        f"use a batch size of at most {n} (--batch-size)"
    )


def _check_data(x, y, name: str) -> None:
    if jnp.ndim(x) < 2:
        raise ValueError(f"{name} inputs must have shape (n, ...features), got {jnp.shape(x)}")
    if jnp.shape(x)[0] != jnp.shape(y)[0]:
        raise ValueError(
            f"{name} inputs and targets differ in length: {jnp.shape(x)[0]} vs {jnp.shape(y)[0]}"
        )


def _check_dtypes(params: Params, splits: dict[str, Any]) -> None:
    """Floating inputs and targets must have the params' floating dtype: a float64 batch
    would turn float32 params into float64 ones after one step, which `lax.scan` refuses
    deep inside XLA. A ValueError names both dtypes instead."""
    dtypes = {
        leaf.dtype for leaf in jax.tree.leaves(params) if jnp.issubdtype(leaf.dtype, jnp.floating)
    }
    if len(dtypes) != 1:
        return  # no params, or mixed precision: nothing to compare against
    (want,) = dtypes
    for split, arrays in splits.items():
        for what, a in zip(("inputs", "targets"), arrays, strict=True):
            if jnp.issubdtype(a.dtype, jnp.floating) and a.dtype != want:
                raise ValueError(
                    f"{split} {what} are {a.dtype} but the params are {want}: cast the data "
                    f"(e.g. x.astype(jnp.{want})) or initialise the params in {a.dtype}"
                )


def new_history(task: str, *, eval_train: bool = True, test: bool = True) -> dict:
    """An empty history dict with the keys `fit` fills for `task`."""
    metric = metric_name(task)
    keys = ["train_loss"]
    keys += [f"train_{metric}"] if eval_train else []
    keys += ["test_loss", f"test_{metric}"] if test else []
    return {key: [] for key in [*keys, "epoch_s"]}


def fit(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    params: Params,
    train: tuple[Array, Array],
    test: tuple[Array, Array] | None = None,
    *,
    key: PRNGKey,
    epochs: int,
    batch_size: int = 64,
    mode: str = "manual",
    task: str | None = None,
    opt_state: Any = None,
    start_epoch: int = 0,
    history: dict[str, list[float]] | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    restore_best: bool = True,
    eval_train: bool = True,
    progress: bool = True,
    callback: Callable[[FitResult], None] | None = None,
    mesh: Any = None,
    state: State | None = None,
) -> FitResult:
    """Trains `net` on `train` for `epochs` epochs, evaluating on `test` after each.

    Each epoch is one compiled call (`make_epoch_fn`: shuffle, `(n_batches, batch, ...)`,
    `lax.scan` over the steps; the last `n % batch_size` shuffled examples are dropped
    from that epoch), then one compiled evaluation per split (`make_eval_fn`). The host
    reads a few scalars per epoch, for the history, the progress bar and the guard.

    Arguments:
      net, loss, optimizer: the network, the loss and any optax optimiser.
      params: initial params (e.g. `fnn.init(net, key, in_shape, dtype)`).
      train, test: `(x, y)` arrays, `x: (n, ...features)`; targets as the loss takes them
        (int labels `(n,)`, or floats `(n, k)`). `test` may be None (no evaluation).
      key: the data-order key; epoch e shuffles with `fold_in(key, e)` (e 0-based).
      epochs: the total number of epochs, resumed ones included: with `start_epoch=3`
        and `epochs=6`, epochs 4, 5 and 6 run.
      batch_size: examples per step; larger than the training set is a ValueError.
      mode: "manual" (hand-written backward) or "autodiff" (`jax.grad`).
      task: "classification", "binary" or "regression" (default: `infer_task`).
      opt_state: the optimiser state to resume from (default `optimizer.init(params)`).
      start_epoch, history: where a resumed run left off; `history` is extended (a copy).
      patience: early stopping: stop when the test loss has not improved by more than
        `min_delta` for `patience` epochs (None: never stop early; needs `test`).
      restore_best: with early stopping, return the params and optimiser state of the
        epoch with the lowest test loss seen in this call (else those of the last epoch).
      eval_train: also evaluate the whole training split after each epoch, for
        `train_accuracy`/`train_r2` (`train_loss` is always the mean of the epoch's step
        losses, each taken before its update).
      progress: show a tqdm progress bar on stderr (epoch, loss, accuracy or R²).
      callback: called after every successful epoch with a `FitResult` of the state so
        far (e.g. to write checkpoints); not called for a diverged epoch.
      mesh: a `jax.sharding.Mesh` with a `"data"` axis (`fnn.parallel.make_data_mesh`):
        train data-parallel, each batch sharded over the mesh and params replicated
        (`fnn.parallel.make_sharded_epoch_fn`; same batches, same results up to the order
        of float sums); `batch_size` must be divisible by the mesh's device count. The
        returned params and opt_state are then replicated over the mesh. None: one device.
      state: the running statistics to resume from (default `fnn.init_state(net,
        params)`). Networks with dropout or batch_norm train in training mode (dropout
        keys derived from `key` and the epoch) and are evaluated in evaluation mode, on
        the running statistics.

    Returns:
      A `FitResult`. `history` holds per-epoch lists: `train_loss`, `train_accuracy` or
      `train_r2` (with `eval_train`), `test_loss` and `test_accuracy` or `test_r2` (with
      `test`), and `epoch_s`, the wall time of the epoch's training call (the first one
      includes compilation).

    Raises:
      NonFiniteLossError: when the train or test loss of an epoch is NaN or infinite; its
        `last_good` holds the state before that epoch.
      ValueError: on inconsistent data, a batch larger than the data, or bad arguments.
    """
    choose("grad mode", mode, dict.fromkeys(GRAD_MODES))
    x_train, y_train = (jnp.asarray(a) for a in train)
    _check_data(x_train, y_train, "train")
    if test is not None:
        x_test, y_test = (jnp.asarray(a) for a in test)
        _check_data(x_test, y_test, "test")
    splits = {"train": (x_train, y_train)}
    if test is not None:
        splits["test"] = (x_test, y_test)
    _check_dtypes(params, splits)
    n = x_train.shape[0]
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch size must be a positive int, got {batch_size!r}")
    if batch_size > n:
        raise ValueError(batch_size_message(batch_size, n))
    if epochs < start_epoch:
        raise ValueError(f"epochs ({epochs}) is below the epochs already done ({start_epoch})")
    if patience is not None and (test is None or patience < 1):
        raise ValueError("early stopping (patience >= 1) needs a test split")
    task = task or infer_task(y_train, loss)
    metric = metric_name(task)
    batch_size = int(batch_size)

    epoch_fn = _cached(_cached_epoch_fn, net, loss, optimizer, mode, batch_size)
    eval_fn = _cached(_cached_eval_fn, net, loss, task)
    if opt_state is None:
        opt_state = optimizer.init(params)
    if state is None:
        state = init_state(net, params)
    on_one_device = lambda tree: tree  # noqa: E731
    if mesh is not None:
        from fnn import parallel

        epoch_fn = parallel.make_sharded_epoch_fn(
            net, loss, optimizer, mode, mesh=mesh, batch_size=batch_size
        )
        params, opt_state, state = parallel.replicate((params, opt_state, state), mesh)
        on_one_device = parallel.local_copy  # evaluation runs on one device
    fresh = new_history(task, eval_train=eval_train, test=test is not None)
    history = {k: list(v) for k, v in (history or fresh).items()}
    for name in fresh:
        history.setdefault(name, [])

    current = FitResult(params, opt_state, history, start_epoch, state=state)
    best = (math.inf, current)  # (lowest test loss, its result)
    since_best = 0
    bar = _progress(start_epoch, epochs, progress)
    try:
        for epoch in range(start_epoch, epochs):
            start = time.perf_counter()
            new_params, new_opt_state, train_loss, new_state = epoch_fn(
                current.params,
                current.opt_state,
                key,
                jnp.int32(epoch),
                x_train,
                y_train,
                current.state,
            )
            train_loss = float(train_loss)  # the epoch's one host sync
            seconds = time.perf_counter() - start
            _guard(train_loss, "train", epoch, current)
            record = {"train_loss": train_loss}
            eval_params, eval_state = on_one_device((new_params, new_state))
            if eval_train:
                record[f"train_{metric}"] = float(
                    eval_fn(eval_params, x_train, y_train, eval_state)[metric]
                )
            if test is not None:
                scores = {
                    k: float(v) for k, v in eval_fn(eval_params, x_test, y_test, eval_state).items()
                }
                _guard(scores["loss"], "test", epoch, current)
                record["test_loss"], record[f"test_{metric}"] = scores["loss"], scores[metric]
            record["epoch_s"] = seconds
            for name, value in record.items():
                history[name].append(value)
            current = FitResult(
                new_params, new_opt_state, history, epoch + 1, best[1].best_epoch, state=new_state
            )
            if test is not None and record["test_loss"] < best[0] - min_delta:
                current = current._replace(best_epoch=epoch + 1)
                best, since_best = (record["test_loss"], current), 0
            else:
                since_best += 1
            bar.update(1)
            bar.set_postfix(_postfix(record, metric), refresh=False)
            if callback is not None:
                callback(current)
            if patience is not None and since_best >= patience:
                current = current._replace(stopped_early=True)
                break
    finally:
        bar.close()
    if current.stopped_early and restore_best:
        kept = best[1]
        current = current._replace(params=kept.params, opt_state=kept.opt_state, state=kept.state)
    return current._replace(history=history, best_epoch=best[1].best_epoch)


def _guard(value: float, split: str, epoch: int, last_good: FitResult) -> None:
    """Raises NonFiniteLossError when `value` is NaN or infinite."""
    if not math.isfinite(value):
        raise NonFiniteLossError(
            epoch=epoch + 1,
            loss_value=value,
            learning_rate=current_learning_rate(last_good.opt_state),
            split=split,
            last_good=last_good,
        )


def _progress(start: int, total: int, enabled: bool):
    """A tqdm bar over epochs on stderr (a do-nothing bar when disabled)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=start,
        desc="epoch",
        unit="epoch",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
        leave=True,
    )


def _postfix(record: dict[str, float], metric: str) -> dict[str, str]:
    shown = {"loss": f"{record['train_loss']:.4f}"}
    if "test_loss" in record:
        shown["test_loss"] = f"{record['test_loss']:.4f}"
        shown[f"test_{metric}"] = f"{record[f'test_{metric}']:.4f}"
    elif f"train_{metric}" in record:
        shown[metric] = f"{record[f'train_{metric}']:.4f}"
    return shown

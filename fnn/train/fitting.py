"""`fit`: the epoch loop on the host, around one compiled call per epoch.

The loop keeps the history, the progress bar, early stopping, the non-finite-loss guard
(`NonFiniteLossError`) and a per-epoch callback (checkpoints); the compiled epoch
(`fnn.train.epoch`) and, on a mesh, its data-parallel form (`fnn.train.parallel`) do
the work. `fit` takes a `TrainState` and returns a `FitResult` whose `state` is the
trained one.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from fnn.core import Array, Layer, Loss, Params, PRNGKey, as_array, choose
from fnn.errors import DataError, NonFiniteLossError, SettingError, ShapeError
from fnn.grad import GRAD_MODES
from fnn.tasks import infer_task, metric_name
from fnn.train.batching import check_batch_size
from fnn.train.epoch import make_epoch_fn, make_eval_fn
from fnn.train.fit_options import (
    BestSoFar,
    EarlyStopping,
    FitResult,
    new_history,
    old_call,
)
from fnn.train.gradient_flow import make_gradient_probe
from fnn.train.optim import current_learning_rate
from fnn.train.parallel import local_copy, make_sharded_epoch_fn, replicate
from fnn.train.step import TrainState


@functools.lru_cache(maxsize=32)
def _cached_epoch_fn(net, loss, optimizer, mode, batch_size):
    return make_epoch_fn(net, loss, optimizer, mode, batch_size=batch_size)


@functools.lru_cache(maxsize=32)
def _cached_eval_fn(net, loss, task):
    return make_eval_fn(net, loss, task)


@functools.lru_cache(maxsize=32)
def _cached_probe(net, loss, optimizer):
    return make_gradient_probe(net, loss, optimizer)


def _cached(cached, *args):
    """`cached(*args)`, reusing compiled code across calls with the same net, loss and
    optimiser objects; a fresh function when an argument does not hash."""
    try:
        hash(args)
    except TypeError:
        return cached.__wrapped__(*args)
    return cached(*args)


def _check_split(split, name: str) -> tuple[Array, Array]:
    """`(x, y)` as arrays, or a ValueError for a shape that cannot be a split."""
    x, y = (as_array(a) for a in split)
    if x.ndim < 2:
        raise ShapeError(f"{name} inputs must have shape (n, ...features), got {x.shape}")
    if x.shape[0] != y.shape[0]:
        raise ShapeError(
            f"{name} inputs and targets differ in length: {x.shape[0]} vs {y.shape[0]}"
        )
    return x, y


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
                raise DataError(
                    f"{split} {what} are {a.dtype} but the params are {want}: cast the data "
                    f"(e.g. x.astype(jnp.{want})) or initialise the params in {a.dtype}"
                )


def fit(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    state: TrainState,
    train: tuple[ArrayLike, ArrayLike],
    test: tuple[ArrayLike, ArrayLike] | None = None,
    *,
    key: PRNGKey,
    epochs: int,
    batch_size: int = 64,
    mode: str = "manual",
    task: str | None = None,
    early_stopping: EarlyStopping | None = None,
    resume: FitResult | None = None,
    eval_train: bool = True,
    track_gradients: bool = False,
    progress: bool = True,
    callback: Callable[[FitResult], None] | None = None,
    mesh: Any = None,
    **deprecated: Any,
) -> FitResult:
    """Trains `net` from `state` on `train` for `epochs` epochs, evaluating on `test` after
    each; returns a `FitResult` whose `state` is the trained `TrainState`.

        state = fnn.TrainState.create(net, params, optimizer)
        result = fit(net, loss, optimizer, state, (x, y), (x_test, y_test), key=key, epochs=10)
        result.state.params                                   # the trained params
        more = fit(net, loss, optimizer, result.state, (x, y), (x_test, y_test),
                   key=key, epochs=20, resume=result)         # epochs 11 to 20

    Each epoch is one compiled call (`make_epoch_fn`: shuffle, `(n_batches, batch, ...)`,
    `lax.scan` over the steps; the last `n % batch_size` shuffled examples sit out that
    epoch), then one compiled evaluation per split (`make_eval_fn`). The host
    reads a few scalars per epoch, for the history, the progress bar and the guard.
    Networks with dropout or batch_norm train in training mode (dropout keys derived from
    `key` and the epoch) and are evaluated in evaluation mode, on the running statistics.

    Arguments:
      net, loss, optimizer: the network, the loss and any optax optimiser.
      state: the `TrainState` to train from: `fnn.TrainState.create(net, params,
        optimizer)` for a fresh run (params, `optimizer.init(params)`, the initial running
        statistics), or an earlier result's `state`.
      train, test: `(x, y)` arrays, `x: (n, ...features)`; targets as the loss takes them
        (int labels `(n,)`, or floats `(n, k)`). `test` may be None (no evaluation).
      key: the data-order key; epoch e shuffles with `fold_in(key, e)` (e 0-based).
      epochs: the total number of epochs, resumed ones included: resuming a result with
        `epoch=3` with `epochs=6` runs epochs 4, 5 and 6.
      batch_size: examples per step; larger than the training set is a ValueError.
      mode: "manual" (hand-written backward) or "autodiff" (`jax.grad`).
      task: "classification", "binary" or "regression" (default: `infer_task`).
      early_stopping: an `EarlyStopping(patience, min_delta, restore_best)`; None: never
        stop early.
      resume: continue the run that produced this `FitResult` (from an earlier call, a
        callback, `NonFiniteLossError.last_good`, or rebuilt from a checkpoint as
        `FitResult(state, history, epoch)`): training starts after its `epoch` and extends
        a copy of its `history`; `state` is still the state to train from. With the same
        key, batch size and optimiser, a resumed run equals the uninterrupted one bit for
        bit. None: a fresh run from epoch 0.
      eval_train: also evaluate the whole training split after each epoch, for
        `train_accuracy`/`train_r2` (`train_loss` is always the mean of the epoch's step
        losses, each taken before its update).
      track_gradients: after each epoch, one hand-written forward and backward pass on
        the first `batch_size` training examples records each layer's delta RMS,
        gradient RMS and update-to-weight ratio in the history
        (`fnn.train.gradient_flow`; the hand-written backward in either grad mode).
      progress: show a tqdm progress bar on stderr (epoch, loss, accuracy or R²).
      callback: called after every successful epoch with a `FitResult` of the run so far
        (e.g. to write checkpoints); not called for a diverged epoch.
      mesh: a `jax.sharding.Mesh` with a `"data"` axis (`fnn.train.parallel.make_data_mesh`):
        train data-parallel, each batch sharded over the mesh and the state replicated
        (`fnn.train.parallel.make_sharded_epoch_fn`; same batches, same results up to the
        order of float sums); `batch_size` must be divisible by the mesh's device count.
        The returned state is then replicated over the mesh. None: one device.
      **deprecated: the old call, kept for one release with a DeprecationWarning: raw
        params in place of `state` and the keywords `opt_state`, `start_epoch`,
        `history`, `patience`, `min_delta` and `restore_best` (the old `state=`, running
        statistics, is gone: pass a `TrainState`).

    Returns:
      A `FitResult`. `history` holds per-epoch lists: `train_loss`, `train_accuracy` or
      `train_r2` (with `eval_train`), `test_loss` and `test_accuracy` or `test_r2` (with
      `test`), and `epoch_s`, the wall time of the epoch's training call (the first one
      includes compilation).

    Raises:
      NonFiniteLossError: when the train or test loss of an epoch is NaN or infinite; its
        `last_good` holds the state before that epoch.
      ValueError: on inconsistent data or bad arguments; a `fnn.core.SettingError` (a
        ValueError) for a batch larger than the data.
    """
    state, early_stopping, resume = old_call(
        net, optimizer, state, early_stopping, resume, deprecated
    )
    choose("grad mode", mode, dict.fromkeys(GRAD_MODES))
    x_train, y_train = _check_split(train, "train")
    splits = {"train": (x_train, y_train)}
    if test is not None:
        splits["test"] = _check_split(test, "test")
    _check_dtypes(state.params, splits)
    batch_size = check_batch_size(batch_size, x_train.shape[0])
    start_epoch = 0 if resume is None else resume.epoch
    if epochs < start_epoch:
        raise SettingError(
            f"epochs ({epochs}) is below the epochs already done ({start_epoch})",
            settings=("epochs",),
        )
    if early_stopping is not None and (test is None or early_stopping.patience < 1):
        raise SettingError(
            "early stopping (patience >= 1) needs a test split", settings=("patience", "test")
        )
    task = task or infer_task(y_train, loss)
    metric = metric_name(task)

    if mesh is None:
        epoch_fn = _cached(_cached_epoch_fn, net, loss, optimizer, mode, batch_size)
        one_device = lambda tree: tree  # noqa: E731
    else:
        epoch_fn = make_sharded_epoch_fn(
            net, loss, optimizer, mode, mesh=mesh, batch_size=batch_size
        )
        state = replicate(state, mesh)
        one_device = local_copy  # evaluation runs on one device
    eval_fn = _cached(_cached_eval_fn, net, loss, task)
    probe = _cached(_cached_probe, net, loss, optimizer) if track_gradients else None
    probe_batch = (x_train[:batch_size], y_train[:batch_size]) if track_gradients else None

    fresh = new_history(task, eval_train=eval_train, test=test is not None)
    earlier = fresh if resume is None or not resume.history else resume.history
    history = {k: list(v) for k, v in earlier.items()}
    for name in fresh:
        history.setdefault(name, [])

    def evaluate(split: str, params, running) -> dict[str, float]:
        x, y = splits[split]
        return {k: float(v) for k, v in eval_fn(params, x, y, running).items()}

    current = FitResult(state, history, start_epoch)
    best = BestSoFar(early_stopping, current)
    bar = _progress(start_epoch, epochs, progress)
    try:
        for epoch in range(start_epoch, epochs):
            start = time.perf_counter()
            state, train_loss = epoch_fn(current.state, key, jnp.int32(epoch), x_train, y_train)
            record = {"train_loss": float(train_loss)}  # the epoch's one host sync
            seconds = time.perf_counter() - start
            _guard(record["train_loss"], "train", epoch, current)
            params_1, opt_1, running_1 = one_device(state)
            if eval_train:
                record[f"train_{metric}"] = evaluate("train", params_1, running_1)[metric]
            if test is not None:
                scores = evaluate("test", params_1, running_1)
                _guard(scores["loss"], "test", epoch, current)
                record["test_loss"], record[f"test_{metric}"] = scores["loss"], scores[metric]
            record["epoch_s"] = seconds
            if probe is not None and probe_batch is not None:  # both, with track_gradients
                record.update(probe(params_1, opt_1, running_1, key, epoch, *probe_batch))
            for name, value in record.items():
                history.setdefault(name, []).append(value)
            current = best.update(record.get("test_loss"), FitResult(state, history, epoch + 1))
            bar.update(1)
            bar.set_postfix(_postfix(record, metric), refresh=False)
            if callback is not None:
                callback(current)
            if best.stop:
                current = current._replace(stopped_early=True)
                break
    finally:
        bar.close()
    if current.stopped_early and early_stopping is not None and early_stopping.restore_best:
        current = current._replace(state=best.best.state)
    return current._replace(history=history, best_epoch=best.best.best_epoch)


def _guard(value: float, split: str, epoch: int, last_good: FitResult) -> None:
    """Raises NonFiniteLossError when `value` is NaN or infinite."""
    if not math.isfinite(value):
        raise NonFiniteLossError(
            epoch=epoch + 1,
            loss_value=value,
            learning_rate=current_learning_rate(last_good.state.opt_state),
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

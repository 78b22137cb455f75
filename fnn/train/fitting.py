"""`fit`: the epoch loop on the host, around one compiled call per epoch.

The loop keeps the history, the progress bar, early stopping, the non-finite-loss guard
(`NonFiniteLossError`) and a per-epoch callback (checkpoints); the compiled epoch
(`fnn.train.epoch`) and, on a mesh, its data-parallel form (`fnn.train.parallel`) do
the work.
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
import optax

from fnn.core import Array, Layer, Loss, Params, PRNGKey, State, choose, init_state
from fnn.grad import GRAD_MODES
from fnn.tasks import infer_task, metric_name
from fnn.train.batching import check_batch_size
from fnn.train.epoch import make_epoch_fn, make_eval_fn
from fnn.train.gradient_flow import make_gradient_probe
from fnn.train.optim import current_learning_rate
from fnn.train.parallel import local_copy, make_sharded_epoch_fn, replicate
from fnn.train.step import TrainState


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training diverged.

    Attributes:
      epoch: the 1-based epoch whose loss was non-finite.
      loss_value: that loss (nan or ±inf).
      learning_rate: the learning rate in use (None if unknown).
      split: "train" or "test", the split whose loss was non-finite.
      last_good: a `FitResult` holding the params and optimiser state from before that
        epoch (the last state with a finite loss) and the history so far.
      settings: the settings that may fix it: the learning rate, gradient clipping, the
        dtype (as `fnn.core.SettingError` names them).
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
            "training diverged. Try a lower learning rate, gradient clipping, or float64"
        )
        self.settings = ("lr", "clip_norm", "dtype")  # what fixes it, as SettingError has


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

    @property
    def train_state(self) -> TrainState:
        """The params, optimiser state and running statistics as a `TrainState`."""
        return TrainState(self.params, self.opt_state, self.state)


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
    x, y = (jnp.asarray(a) for a in split)
    if x.ndim < 2:
        raise ValueError(f"{name} inputs must have shape (n, ...features), got {x.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
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


class _EarlyStopping:
    """The lowest test loss so far, the result that reached it, and the epochs since."""

    def __init__(self, patience: int | None, min_delta: float, start: FitResult):
        self.patience, self.min_delta = patience, min_delta
        self.lowest, self.best, self.since = math.inf, start, 0

    def update(self, test_loss: float | None, current: FitResult) -> FitResult:
        """`current`, with `best_epoch` set; records it when its test loss is the lowest."""
        if test_loss is not None and test_loss < self.lowest - self.min_delta:
            current = current._replace(best_epoch=current.epoch)
            self.lowest, self.best, self.since = test_loss, current, 0
        else:
            current = current._replace(best_epoch=self.best.best_epoch)
            self.since += 1
        return current

    @property
    def stop(self) -> bool:
        return self.patience is not None and self.since >= self.patience


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
    track_gradients: bool = False,
) -> FitResult:
    """Trains `net` on `train` for `epochs` epochs, evaluating on `test` after each.

    Each epoch is one compiled call (`make_epoch_fn`: shuffle, `(n_batches, batch, ...)`,
    `lax.scan` over the steps; the last `n % batch_size` shuffled examples sit out that
    epoch), then one compiled evaluation per split (`make_eval_fn`). The host
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
      track_gradients: after each epoch, one hand-written forward and backward pass on
        the first `batch_size` training examples records each layer's delta RMS,
        gradient RMS and update-to-weight ratio in the history
        (`fnn.train.gradient_flow`; the hand-written backward in either grad mode).

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
    choose("grad mode", mode, dict.fromkeys(GRAD_MODES))
    x_train, y_train = _check_split(train, "train")
    splits = {"train": (x_train, y_train)}
    if test is not None:
        splits["test"] = _check_split(test, "test")
    _check_dtypes(params, splits)
    batch_size = check_batch_size(batch_size, x_train.shape[0])
    if epochs < start_epoch:
        raise ValueError(f"epochs ({epochs}) is below the epochs already done ({start_epoch})")
    if patience is not None and (test is None or patience < 1):
        raise ValueError("early stopping (patience >= 1) needs a test split")
    task = task or infer_task(y_train, loss)
    metric = metric_name(task)

    train_state = TrainState(
        params,
        optimizer.init(params) if opt_state is None else opt_state,
        init_state(net, params) if state is None else state,
    )
    if mesh is None:
        epoch_fn = _cached(_cached_epoch_fn, net, loss, optimizer, mode, batch_size)
        one_device = lambda tree: tree  # noqa: E731
    else:
        epoch_fn = make_sharded_epoch_fn(
            net, loss, optimizer, mode, mesh=mesh, batch_size=batch_size
        )
        train_state = replicate(train_state, mesh)
        one_device = local_copy  # evaluation runs on one device
    eval_fn = _cached(_cached_eval_fn, net, loss, task)
    probe = _cached(_cached_probe, net, loss, optimizer) if track_gradients else None
    probe_batch = (x_train[:batch_size], y_train[:batch_size]) if track_gradients else None

    fresh = new_history(task, eval_train=eval_train, test=test is not None)
    history = {k: list(v) for k, v in (history or fresh).items()}
    for name in fresh:
        history.setdefault(name, [])

    def evaluate(split: str, params, state) -> dict[str, float]:
        x, y = splits[split]
        return {k: float(v) for k, v in eval_fn(params, x, y, state).items()}

    current = FitResult(*train_state[:2], history, start_epoch, state=train_state.state)
    stopping = _EarlyStopping(patience, min_delta, current)
    bar = _progress(start_epoch, epochs, progress)
    try:
        for epoch in range(start_epoch, epochs):
            start = time.perf_counter()
            train_state, train_loss = epoch_fn(
                current.train_state, key, jnp.int32(epoch), x_train, y_train
            )
            record = {"train_loss": float(train_loss)}  # the epoch's one host sync
            seconds = time.perf_counter() - start
            _guard(record["train_loss"], "train", epoch, current)
            params_1, opt_1, state_1 = one_device(train_state)
            if eval_train:
                record[f"train_{metric}"] = evaluate("train", params_1, state_1)[metric]
            if test is not None:
                scores = evaluate("test", params_1, state_1)
                _guard(scores["loss"], "test", epoch, current)
                record["test_loss"], record[f"test_{metric}"] = scores["loss"], scores[metric]
            record["epoch_s"] = seconds
            if probe is not None:
                record.update(probe(params_1, opt_1, state_1, key, epoch, *probe_batch))
            for name, value in record.items():
                history.setdefault(name, []).append(value)
            current = FitResult(*train_state[:2], history, epoch + 1, state=train_state.state)
            current = stopping.update(record.get("test_loss"), current)
            bar.update(1)
            bar.set_postfix(_postfix(record, metric), refresh=False)
            if callback is not None:
                callback(current)
            if stopping.stop:
                current = current._replace(stopped_early=True)
                break
    finally:
        bar.close()
    if current.stopped_early and restore_best:
        kept = stopping.best
        current = current._replace(params=kept.params, opt_state=kept.opt_state, state=kept.state)
    return current._replace(history=history, best_epoch=stopping.best.best_epoch)


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

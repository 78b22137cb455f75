"""What `fit` takes and returns besides the arrays: `EarlyStopping`, `FitResult`, the
history's keys (`new_history`), the best-so-far record behind early stopping, and the
translation of `fit`'s deprecated call (raw params and the old keywords; goes in the next
release).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

from fnn.core import Params, init_state
from fnn.errors import ArgumentError, SettingError
from fnn.tasks import metric_name
from fnn.train.step import TrainState


class FitResult(NamedTuple):
    """What `fit` returns (and what its callback and `NonFiniteLossError` carry).

    Attributes:
      state: the trained `TrainState`: params, optimiser state and the running statistics
        of stateful layers (the best epoch's when early stopping restored them); evaluate
        with `fnn.apply(net, state.params, x, fnn.Ctx(state=state.state))`.
      history: per-epoch lists; see `fit`.
      epoch: the number of epochs completed in total (resumed ones included).
      best_epoch: the 1-based epoch with the lowest test loss in this call (0 without a
        test split).
      stopped_early: whether early stopping ended the run.

    `params`, `opt_state` and `train_state` are deprecated aliases of `state.params`,
    `state.opt_state` and `state`, kept for one release.
    """

    state: TrainState
    history: dict[str, list[float]]
    epoch: int
    best_epoch: int = 0
    stopped_early: bool = False

    @property
    def params(self) -> Params:
        """Deprecated: `result.state.params`."""
        _deprecated("FitResult.params", "FitResult.state.params")
        return self.state.params

    @property
    def opt_state(self) -> Any:
        """Deprecated: `result.state.opt_state`."""
        _deprecated("FitResult.opt_state", "FitResult.state.opt_state")
        return self.state.opt_state

    @property
    def train_state(self) -> TrainState:
        """Deprecated: `result.state`."""
        _deprecated("FitResult.train_state", "FitResult.state")
        return self.state


class EarlyStopping(NamedTuple):
    """`fit`'s early stopping: stop when the test loss has not improved by more than
    `min_delta` for `patience` epochs in a row (needs a test split).

    Attributes:
      patience: the epochs without improvement that end the run (>= 1).
      min_delta: the decrease of the test loss that counts as an improvement.
      restore_best: return the state of the epoch with the lowest test loss seen in the
        call (True), or that of the last epoch (False).
    """

    patience: int
    min_delta: float = 0.0
    restore_best: bool = True


def _deprecated(old: str, new: str, stacklevel: int = 3) -> None:
    """A DeprecationWarning pointing at the caller's line (`stacklevel` frames up)."""
    warnings.warn(
        f"{old} is deprecated and goes in the next release: use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def new_history(task: str, *, eval_train: bool = True, test: bool = True) -> dict:
    """An empty history dict with the keys `fit` fills for `task`."""
    metric = metric_name(task)
    keys = ["train_loss"]
    keys += [f"train_{metric}"] if eval_train else []
    keys += ["test_loss", f"test_{metric}"] if test else []
    return {key: [] for key in [*keys, "epoch_s"]}


class BestSoFar:
    """The lowest test loss so far, the result that reached it, and the epochs since."""

    def __init__(self, stopping: EarlyStopping | None, start: FitResult):
        self.stopping = stopping
        self.min_delta = 0.0 if stopping is None else stopping.min_delta
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
        return self.stopping is not None and self.since >= self.stopping.patience


_OLD_KEYWORDS = ("opt_state", "start_epoch", "history", "patience", "min_delta", "restore_best")


def old_call(net, optimizer, state, early_stopping, resume, old: dict[str, Any]):
    """`(state, early_stopping, resume)` from the deprecated call (raw params and the old
    keywords), with a DeprecationWarning; the arguments themselves for the new call."""
    unknown = sorted(set(old) - set(_OLD_KEYWORDS))
    if unknown:  # what Python itself raises for a keyword a function does not take
        raise ArgumentError(f"fit() got an unexpected keyword argument {unknown[0]!r}")
    if isinstance(state, TrainState) and not old:
        return state, early_stopping, resume
    _deprecated(
        "fit with raw params, opt_state=, start_epoch=, history=, patience=, min_delta= or "
        "restore_best=",
        "fit(net, loss, optimizer, fnn.TrainState.create(net, params, optimizer), ..., "
        "early_stopping=fnn.EarlyStopping(patience), resume=earlier_result)",
        stacklevel=4,  # the line that called fit
    )
    if not isinstance(state, TrainState):
        opt_state = old.get("opt_state")
        opt_state = optimizer.init(state) if opt_state is None else opt_state
        state = TrainState(state, opt_state, init_state(net, state))
    elif "opt_state" in old:
        raise SettingError(
            "fit() takes the optimiser state in its TrainState, not opt_state=",
            settings=("state", "opt_state"),
        )
    if old.get("patience") is not None:
        if early_stopping is not None:
            raise SettingError(
                "fit() takes early_stopping= or patience=, not both",
                settings=("early_stopping", "patience"),
            )
        stopping = (old["patience"], old.get("min_delta", 0.0), old.get("restore_best", True))
        early_stopping = EarlyStopping(*stopping)
    if old.get("start_epoch") or old.get("history"):
        if resume is not None:
            raise SettingError(
                "fit() takes resume= or start_epoch= and history=, not both",
                settings=("resume", "start_epoch", "history"),
            )
        resume = FitResult(state, old.get("history") or {}, old.get("start_epoch", 0))
    return state, early_stopping, resume

"""The errors fnn raises on purpose: one base class, `FnnError`, and a subclass for each
kind of fault.

Each subclass also derives from the builtin exception it stands for (`SettingError` is a
`ValueError`, `DTypeError` a `TypeError`, `NonFiniteLossError` a `FloatingPointError` ...),
so code that catches the builtin keeps working. An exception that is not an `FnnError`
(a `ZeroDivisionError`, an `XlaRuntimeError`, a `TypeError` from inside JAX) was not raised
on purpose: it is a bug in fnn or in the code fnn was given, and `fnn`'s command line
says so.

This module imports nothing of fnn: every floor of the house may raise these.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = [
    "ArgumentError",
    "CheckpointError",
    "DTypeError",
    "DataError",
    "DistributedError",
    "FnnError",
    "NonFiniteLossError",
    "NotFoundError",
    "SettingError",
    "ShapeError",
    "UserCodeError",
]


class FnnError(Exception):
    """The base of every error fnn raises on purpose: the caller's input, data, files or
    code do not fit, as opposed to a bug.

    `settings` names the arguments that would fix it, in the terms of the function the
    caller called (see `SettingError`); empty when none would.
    """

    def __init__(self, message: str = "", *, settings: Sequence[str] = ()):
        super().__init__(message)
        self.settings = tuple(settings)


class SettingError(FnnError, ValueError):
    """A setting the caller chose (an argument, a configuration field) does not fit.

    The message speaks in the library's terms, and `settings` names what would fix it:
    the parameters of the function the caller called, e.g. `("batch_size",)` for
    `fit(batch_size=...)` or `("csv_path",)` for `load_dataset(csv_path=...)`. A function
    that passes its own arguments on under other names renames the settings of the errors
    coming back (`renamed_settings`): `fnn.experiment` turns them into `TrainConfig`
    fields (`csv_path` into `csv`), and the command line into its flags (`--csv`).
    """


class ArgumentError(FnnError, TypeError):
    """An argument of the wrong kind: something that is not an fnn `Layer` where one is
    needed, a keyword the function does not take. The `TypeError` of a bad call; a value
    of the right kind that does not fit is a `SettingError`."""


class ShapeError(FnnError, ValueError):
    """An array's shape (or structure) does not fit the layer, loss or function given it;
    the message names the layer and both shapes (what `fnn.core.expect` raises)."""


class DTypeError(FnnError, TypeError):
    """An array's dtype does not fit, e.g. integer inputs to a layer that needs floating
    point (what `fnn.core.check_floating` raises)."""


class DataError(SettingError):
    """Data does not fit: a data set that cannot be loaded (unknown name, missing or
    corrupt file, a bad CSV cell), or input values outside their range (token ids beyond
    the vocabulary, labels beyond the classes).

    A `SettingError` (and so a `ValueError`). `settings` names the arguments that would
    fix it (e.g. `("csv_path",)` or `("data_dir",)`); it is empty when the fault is in a
    file's contents rather than in a setting.
    """


class CheckpointError(FnnError, ValueError):
    """A checkpoint cannot be written or loaded: missing, truncated, corrupt, or not
    matching the run it is loaded into."""


class NonFiniteLossError(FnnError, FloatingPointError):
    """The loss became NaN or infinite: training diverged.

    Attributes:
      epoch: the 1-based epoch whose loss was non-finite.
      loss_value: that loss (nan or ±inf).
      learning_rate: the learning rate in use (None if unknown).
      split: "train" or "test", the split whose loss was non-finite.
      last_good: a `FitResult` holding the params and optimiser state from before that
        epoch (the last state with a finite loss) and the history so far.
      settings: what may fix it, in the terms of the function that trained: empty from
        `fnn.train.fit` (the learning rate and clipping live in its optimiser);
        `fnn.experiment.train` names its config's `lr`, `clip_norm` and `dtype`.
    """

    def __init__(self, *, epoch, loss_value, learning_rate, split, last_good, settings=()):
        self.epoch = epoch
        self.loss_value = loss_value
        self.learning_rate = learning_rate
        self.split = split
        self.last_good = last_good
        lr = "unknown" if learning_rate is None else f"{learning_rate:g}"
        super().__init__(
            f"the {split} loss became {loss_value} at epoch {epoch} (learning rate {lr}): "
            "training diverged. Try a lower learning rate, gradient clipping, or float64",
            settings=settings,
        )

    def __reduce__(self):  # keyword-only fields: pickled by name
        fields = ("epoch", "loss_value", "learning_rate", "split", "last_good", "settings")
        return _rebuild, (type(self), {name: getattr(self, name) for name in fields})


def _rebuild(cls: type, fields: dict[str, Any]) -> BaseException:
    return cls(**fields)


class UserCodeError(FnnError, ValueError):
    """The caller's own code cannot be used: its file or function cannot be loaded, it
    raised, or it returned something other than what was asked for (e.g. not an fnn
    Layer)."""


class DistributedError(FnnError, RuntimeError):
    """The multi-process runtime could not start (e.g. an unreachable coordinator)."""


class NotFoundError(FnnError, KeyError):
    """A name or path the caller gave names nothing there (a layer path in a trace, a
    function in a source file). A `KeyError` (and so a `LookupError`) whose message reads
    as written, without the quotes a `KeyError` puts around its key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@contextmanager
def renamed_settings(names: Mapping[str, str]) -> Iterator[None]:
    """Renames the `settings` of an `FnnError` leaving the block: `names` maps a callee's
    parameter to the caller's (e.g. `{"csv_path": "csv"}`); names not in it stay."""
    try:
        yield
    except FnnError as error:
        error.settings = tuple(dict.fromkeys(names.get(name, name) for name in error.settings))
        raise

"""A user's CSV file: numeric feature columns and one target column, with the task inferred
from the target (or forced)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fnn.data.raw import DataError, RawData, setting_errors
from fnn.tasks import check_task

MAX_CSV_CLASSES = 20  # an integer-valued CSV target with at most this many values: classes


def read_csv(
    path: str | Path,
    *,
    target_column: str | int = -1,
    task: str | None = None,
) -> RawData:
    """Reads a CSV of numeric features and one target column.

    The first row is a header when none of its cells is a number; otherwise it is data.
    Blank lines are skipped. Every other cell must be a finite number.

    Arguments:
      path: the CSV file.
      target_column: a header name, or an index (negative counts from the end).
      task: None infers it: an integer-valued target with at most `MAX_CSV_CLASSES`
        distinct values is "classification", with labels re-indexed to `0..k-1` in
        increasing order of value (`Dataset.classes` keeps the original values); any
        other target is "regression". "binary" needs a target with exactly two distinct
        values (mapped to 0 and 1 in increasing order) or values all in [0, 1] (kept, as
        soft targets). "classification" needs an integer-valued target.

    Raises:
      DataError: a missing file, a non-numeric cell (with its 1-based line number in the
        file and its column name), a ragged row, an unknown target column, or a target
        that does not fit the task. `settings` is `("path",)` when the file cannot be
        opened and `("target_column",)` when the target column is unknown or does not
        fit the task.
    """
    path = Path(path)
    if task is not None:
        with setting_errors():
            check_task(task)
    try:
        with path.open(newline="") as f:
            rows = [(line, row) for line, row in enumerate(csv.reader(f), start=1) if row]
    except OSError as error:
        raise DataError(f"cannot read CSV file {path}: {error}", settings=("path",)) from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read CSV file {path}: {error}") from None
    if not rows:
        raise DataError(f"CSV file {path} is empty")
    first = [cell.strip() for cell in rows[0][1]]
    has_header = not any(_is_number(cell) for cell in first)
    width = len(first)
    names = first if has_header else [f"column {i}" for i in range(width)]
    data_rows = rows[1:] if has_header else rows
    if not data_rows:
        raise DataError(f"CSV file {path} has a header but no data rows")
    if width < 2:
        raise DataError(f"CSV file {path} needs at least two columns (features and a target)")
    target = _column_index(target_column, names, has_header, path)
    values = np.empty((len(data_rows), width), np.float64)
    for i, (line, row) in enumerate(data_rows):
        if len(row) != width:
            raise DataError(f"{path}, row {line}: {len(row)} cells, expected {width}")
        for j, cell in enumerate(row):
            values[i, j] = _parse_cell(cell, path, line, names[j])
    x = np.delete(values, target, axis=1)
    y = values[:, target]
    return _csv_target(x, y, task, path, names[target])


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _parse_cell(cell: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        shown = repr(cell) if cell.strip() else "an empty cell"
        raise DataError(
            f"{path}, row {line}, column {column!r}: {shown} is not a finite number; "
            "every feature and target cell must be numeric"
        )
    return value


def _column_index(column: str | int, names: Sequence[str], has_header: bool, path: Path) -> int:
    width = len(names)
    if isinstance(column, int | np.integer):
        if not -width <= column < width:
            raise _target_error(
                f"{path}: target column {column} is out of range for {width} columns"
            )
        return int(column) % width
    if isinstance(column, str) and column.lstrip("-").isdigit() and column not in names:
        return _column_index(int(column), names, has_header, path)
    if not has_header:
        raise _target_error(
            f"{path} has no header row, so target column {column!r} must be an index "
            f"(0..{width - 1}, or negative from the end)"
        )
    if column not in names:
        raise _target_error(f"{path}: no column {column!r}; columns: {', '.join(names)}")
    return list(names).index(column)


def _csv_target(x: np.ndarray, y: np.ndarray, task: str | None, path: Path, column: str) -> RawData:
    values = np.unique(y)
    integer = bool(np.all(y == np.round(y)))
    if task is None:
        small = integer and len(values) <= MAX_CSV_CLASSES
        task = "classification" if small and len(values) >= 2 else "regression"
    if task == "regression":
        return RawData(task, x, y.reshape(-1, 1), 1)
    if task == "binary":
        if len(values) == 2:
            classes = tuple(_plain(v) for v in values)
            return RawData(task, x, (y == values[1]).astype(np.float64).reshape(-1, 1), 1, classes)
        if values.min() >= 0 and values.max() <= 1:
            return RawData(task, x, y.reshape(-1, 1), 1)
        raise _target_error(
            f"{path}: a binary target needs two distinct values or values in [0, 1]; "
            f"column {column!r} has {len(values)} values in [{values.min()}, {values.max()}]"
        )
    if not integer:
        raise _target_error(
            f"{path}: a classification target must be integer-valued; column {column!r} is not"
        )
    if len(values) < 2:
        raise _target_error(f"{path}: column {column!r} has a single class; need at least two")
    labels = np.searchsorted(values, y).astype(np.int32)  # value -> index in sorted values
    return RawData(task, x, labels, len(values), tuple(_plain(v) for v in values))


def _target_error(message: str) -> DataError:
    """A target column that is unknown or does not fit the task: choosing another fixes it."""
    return DataError(message, settings=("target_column",))


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)

"""Data sets for training, all local: no network access, ever.

`load_dataset(name, ...)` returns a `Dataset` of numpy arrays, split into train and test
and standardised with statistics of the train split only:

======================  ==============  =====================================================
name                    task            source
======================  ==============  =====================================================
``digits``              classification  scikit-learn's bundled 8×8 digits (10 classes)
``breast_cancer``       binary          scikit-learn's bundled Wisconsin breast cancer
``iris``                classification  scikit-learn's bundled iris (3 classes)
``wine``                classification  scikit-learn's bundled wine (3 classes)
``diabetes``            regression      scikit-learn's bundled diabetes (target standardised)
``tutorial``            binary          the seed tutorial's random data (soft targets)
``mnist``               classification  local IDX files or ``mnist.npz`` in ``data_dir``
``fashion_mnist``       classification  local IDX files or ``fashion_mnist.npz``
``csv``                 inferred        a user's CSV file: numeric features + a target column
======================  ==============  =====================================================

Targets, by task (``n`` examples):

- ``"classification"``: int32 labels of shape ``(n,)`` in ``0..num_classes-1``.
- ``"binary"``: float targets of shape ``(n, 1)`` in ``[0, 1]`` (hard 0/1, or soft).
- ``"regression"``: float targets of shape ``(n, k)``, standardised with the train
  split's mean and standard deviation (`Dataset.target_scale` keeps them). R² is
  unchanged by that affine map, and MSE is in units of the target's standard deviation.

Features have shape ``(n, *feature_shape)`` in the requested float dtype. The split is
deterministic for a given seed and stratified by class for classification and hard binary
targets; MNIST and Fashion-MNIST keep their own 60 000 / 10 000 split.

Every problem a user can cause (unknown name, missing files, a corrupt file, a bad CSV
cell) raises `DataError`, a `ValueError`, with a message that says what to fix.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fnn.core import choose
from fnn.tasks import TASKS

DATASETS: tuple[str, ...] = (
    "digits",
    "breast_cancer",
    "iris",
    "wine",
    "diabetes",
    "tutorial",
    "mnist",
    "fashion_mnist",
    "csv",
)
DTYPES = ("float32", "float64")
MAX_CSV_CLASSES = 20  # an integer-valued CSV target with at most this many values: classes

TUTORIAL_EXAMPLES = 200
TUTORIAL_FEATURES = 100

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(ValueError):
    """A data set cannot be loaded: unknown name, missing or corrupt file, bad CSV cell."""


class Dataset(NamedTuple):
    """A data set split into train and test, as numpy arrays.

    Attributes:
      name: the data set's name, one of `DATASETS`.
      task: "classification", "binary" or "regression".
      x_train: `(n_train, *feature_shape)` floats, standardised with train statistics.
      y_train: `(n_train,)` int32 labels (classification), `(n_train, 1)` floats in
        [0, 1] (binary), or `(n_train, k)` standardised floats (regression).
      x_test: `(n_test, *feature_shape)`, standardised with the train statistics.
      y_test: shaped like `y_train`, with `n_test` rows.
      num_classes: the number of classes (classification); 1 (binary); k (regression).
      feature_shape: the shape of one example, e.g. `(64,)`, or `(28, 28, 1)` unflattened.
      classes: the original label of each class index (classification; binary with hard
        targets), e.g. `(3, 5, 8)` for a CSV whose labels were 3, 5 and 8; `()` otherwise.
      target_scale: `(mean, std)` of the regression target on the train split, each of
        shape `(k,)`: the original target is `y * std + mean`. None for other tasks.
    """

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    feature_shape: tuple[int, ...]
    classes: tuple = ()
    target_scale: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def output_width(self) -> int:
        """The width of the network's last dense layer: classes, 1 (binary) or k."""
        return 1 if self.task == "binary" else self.num_classes

    @property
    def num_train(self) -> int:
        """The number of training examples."""
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        """The number of test examples."""
        return int(self.x_test.shape[0])


# ----------------------------------------------------------------------------- public API


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    csv_path: str | Path | None = None,
    target_column: str | int = -1,
    task: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    dtype: Any = "float32",
    flatten: bool = True,
    standardize_features: bool = True,
) -> Dataset:
    """Loads the data set `name`, split into train and test and standardised.

    Arguments:
      name: one of `DATASETS`.
      data_dir: the directory holding MNIST or Fashion-MNIST files (needed for those two):
        the four IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
        `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, raw or `.gz`) or
        `<name>.npz` with arrays `x_train, y_train, x_test, y_test` (as Keras ships it),
        either directly in `data_dir` or in `data_dir/<name>/`. For "csv", a path to a CSV
        file (not a directory) is accepted here when `csv_path` is None.
      csv_path: the CSV file for "csv" (see `read_csv`).
      target_column: the CSV's target column, a header name or an index (negative counts
        from the end); the other columns are features.
      task: for "csv" only, forces "classification", "binary" or "regression" instead of
        inferring it (see `read_csv`).
      test_fraction: the share of examples held out for testing, in (0, 1). Ignored for
        MNIST and Fashion-MNIST, which have their own test set.
      seed: seeds the split (numpy's `default_rng`) and the tutorial's random data.
      dtype: "float32" or "float64" for features and float targets. float64 arrays only
        stay float64 inside JAX when the caller enabled `jax_enable_x64`.
      flatten: True gives flat features (`(784,)` for MNIST, `(64,)` for digits); False
        keeps images as `(height, width, 1)` (`(28, 28, 1)`, `(8, 8, 1)`). Tabular sets
        are flat either way.
      standardize_features: False keeps the features as loaded (MNIST pixels are still
        scaled to [0, 1]); the tutorial's seed reproduction uses the raw uniform data.

    Returns:
      A `Dataset`. Features are standardised per feature with the train split's mean and
      standard deviation (constant features get std 1), except image sets (MNIST,
      Fashion-MNIST), whose pixels are scaled to [0, 1] and then standardised with one
      mean and one standard deviation over all train pixels, so that pixels that are
      almost always 0 in train do not blow up in test.

    Raises:
      DataError: unknown name, missing or corrupt files, a bad CSV, bad arguments.
    """
    try:
        loader = choose("data set", name, _LOADERS)
    except ValueError as error:
        raise DataError(str(error)) from None
    dtype = _float_dtype(dtype)
    _check_fraction(test_fraction)
    if task is not None and name != "csv":
        raise DataError(f"task= is only for the csv data set; {name!r} is always {_TASK[name]}")
    if name == "csv":
        path = csv_path
        if path is None and data_dir is not None and Path(data_dir).is_file():
            path = data_dir
        if path is None:
            raise DataError(
                "the csv data set needs a file: pass --csv PATH (csv_path=), a CSV file with "
                "numeric feature columns and a target column"
            )
        raw = read_csv(path, target_column=target_column, task=task)
        images = False
    elif name in ("mnist", "fashion_mnist"):
        raw = load_mnist_arrays(name, data_dir)
        images = True
    else:
        raw = loader(seed)
        images = False
    return _finish(name, raw, test_fraction, seed, dtype, flatten, standardize_features, images)


def train_test_split(
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_fraction: float,
    seed: int,
    stratify: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Splits `(x, y)` into train and test, deterministically for a given `seed`.

    Arguments:
      x: `(n, ...)` features.
      y: `(n, ...)` targets; with `stratify`, `y` holds class labels (any values, one per
        example, shape `(n,)` or `(n, 1)`).
      test_fraction: the share held out, in (0, 1); the test set has
        `round(test_fraction * n)` examples, at least 1, and the train set at least 1.
      seed: seeds numpy's `default_rng`; the same seed gives the same split.
      stratify: keep each class's share equal in train and test (up to rounding: class
        quotas are allotted by largest remainder so that they sum to the test size).

    Returns:
      `(x_train, x_test, y_train, y_test)`, each split along axis 0; both splits are in a
      shuffled order.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    n = x.shape[0]
    if y.shape[0] != n:
        raise DataError(f"x has {n} examples but y has {y.shape[0]}")
    _check_fraction(test_fraction)
    if n < 2:
        raise DataError(f"cannot split {n} example(s) into train and test; need at least 2")
    n_test = min(max(int(round(test_fraction * n)), 1), n - 1)
    rng = np.random.default_rng(seed)
    if stratify:
        test_index = _stratified_test_index(y.reshape(n, -1)[:, 0], n_test, rng)
    else:
        test_index = rng.permutation(n)[:n_test]
    is_test = np.zeros(n, dtype=bool)
    is_test[test_index] = True
    train_index = rng.permutation(np.flatnonzero(~is_test))
    test_index = rng.permutation(np.flatnonzero(is_test))
    return x[train_index], x[test_index], y[train_index], y[test_index]


def standardize(
    x_train: np.ndarray, x_test: np.ndarray, *, per_feature: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardises both splits with the mean and standard deviation of `x_train` only.

    Arguments:
      x_train: `(n_train, *feature_shape)` floats.
      x_test: `(n_test, *feature_shape)` floats.
      per_feature: True takes statistics per feature (over axis 0); False takes one mean
        and one standard deviation over every element of `x_train` (for images).

    Returns:
      `(x_train, x_test, mean, std)` with `mean` and `std` of shape `feature_shape`
      (`per_feature`) or `()`, in the dtype of `x_train`. Statistics are computed in
      float64. A constant feature (max == min on train) gets std 1, so it maps to 0 in
      train and never divides by zero.
    """
    x_train = np.asarray(x_train)
    x_test = np.asarray(x_test)
    dtype = x_train.dtype
    x64 = x_train.astype(np.float64)
    axis = 0 if per_feature else None
    if x64.shape[0] == 0:
        raise DataError("cannot standardise an empty train split")
    mean = x64.mean(axis=axis)
    std = x64.std(axis=axis)
    constant = np.ptp(x64, axis=axis) == 0
    std = np.where(constant, 1.0, std)
    train = ((x64 - mean) / std).astype(dtype)
    test = ((x_test.astype(np.float64) - mean) / std).astype(dtype)
    return train, test, np.asarray(mean, dtype), np.asarray(std, dtype)


def batches_per_epoch(num_examples: int, batch_size: int) -> int:
    """The number of full minibatches in one epoch, `num_examples // batch_size`.

    An epoch drops the last partial batch (a `lax.scan` needs batches of one shape); a
    reshuffle each epoch means every example is still seen. Raises a DataError when
    `batch_size` is not in `1..num_examples`, saying how many examples there are.
    """
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise DataError(f"batch size must be a positive integer, got {batch_size!r}")
    if batch_size > num_examples:
        raise DataError(
            f"batch size {batch_size} is larger than the {num_examples} training examples; "
            f"use a batch size of at most {num_examples}"
        )
    return int(num_examples) // int(batch_size)


def class_proportions(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The share of each class in `labels` (int, shape `(n,)`): float64 `(num_classes,)`."""
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=num_classes)
    return counts / max(counts.sum(), 1)


# ----------------------------------------------------------------------------- raw loaders


class RawData(NamedTuple):
    """A data set before splitting and scaling.

    `x`: `(n, *feature_shape)` floats; `y`: `(n,)` int labels (classification) or
    `(n, k)` floats. `x_test`/`y_test` are None unless the set has its own test split.
    """

    task: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    classes: tuple = ()
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


def _sklearn(loader_name: str, task: str) -> Callable[[int], RawData]:
    """A loader for one of scikit-learn's bundled data sets (read from its package)."""

    def load(seed: int) -> RawData:
        del seed  # bundled sets are fixed; the seed only drives the split
        from sklearn import datasets

        x, y = getattr(datasets, loader_name)(return_X_y=True)
        x = np.asarray(x, np.float64)
        if task == "regression":
            return RawData(task, x, np.asarray(y, np.float64).reshape(len(y), -1), 1)
        labels = np.asarray(y, np.int64)
        classes = tuple(int(c) for c in np.unique(labels))
        if task == "binary":
            return RawData(task, x, labels.astype(np.float64).reshape(-1, 1), 1, classes)
        return RawData(task, x, labels.astype(np.int32), len(classes), classes)

    return load


def tutorial_data(seed: int = 0) -> RawData:
    """The seed tutorial's random data: 200 examples of 100 features, soft binary targets.

    `x = rng.uniform(0, 1, (200, 100))`, then `y = rng.uniform(0, 1, (200, 1))`, from
    `numpy.random.default_rng(seed)` (the tutorial's `X` of shape `(100, 200)`, samples as
    columns, transposed to fnn's batch-first layout). There is nothing to learn beyond
    fitting noise: it reproduces the tutorial's network and loss curve, not accuracy.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(TUTORIAL_EXAMPLES, TUTORIAL_FEATURES))
    y = rng.uniform(0.0, 1.0, size=(TUTORIAL_EXAMPLES, 1))
    return RawData("binary", x, y, 1)


# ----------------------------------------------------------------------------- MNIST


def read_idx(path: str | Path) -> np.ndarray:
    """Reads one IDX file (raw, or gzip when the name ends in `.gz`) into a numpy array.

    The IDX format: two zero bytes, a type byte (0x08 = unsigned byte, ...), the number of
    dimensions, then each dimension as a big-endian int32, then the data, row-major.

    Raises:
      DataError: naming the file, when it is not IDX, is truncated, or has extra bytes.
    """
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read IDX file {path}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); "
            "expected 0000 followed by a type byte and the number of dimensions"
        )
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header needs {header} bytes, has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{path} is {what}: shape {shape} needs {expected} bytes, the file has {len(raw)}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def mnist_candidates(name: str, data_dir: Path) -> list[Path]:
    """Every file `load_mnist_arrays` looks for, in the order it looks."""
    paths = []
    for folder in (data_dir, data_dir / name):
        paths.append(folder / f"{name}.npz")
        for stem in IDX_FILES.values():
            paths += [folder / stem, folder / f"{stem}.gz"]
    return paths


def load_mnist_arrays(name: str, data_dir: str | Path | None) -> RawData:
    """Reads MNIST or Fashion-MNIST from `data_dir`, with its own train/test split.

    Looks in `data_dir`, then in `data_dir/<name>/`, for `<name>.npz` first and then the
    four IDX files (each raw or `.gz`). The IDX file names are the same for both sets:
    the files found are taken to be the set asked for.

    Returns:
      RawData with `x` of shape `(n, 28, 28)` scaled to [0, 1] and int32 labels.
    """
    if data_dir is None:
        raise DataError(
            f"the {name} data set is read from local files: pass --data-dir DIR (data_dir=) "
            f"with {name}.npz or the four IDX files ({', '.join(IDX_FILES.values())}, raw "
            "or .gz); fnn never downloads"
        )
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist or is not a directory")
    arrays = None
    for folder in (data_dir, data_dir / name):
        npz = folder / f"{name}.npz"
        if npz.is_file():
            arrays = _read_mnist_npz(npz)
            break
        found = {key: _first_file(folder, stem) for key, stem in IDX_FILES.items()}
        if all(found.values()):
            arrays = {key: read_idx(path) for key, path in found.items()}
            for key in ("x_train", "x_test"):
                arrays[key] = _check_images(arrays[key], found[key])
            break
        if any(found.values()):
            missing = [
                f"{stem} (or {stem}.gz)" for key, stem in IDX_FILES.items() if not found[key]
            ]
            raise DataError(f"{name}: {folder} holds some IDX files but not: {', '.join(missing)}")
    if arrays is None:
        looked = "\n  ".join(str(p) for p in mnist_candidates(name, data_dir))
        raise DataError(f"{name}: no data files found in {data_dir}; looked for:\n  {looked}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.shape[0] != y.reshape(-1).shape[0]:
            raise DataError(f"{name}: {x.shape[0]} {split} images but {y.size} {split} labels")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{name}: {split} labels must be in 0..9, found {y.min()}..{y.max()}")
    return RawData(
        "classification",
        arrays["x_train"].astype(np.float64) / 255.0,
        arrays["y_train"].reshape(-1).astype(np.int32),
        10,
        tuple(range(10)),
        arrays["x_test"].astype(np.float64) / 255.0,
        arrays["y_test"].reshape(-1).astype(np.int32),
    )


def _first_file(folder: Path, stem: str) -> Path | None:
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _read_mnist_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [key for key in NPZ_KEYS if key not in z.files]
            if missing:
                raise DataError(
                    f"{path} lacks arrays {missing}; it needs {', '.join(NPZ_KEYS)} "
                    f"(found {', '.join(z.files) or 'none'})"
                )
            arrays = {key: np.asarray(z[key]) for key in NPZ_KEYS}
    except DataError:
        raise
    except Exception as error:  # zipfile.BadZipFile, OSError, ValueError, EOFError ...
        raise DataError(f"cannot read {path}: {type(error).__name__}: {error}") from None
    for key in ("x_train", "x_test"):
        arrays[key] = _check_images(arrays[key], path)
    return arrays


def _check_images(x: np.ndarray, path: Path) -> np.ndarray:
    """Accepts `(n, 28, 28)` or `(n, 28, 28, 1)` pixel arrays in 0..255; returns 3-D."""
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"{path}: expected images of shape (n, 28, 28), got {x.shape}")
    return x


# ----------------------------------------------------------------------------- CSV


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
        that does not fit the task.
    """
    path = Path(path)
    if task is not None:
        try:
            choose("task", task, dict.fromkeys(TASKS))
        except ValueError as error:
            raise DataError(str(error)) from None
    try:
        with path.open(newline="") as f:
            rows = [(line, row) for line, row in enumerate(csv.reader(f), start=1) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
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
            raise DataError(f"{path}: target column {column} is out of range for {width} columns")
        return int(column) % width
    if isinstance(column, str) and column.lstrip("-").isdigit() and column not in names:
        return _column_index(int(column), names, has_header, path)
    if not has_header:
        raise DataError(
            f"{path} has no header row, so target column {column!r} must be an index "
            f"(0..{width - 1}, or negative from the end)"
        )
    if column not in names:
        raise DataError(f"{path}: no column {column!r}; columns: {', '.join(names)}")
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
        raise DataError(
            f"{path}: a binary target needs two distinct values or values in [0, 1]; "
            f"column {column!r} has {len(values)} values in [{values.min()}, {values.max()}]"
        )
    if not integer:
        raise DataError(
            f"{path}: a classification target must be integer-valued; column {column!r} is not"
        )
    if len(values) < 2:
        raise DataError(f"{path}: column {column!r} has a single class; need at least two")
    labels = np.searchsorted(values, y).astype(np.int32)  # value -> index in sorted values
    return RawData(task, x, labels, len(values), tuple(_plain(v) for v in values))


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


# ----------------------------------------------------------------------------- assembly


_LOADERS: dict[str, Callable[[int], RawData] | None] = {
    "digits": _sklearn("load_digits", "classification"),
    "breast_cancer": _sklearn("load_breast_cancer", "binary"),
    "iris": _sklearn("load_iris", "classification"),
    "wine": _sklearn("load_wine", "classification"),
    "diabetes": _sklearn("load_diabetes", "regression"),
    "tutorial": tutorial_data,
    "mnist": None,
    "fashion_mnist": None,
    "csv": None,
}
_TASK = {
    "digits": "classification",
    "breast_cancer": "binary",
    "iris": "classification",
    "wine": "classification",
    "diabetes": "regression",
    "tutorial": "binary",
    "mnist": "classification",
    "fashion_mnist": "classification",
}
_IMAGE_SHAPES = {"digits": (8, 8, 1), "mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1)}


def _finish(
    name: str,
    raw: RawData,
    test_fraction: float,
    seed: int,
    dtype: np.dtype,
    flatten: bool,
    standardize_features: bool,
    images: bool,
) -> Dataset:
    """Splits (unless the set has its own test split), standardises, casts, reshapes."""
    if raw.x_test is None:
        hard = raw.task == "classification" or (
            raw.task == "binary" and bool(np.all((raw.y == 0) | (raw.y == 1)))
        )
        x_train, x_test, y_train, y_test = train_test_split(
            raw.x, raw.y, test_fraction=test_fraction, seed=seed, stratify=hard
        )
    else:
        x_train, x_test, y_train, y_test = raw.x, raw.x_test, raw.y, raw.y_test
    n_train, n_test = x_train.shape[0], x_test.shape[0]
    x_train = x_train.reshape(n_train, -1)
    x_test = x_test.reshape(n_test, -1)
    if standardize_features:
        x_train, x_test, _, _ = standardize(x_train, x_test, per_feature=not images)
    target_scale = None
    if raw.task == "regression":
        y_train, y_test, mean, std = standardize(y_train, y_test)
        target_scale = (mean.astype(dtype), std.astype(dtype))
    if raw.task != "classification":
        y_train, y_test = y_train.astype(dtype), y_test.astype(dtype)
    feature_shape = (x_train.shape[1],)
    if not flatten and name in _IMAGE_SHAPES:
        feature_shape = _IMAGE_SHAPES[name]
    return Dataset(
        name=name,
        task=raw.task,
        x_train=np.ascontiguousarray(x_train.reshape(n_train, *feature_shape), dtype),
        y_train=y_train,
        x_test=np.ascontiguousarray(x_test.reshape(n_test, *feature_shape), dtype),
        y_test=y_test,
        num_classes=raw.num_classes,
        feature_shape=feature_shape,
        classes=raw.classes,
        target_scale=target_scale,
    )


def _stratified_test_index(labels: np.ndarray, n_test: int, rng: np.random.Generator) -> np.ndarray:
    """Picks `n_test` indices so each class's share of the test set matches its share."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = counts * (n_test / labels.shape[0])
    quota = np.floor(exact).astype(np.int64)
    remainder = exact - quota
    order = np.argsort(-remainder, kind="stable")  # largest remainder first, ties by class
    quota[order[: n_test - quota.sum()]] += 1
    picked = [
        rng.permutation(np.flatnonzero(inverse == c))[: quota[c]] for c in range(len(classes))
    ]
    return np.concatenate(picked)


def _float_dtype(dtype: Any) -> np.dtype:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise DataError(f"unknown dtype {dtype!r}; valid dtypes: {', '.join(DTYPES)}")
    return np.dtype(name)


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")

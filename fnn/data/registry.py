"""The data sets by name: `Dataset`, the table of sources behind `DATASETS`, and
`load_dataset`, which loads one, splits it and standardises it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fnn.core import choose
from fnn.data.bundled import sklearn_data, tutorial_data
from fnn.data.mnist import load_mnist_arrays
from fnn.data.raw import DataError, RawData, check_test_fraction, float_dtype, setting_errors
from fnn.data.split import standardize, train_test_split
from fnn.data.tabular import read_csv
from fnn.data.text import VOCAB, text_windows
from fnn.errors import renamed_settings


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


class _Request(NamedTuple):
    """The arguments of `load_dataset` that a source may read."""

    seed: int
    data_dir: str | Path | None
    csv_path: str | Path | None
    target_column: str | int
    task: str | None


class _Source(NamedTuple):
    """How one data set is loaded.

    `task`: the set's task, None when it is inferred from the file (csv). `load`: the raw
    data for a request. `image_shape`: one example's shape when not flattened (None: flat
    either way). `pixels`: standardise with one mean and one std over all train pixels
    instead of per feature.
    """

    task: str | None
    load: Callable[[_Request], RawData]
    image_shape: tuple[int, ...] | None = None
    pixels: bool = False


def _bundled(loader_name: str, task: str, image_shape: tuple[int, ...] | None = None) -> _Source:
    """A source for scikit-learn's bundled set behind `sklearn.datasets.<loader_name>`. Its
    data are fixed: the seed only drives the split."""
    return _Source(task, lambda request: sklearn_data(loader_name, task), image_shape)


def _mnist(name: str) -> _Source:
    return _Source(
        "classification",
        lambda request: load_mnist_arrays(name, request.data_dir),
        image_shape=(28, 28, 1),
        pixels=True,
    )


def _csv(request: _Request) -> RawData:
    """The csv set: `csv_path`, or `data_dir` when that names a file."""
    path = request.csv_path
    if path is None and request.data_dir is not None and Path(request.data_dir).is_file():
        path = request.data_dir
    if path is None:
        raise DataError(
            "the csv data set needs a file: set csv_path= to a CSV file with numeric feature "
            "columns and a target column",
            settings=("csv_path",),
        )
    given = "csv_path" if request.csv_path is not None else "data_dir"
    with renamed_settings({"path": given}):
        return read_csv(path, target_column=request.target_column, task=request.task)


_SOURCES: dict[str, _Source] = {
    "digits": _bundled("load_digits", "classification", image_shape=(8, 8, 1)),
    "breast_cancer": _bundled("load_breast_cancer", "binary"),
    "iris": _bundled("load_iris", "classification"),
    "wine": _bundled("load_wine", "classification"),
    "diabetes": _bundled("load_diabetes", "regression"),
    "tutorial": _Source("binary", lambda request: tutorial_data(request.seed)),
    "mnist": _mnist("mnist"),
    "fashion_mnist": _mnist("fashion_mnist"),
    "csv": _Source(None, _csv),
}
TEXT = "text"  # a local text file's bytes, for language models (`fnn.data.text`)
DATASETS: tuple[str, ...] = (*_SOURCES, TEXT)
IMAGE_DATASETS: tuple[str, ...] = tuple(n for n, s in _SOURCES.items() if s.image_shape)


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
    text_path: str | Path | None = None,
    context: int = 128,
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
      text_path, context: for "text" only: the text file and the window length `T`
        (`fnn.data.text`: byte ids, split by position, `test_fraction` at the end).

    Returns:
      A `Dataset`. Features are standardised per feature with the train split's mean and
      standard deviation (constant features get std 1), except image sets (MNIST,
      Fashion-MNIST), whose pixels are scaled to [0, 1] and then standardised with one
      mean and one standard deviation over all train pixels, so that pixels that are
      almost always 0 in train do not blow up in test.

    Raises:
      DataError: unknown name, missing or corrupt files, a bad CSV, bad arguments. Its
        `settings` names the arguments above that fix a bad or missing setting (e.g.
        `("name",)`, `("data_dir",)`, `("csv_path",)`), and is empty for a corrupt file.
    """
    if name == TEXT:
        if text_path is None:
            raise DataError("the text data set needs a file: set text= to a local text file",
                            settings=("text_path",))  # fmt: skip
        with renamed_settings({"path": "text_path"}):
            splits = text_windows(text_path, context=context, test_fraction=test_fraction,
                                  seed=seed)  # fmt: skip
        return Dataset(TEXT, "language_model", *splits, num_classes=VOCAB,
                       feature_shape=(context,))  # fmt: skip
    with setting_errors("name"):
        source = choose("data set", name, dict.fromkeys(DATASETS) | _SOURCES)
    dtype = float_dtype(dtype)
    check_test_fraction(test_fraction)
    if task is not None and source.task is not None:
        raise DataError(
            f"task= is only for the csv data set; {name!r} is always {source.task}",
            settings=("task",),
        )
    raw = source.load(_Request(seed, data_dir, csv_path, target_column, task))
    return _finish(name, source, raw, test_fraction, seed, dtype, flatten, standardize_features)


def _finish(
    name: str,
    source: _Source,
    raw: RawData,
    test_fraction: float,
    seed: int,
    dtype: np.dtype,
    flatten: bool,
    standardize_features: bool,
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
        assert raw.y_test is not None  # a set's own test split has its targets
        x_train, x_test, y_train, y_test = raw.x, raw.x_test, raw.y, raw.y_test
    n_train, n_test = x_train.shape[0], x_test.shape[0]
    x_train = x_train.reshape(n_train, -1)
    x_test = x_test.reshape(n_test, -1)
    if standardize_features:
        x_train, x_test, _, _ = standardize(x_train, x_test, per_feature=not source.pixels)
    target_scale = None
    if raw.task == "regression":
        y_train, y_test, mean, std = standardize(y_train, y_test)
        target_scale = (mean.astype(dtype), std.astype(dtype))
    if raw.task != "classification":
        y_train, y_test = y_train.astype(dtype), y_test.astype(dtype)
    feature_shape: tuple[int, ...] = (x_train.shape[1],)
    if not flatten and source.image_shape is not None:
        feature_shape = source.image_shape
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

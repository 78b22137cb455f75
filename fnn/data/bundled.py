"""Data sets that need no file: scikit-learn's bundled sets and the seed tutorial's random
data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from fnn.data.raw import RawData

TUTORIAL_EXAMPLES = 200
TUTORIAL_FEATURES = 100


# scikit-learn's bundled sets as files in its package (sklearn/datasets/data): read with
# numpy exactly as scikit-learn's loaders read them, without importing scikit-learn (about
# 2.5 s of scipy and friends on a 2-core CPU, paid by every `fnn train` otherwise).
# `(file, header)`: a header line "n_samples,n_features,names..." precedes the rows.
_FILES = {
    "load_digits": ("digits.csv.gz", False),
    "load_breast_cancer": ("breast_cancer.csv", True),
    "load_iris": ("iris.csv", True),
    "load_wine": ("wine_data.csv", True),
}


def _sklearn_files() -> Path | None:
    """scikit-learn's bundled data directory, found without importing the package."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def _read_bundled(loader_name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """`(x, y)` of a bundled set read from its files as its loader reads them (the same
    float64 values), or None where the files are not where they used to be."""
    folder = _sklearn_files()
    if folder is None:
        return None
    if loader_name == "load_diabetes":
        data, target = folder / "diabetes_data_raw.csv.gz", folder / "diabetes_target.csv.gz"
        if not (data.exists() and target.exists()):
            return None
        x = np.loadtxt(data)
        # load_diabetes(scaled=True): each feature centred, divided by its std (both of
        # the raw values), then by √n; in sklearn.preprocessing.scale's order
        mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
        x -= mean
        x /= std
        x /= x.shape[0] ** 0.5
        return x, np.loadtxt(target)
    name, header = _FILES[loader_name]
    path = folder / name
    if not path.exists():
        return None
    table = np.loadtxt(path, delimiter=",", skiprows=1 if header else 0)
    return table[:, :-1], table[:, -1].astype(np.int64)


def sklearn_data(loader_name: str, task: str) -> RawData:
    """One of scikit-learn's bundled data sets, read from its package by the name of its
    loader (e.g. "load_digits"), with targets shaped for `task`: int32 labels
    (classification), `(n, 1)` 0/1 floats (binary) or `(n, k)` floats (regression)."""
    read = _read_bundled(loader_name)
    if read is None:  # another layout of scikit-learn's package: ask its loader
        from sklearn import datasets

        read = getattr(datasets, loader_name)(return_X_y=True)
    x, y = read
    x = np.asarray(x, np.float64)
    if task == "regression":
        return RawData(task, x, np.asarray(y, np.float64).reshape(len(y), -1), 1)
    labels = np.asarray(y, np.int64)
    classes = tuple(int(c) for c in np.unique(labels))
    if task == "binary":
        return RawData(task, x, labels.astype(np.float64).reshape(-1, 1), 1, classes)
    return RawData(task, x, labels.astype(np.int32), len(classes), classes)


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

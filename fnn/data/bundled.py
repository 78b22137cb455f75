"""Data sets that need no file: scikit-learn's bundled sets and the seed tutorial's random
data."""

from __future__ import annotations

import numpy as np

from fnn.data.raw import RawData

TUTORIAL_EXAMPLES = 200
TUTORIAL_FEATURES = 100


def sklearn_data(loader_name: str, task: str) -> RawData:
    """One of scikit-learn's bundled data sets, read from its package by the name of its
    loader (e.g. "load_digits"), with targets shaped for `task`: int32 labels
    (classification), `(n, 1)` 0/1 floats (binary) or `(n, k)` floats (regression)."""
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

"""Splitting and scaling: the deterministic (stratified) train/test split, standardisation
with train statistics only, and class shares."""

from __future__ import annotations

import numpy as np

from fnn.data.raw import DataError, check_test_fraction


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
    check_test_fraction(test_fraction)
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


def class_proportions(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The share of each class in `labels` (int, shape `(n,)`): float64 `(num_classes,)`."""
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=num_classes)
    return counts / max(counts.sum(), 1)

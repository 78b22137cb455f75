"""What every loader shares: `DataError`, `RawData` (a data set before splitting and
scaling), and the checks of the settings that more than one module reads (dtype, test
fraction, a name looked up in a table)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

from fnn.errors import DataError  # defined there; importable from here as before

# The dtypes a data set's features are loaded in (a run's `dtype`): the float widths
# training runs in. The checker's dtypes (`fnn.check.DTYPES`) are its tolerance table's
# keys, and `fnn bench` adds bfloat16: other meanings, defined there.
DTYPES = ("float32", "float64")


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


@contextmanager
def setting_errors(*settings: str) -> Iterator[None]:
    """Re-raises a ValueError from the block (e.g. `fnn.core.choose`'s "unknown ...; valid
    ...") as a DataError with the same message, naming `settings`."""
    try:
        yield
    except DataError:
        raise
    except ValueError as error:
        raise DataError(str(error), settings=settings) from None


def float_dtype(dtype: Any) -> np.dtype:
    """`dtype` as a numpy dtype when it is one of `DTYPES` (a name or a dtype), else a
    DataError listing them."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise DataError(
            f"unknown dtype {dtype!r}; valid dtypes: {', '.join(DTYPES)}", settings=("dtype",)
        )
    return np.dtype(name)


def check_test_fraction(test_fraction: float) -> None:
    """A DataError unless `test_fraction` lies strictly between 0 and 1."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise DataError(
            f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}",
            settings=("test_fraction",),
        )

"""A text file as a language-modelling data set: its bytes are the tokens (vocab 256).

The file is read as raw bytes, so any text (any encoding) and any language works, and one
token is one byte: a loss of `ℓ` nats per token is `ℓ/ln 2` bits per byte, the figure
compression and language-model papers report for byte-level models.

The split is by position, never shuffled across it: the first `1 − test_fraction` of the
bytes train, the rest validate, so no validation text is seen in training (windows cut
from a shuffled file would overlap). From the train part `n = ⌊len/T⌋` windows of
`T + 1` bytes start at offsets drawn uniformly with the seed (one pass's worth of tokens,
at random places, so that windows do not always start at the same phase); from the
validation part, consecutive windows. Example `i` is `x = window[:T]`, `y = window[1:]`:
the model sees `T` bytes and is scored on predicting each next one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fnn.data.raw import DataError, check_test_fraction

VOCAB = 256  # one token per byte


def read_text(path: str | Path) -> np.ndarray:
    """The bytes of the file at `path` as uint8 ids; a DataError (naming `path`) for a
    missing, unreadable or empty file."""
    path = Path(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not found"
        raise DataError(f"text file {str(path)!r}: {what}; expected a text file",
                        settings=("path",))  # fmt: skip
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"text file {str(path)!r} cannot be read: {error.strerror}",
                        settings=("path",)) from None  # fmt: skip
    if not data:
        raise DataError(f"text file {str(path)!r} is empty; expected some text",
                        settings=("path",))  # fmt: skip
    return np.frombuffer(data, dtype=np.uint8)


def _windows(ids: np.ndarray, starts: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """`x[i] = ids[s_i : s_i + T]`, `y[i] = ids[s_i + 1 : s_i + T + 1]`, as int32."""
    index = starts[:, None] + np.arange(context + 1)[None, :]
    windows = ids[index].astype(np.int32)
    return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])


Splits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def text_windows(
    path: str | Path, *, context: int, test_fraction: float = 0.1, seed: int = 0
) -> Splits:
    """The bytes of the text file at `path` cut into windows: `(x_train, y_train, x_test,
    y_test)`; `fnn.data.load_dataset("text", ...)` makes them a Dataset.

    Arguments:
      path: any local file (read as bytes).
      context: `T`, the tokens a window shows the model.
      test_fraction: the share of the file (its end) held out for validation.
      seed: draws the train windows' offsets.

    Returns:
      `x_train, y_train: (n_train, T)` int32 ids and `x_test, y_test: (n_test, T)`.

    Raises:
      DataError: a missing or empty file, a context below 1, or a file too short to give
        each split one window of `T + 1` bytes (the message says how long it must be).
    """
    if not isinstance(context, int) or context < 1:
        raise DataError(f"context must be a positive int, got {context!r}",
                        settings=("context",))  # fmt: skip
    check_test_fraction(test_fraction)
    ids = read_text(path)
    n_train = int(round(len(ids) * (1 - test_fraction)))
    train, test = ids[:n_train], ids[n_train:]
    needed = int(np.ceil((context + 1) / min(1 - test_fraction, test_fraction)))
    if min(len(train), len(test)) < context + 1:
        raise DataError(
            f"text file {str(path)!r} has {len(ids)} bytes: too short for windows of "
            f"context {context} + 1 bytes in both splits (test_fraction {test_fraction}); "
            f"expected at least {needed} bytes, or a shorter context",
            settings=("path", "context"),
        )
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(train) - context, size=max(len(train) // context, 1))
    x_train, y_train = _windows(train, starts, context)
    x_test, y_test = _windows(test, np.arange(0, len(test) - context, context), context)
    return x_train, y_train, x_test, y_test

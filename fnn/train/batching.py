"""How an epoch cuts the training data into batches: the one rule every path follows.

Epoch e shuffles the n examples with `jax.random.permutation(fold_in(key, e), n)` and
cuts the order into `n // batch_size` batches; the `n mod batch_size` examples left over
sit out that epoch (a different few each epoch), so every step has the same shape. The
one-device epoch and the data-parallel one both call `epoch_order`, so they see the same
batches.
"""

from __future__ import annotations

import jax
import numpy as np

from fnn.core import Array, PRNGKey, SettingError


def check_batch_size(batch_size: int, n: int) -> int:
    """`batch_size` as an int, or a SettingError when it is not a positive int or is
    larger than the `n` training examples."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise SettingError(
            f"batch size must be a positive int, got {batch_size!r}", settings=("batch_size",)
        )
    if batch_size < 1:
        raise SettingError(
            f"batch size must be a positive int, got {batch_size}", settings=("batch_size",)
        )
    if batch_size > n:
        raise SettingError(
            f"batch size {batch_size} is larger than the {n} training examples; "
            f"use a batch size of at most {n}",
            settings=("batch_size",),
        )
    return int(batch_size)


def epoch_order(key: PRNGKey, epoch: Array, n: int, batch_size: int) -> Array:
    """The example indices of each step of an epoch, `(n // batch_size, batch_size)`: a
    permutation by `fold_in(key, epoch)`, the last `n % batch_size` dropped."""
    order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    n_batches = n // batch_size
    return order[: n_batches * batch_size].reshape(n_batches, batch_size)

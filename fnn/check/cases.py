"""What an item of the check catalogue (`fnn.check.CASES`) holds and how it runs: a
`LayerCase` is checked with `check_layer`, a `LossCase` with `check_loss` on inputs it
draws, a `ModelCase` with `check_model` (manual against autodiff on data).

Two fields say how the test battery treats an item. `network=True` marks a whole network:
its layers are each an item too, so the battery checks the network against `jax.vjp` alone
and leaves finite differences to its layers. `variant_of="dense"` marks a variant: the
layer or loss of the item named, with other settings (no bias, a stride, a padding,
another input rank or target encoding), which the battery checks in its slow tier only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from fnn.check.checker import CheckResult, check_layer, check_loss, check_model
from fnn.core import Ctx, Layer, Loss


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """A layer checked by `check_layer` on `batch` inputs of shape `in_shape`."""

    build: Callable[[], Layer]
    in_shape: tuple[int, ...]
    batch: int = 4
    input_scale: float = 2.0
    make_input: Callable[[jax.Array, tuple[int, ...], Any], jax.Array] | None = None
    ctx: Ctx | Callable[[Any], Ctx] | None = None
    network: bool = False
    variant_of: str | None = None

    def run(self, dtype: str, finite_differences: bool = True) -> CheckResult:
        return check_layer(
            self.build(),
            self.in_shape,
            batch=self.batch,
            dtype=dtype,
            input_scale=self.input_scale,
            finite_differences=finite_differences,
            make_input=self.make_input,
            ctx=self.ctx,
        )


@dataclasses.dataclass(frozen=True)
class LossCase:
    """A loss checked by `check_loss` on `(pred, target)` from `inputs(rng)`; `pred` an
    array or a pytree of arrays (a `HeadInput`)."""

    build: Callable[[], Loss]
    inputs: Callable[[np.random.Generator], tuple[Any, np.ndarray]]
    network: bool = False
    variant_of: str | None = None

    def run(self, dtype: str, finite_differences: bool = True) -> CheckResult:
        pred, target = self.inputs(np.random.default_rng(0))
        return check_loss(
            self.build(), pred, target, dtype=dtype, finite_differences=finite_differences
        )


@dataclasses.dataclass(frozen=True)
class ModelCase:
    """A network and loss checked by `check_model`, manual against autodiff, on data."""

    build: Callable[[], Layer]
    loss: Callable[[], Loss]
    data: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]
    network: bool = True
    variant_of: str | None = None

    def run(self, dtype: str, finite_differences: bool = True) -> CheckResult:
        del finite_differences  # the whole-model check compares the two gradient modes
        x, y = self.data(np.random.default_rng(0))
        return check_model(self.build(), self.loss(), x, y, dtype=dtype)


Case = LayerCase | LossCase | ModelCase

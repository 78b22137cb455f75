"""What a data set asks of a network: its task, the losses that fit it, how it is scored.

- "classification": int labels `(n,)` in `0..classes-1`; softmax_cross_entropy; accuracy.
- "binary": floats `(n, 1)` in [0, 1], hard or soft; sigmoid_binary_cross_entropy (or
  binary_cross_entropy on probabilities); accuracy.
- "regression": floats `(n, k)`; mean_squared_error; R² (scikit-learn's `r2_score`).
- "language_model": int next-token ids `(n, T)`; lm_cross_entropy (the fused head) or
  softmax_cross_entropy; bits per byte (the loss in nats over ln 2: one token, one byte).

Each line: targets; default loss; metric. One definition for the data sets (`fnn.data`),
training (`fnn.train`) and runs (`fnn.experiment`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fnn.core import Loss, choose

TASKS = ("classification", "binary", "regression", "language_model")
DEFAULT_LOSS = {
    "classification": "softmax_cross_entropy",
    "binary": "sigmoid_binary_cross_entropy",
    "regression": "mean_squared_error",
    "language_model": "lm_cross_entropy",
}
LOSSES_FOR_TASK = {
    "classification": ("softmax_cross_entropy",),
    "binary": ("sigmoid_binary_cross_entropy", "binary_cross_entropy", "mean_squared_error"),
    "regression": ("mean_squared_error", "mse", "huber"),
    "language_model": ("lm_cross_entropy", "softmax_cross_entropy"),
}
METRIC_LABELS = {"accuracy": "accuracy", "r2": "R²", "bits_per_byte": "bits per byte"}
METRICS = {
    "classification": "accuracy",
    "binary": "accuracy",
    "regression": "r2",
    "language_model": "bits_per_byte",
}


def check_task(task: str) -> str:
    """`task` itself, or a ValueError listing the tasks."""
    choose("task", task, dict.fromkeys(TASKS))
    return task


# A binary loss's threshold: a prediction above it is the positive label, by what the
# loss says its predictions are (`Loss.predicts`).
BINARY_THRESHOLDS: dict[str | None, float] = {"binary_logits": 0.0, "binary_probabilities": 0.5}


def infer_task(y: Any, loss: Loss) -> str:
    """The task of targets `y`: integer labels are "classification"; floating targets are
    "binary" under a loss that predicts binary logits or probabilities (the binary
    cross-entropies) and "regression" otherwise."""
    dtype = y.dtype if hasattr(y, "dtype") else np.asarray(y).dtype
    if np.issubdtype(dtype, np.integer):
        return "classification"
    return "binary" if loss.predicts in BINARY_THRESHOLDS else "regression"


def binary_threshold(loss: Loss) -> float:
    """The value above which `loss`'s prediction is the positive label: 0.5 for a loss on
    probabilities (`binary_cross_entropy`), 0 for one on logits and for any other loss
    trained on binary targets (`mean_squared_error` on 0/1 targets included)."""
    return BINARY_THRESHOLDS.get(loss.predicts, 0.0)


def metric_name(task: str) -> str:
    """The per-task quality metric: "accuracy" (classification, binary), "r2" or
    "bits_per_byte" (language_model; lower is better)."""
    return METRICS[check_task(task)]

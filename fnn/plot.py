"""Plots of training runs: loss and accuracy (or R²) curves, learning-rate sweeps.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot, no global state,
no display needed) and written to a file; each function returns the path it wrote.
matplotlib is imported when the first figure is drawn, not with fnn.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

METRIC_LABELS = {"accuracy": "accuracy", "r2": "R²", "bits_per_byte": "bits per byte"}


def _figure(**kwargs):
    """A new `matplotlib.figure.Figure` (matplotlib imported on first use)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _metric_of(history: Mapping[str, Sequence[float]]) -> str | None:
    """ "accuracy", "r2" or "bits_per_byte", whichever the history holds (None if none)."""
    for metric in METRIC_LABELS:
        if f"test_{metric}" in history or f"train_{metric}" in history:
            return metric
    return None


def _curve(ax, values: Sequence[float], label: str, style: str = "-") -> None:
    if values:
        ax.plot(range(1, len(values) + 1), values, style, label=label)


def plot_history(
    history: Mapping[str, Sequence[float]],
    path: str | Path,
    *,
    title: str | None = None,
    log_loss: bool = True,
) -> Path:
    """Plots a `fit` history: loss (left) and accuracy or R² (right), train and test.

    Arguments:
      history: per-epoch lists as `fnn.train.fit` returns them (`train_loss`,
        `test_loss`, `train_accuracy`/`test_accuracy` or `train_r2`/`test_r2`).
      path: the image file to write (the format follows the suffix, e.g. `.png`).
      title: a figure title.
      log_loss: a logarithmic loss axis (when every loss is positive).
    """
    metric = _metric_of(history)
    panels = 2 if metric else 1
    # fixed margins, not a layout engine: `fnn train` draws this figure at the end of
    # every run, and constrained layout measures every label first (about half the time)
    fig = _figure(figsize=(5.2 * panels, 3.8))
    fig.subplots_adjust(left=0.11 / panels + 0.03, right=0.98, bottom=0.13, top=0.9,
                        wspace=0.25)  # fmt: skip
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    _curve(ax, history.get("train_loss", []), "train (mean over the epoch's steps)")
    _curve(ax, history.get("test_loss", []), "test", "--")
    losses = [*history.get("train_loss", []), *history.get("test_loss", [])]
    if log_loss and losses and all(math.isfinite(v) and v > 0 for v in losses):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if metric:
        ax = axes[1]
        _curve(ax, history.get(f"train_{metric}", []), "train")
        _curve(ax, history.get(f"test_{metric}", []), "test", "--")
        test = history.get(f"test_{metric}", [])
        if test:
            ax.annotate(
                f"{test[-1]:.4f}",
                (len(test), test[-1]),
                textcoords="offset points",
                xytext=(-10, -14),
                ha="right",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.set_title(METRIC_LABELS[metric])
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        lines = textwrap.wrap(title, 110 if panels == 2 else 60)  # fits the figure's width
        fig.suptitle("\n".join(lines), fontsize=10)
        fig.subplots_adjust(top=0.9 - 0.05 * len(lines))
    return _save(fig, path)


def plot_histories(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Overlays several runs (e.g. manual vs autodiff): test loss and test accuracy or R²
    per run, labelled by the mapping's keys."""
    first = next(iter(histories.values()), {})
    metric = _metric_of(first)
    panels = 2 if metric else 1
    fig = _figure(figsize=(5.2 * panels, 3.8), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    styles = ["-", "--", ":", "-."]
    for i, (label, history) in enumerate(histories.items()):
        style = styles[i % len(styles)]
        _curve(axes[0], history.get("train_loss", []), f"{label} train", style)
        _curve(axes[0], history.get("test_loss", []), f"{label} test", style)
        if metric:
            _curve(axes[1], history.get(f"test_{metric}", []), f"{label} test", style)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    if metric:
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel(f"test {METRIC_LABELS[metric]}")
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_lr_sweep(
    losses_by_lr: Mapping[float, Sequence[float]],
    path: str | Path,
    *,
    title: str | None = None,
    ylabel: str = "loss",
) -> Path:
    """A learning-rate sweep: the loss curves per learning rate (left) and the final loss
    against the learning rate on log axes (right). Non-finite losses (a diverged run) are
    drawn up to their last finite value and marked with an × at the top of the right panel.

    Arguments:
      losses_by_lr: {learning rate: per-step or per-epoch losses}.
      path: the image file to write.
    """
    fig = _figure(figsize=(10.4, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    finals, diverged = [], []
    for lr, values in sorted(losses_by_lr.items()):
        finite = [v for v in values if math.isfinite(v)]
        stop = next((i for i, v in enumerate(values) if not math.isfinite(v)), len(values))
        left.plot(range(1, stop + 1), list(values)[:stop], label=f"η = {lr:g}")
        if stop == len(values) and finite:
            finals.append((lr, finite[-1]))
        else:
            diverged.append(lr)
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel(ylabel)
    left.grid(alpha=0.3)
    left.legend(fontsize="small")
    if finals:
        right.plot([lr for lr, _ in finals], [v for _, v in finals], "o-", label="final")
    if diverged:
        top = max((v for _, v in finals), default=1.0)
        right.plot(diverged, [top] * len(diverged), "x", color="red", label="diverged")
    right.set_xscale("log")
    if finals and all(v > 0 for _, v in finals):
        right.set_yscale("log")
    right.set_xlabel("learning rate")
    right.set_ylabel(f"final {ylabel}")
    right.grid(alpha=0.3)
    right.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_gradients(
    history: Mapping[str, Sequence[float]], path: str | Path, *, title: str | None = None
) -> Path:
    """Gradient flow per layer over the epochs (`fit(..., track_gradients=True)`): the RMS
    of the cotangent reaching each layer, the RMS of each weighted layer's gradients, and
    its update-to-weight ratio, one line per layer, log scales."""
    kinds = [
        ("delta_rms", "RMS of the cotangent reaching the layer (∂L/∂y)"),
        ("grad_rms", "RMS of the layer's parameter gradients"),
        ("update_ratio", "update-to-weight ratio ‖Δθ‖/‖θ‖"),
    ]
    fig = _figure(figsize=(15.6, 4.0))  # fixed margins: drawn at the end of a run too
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.12, top=0.84, wspace=0.2)
    axes = fig.subplots(1, len(kinds))
    for ax, (kind, label) in zip(axes, kinds, strict=True):
        rows = sorted(
            (key.split("/", 1)[1], values) for key, values in history.items()
            if key.startswith(kind + "/")
        )  # fmt: skip
        for layer, values in rows:
            positive = [v if v > 0 else math.nan for v in values]
            ax.plot(range(1, len(values) + 1), positive, label=layer)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        if rows:
            ax.legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path

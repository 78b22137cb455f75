"""Handwritten digits (8×8, 10 classes) with an MLP, trained twice from the same start:
once with fnn's hand-written backward, once with jax.grad. Same data order, same init:
the two runs follow the same trajectory (to float32 rounding) and reach the same accuracy.

    python examples/digits.py --out examples/out

Writes digits_curves.png (loss and test accuracy of both runs) under --out.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from fnn import experiment
from fnn.plot import plot_histories


def train(mode: str, config: experiment.TrainConfig) -> dict:
    """Trains the config's network with gradients from `mode`; returns the history."""
    run = experiment.prepare(config)
    return experiment.fit_run(run, mode=mode, progress=False).history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/out"))
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    config = experiment.TrainConfig(dataset="digits", epochs=args.epochs)  # 64-256-128-10 relu
    run = experiment.prepare(config)
    check = experiment.verify_gradients(run)
    print(f"hand-written vs jax.grad, float64: max relative error {check.max_rel_err:.1e}")

    histories = {mode: train(mode, config) for mode in ("manual", "autodiff")}
    for mode, history in histories.items():
        per_epoch = statistics.median(history["epoch_s"][1:])  # the first one compiles
        print(
            f"{mode:>8}: test accuracy {history['test_accuracy'][-1]:.4f}, "
            f"{1 / per_epoch:.0f} epochs/s"
        )
    gap = max(
        abs(a - b)
        for a, b in zip(
            histories["manual"]["train_loss"], histories["autodiff"]["train_loss"], strict=True
        )
    )
    print(f"largest difference between the two train-loss curves: {gap:.1e}")
    path = plot_histories(
        histories, args.out / "digits_curves.png", title=f"digits, {run.net.name}"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

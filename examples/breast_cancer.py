"""The tutorial's network on real data: 30 tumour measurements → 5 → 4 → 1, sigmoid
hidden layers, a sigmoid output fused into the binary cross-entropy (its gradient is the
tutorial's dZ3 = A3 − Y), trained on scikit-learn's Wisconsin breast-cancer set.

    python examples/breast_cancer.py --out examples/out

Writes breast_cancer_curves.png under --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fnn import experiment
from fnn.plot import plot_history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/out"))
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()

    # The tutorial's 5-4-1 all-sigmoid shape; the output layer gives logits z3 and
    # sigmoid_binary_cross_entropy applies σ inside the loss (numerically stable).
    config = experiment.TrainConfig(
        dataset="breast_cancer",
        hidden=(5, 4),
        activation="sigmoid",
        loss="sigmoid_binary_cross_entropy",
        optimizer="adam",
        lr=3e-3,
        epochs=args.epochs,
        batch_size=32,
    )
    run = experiment.prepare(config)
    data = run.data
    print(f"{run.net.name} + {run.loss.name}")
    print(
        f"{data.num_train} train / {data.num_test} test tumours, {data.x_train.shape[1]} features"
    )
    check = experiment.verify_gradients(run)
    print(f"hand-written vs jax.grad, float64: max relative error {check.max_rel_err:.1e}")

    result = experiment.fit_run(run, progress=False)
    history = result.history
    print(
        f"test accuracy {history['test_accuracy'][-1]:.4f} "
        f"(train {history['train_accuracy'][-1]:.4f}) after {result.epoch} epochs"
    )
    path = plot_history(
        history, args.out / "breast_cancer_curves.png", title="breast cancer, 30-5-4-1 sigmoid"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""scikit-learn's MLPClassifier on digits with fnn's digits recipe, as a whole process:
the other side of the start-up race with `fnn train` (see benchmarks/README.md).

256-128 relu, Adam lr 1e-3, batch 32, 30 epochs (every epoch run), a stratified 80/20
split and features standardised with the train statistics, as `fnn train` does.

    python benchmarks/sklearn_digits.py [--seed 0]
"""

from __future__ import annotations

import argparse
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=args.seed
    )
    scaler = StandardScaler().fit(x_train)
    model = MLPClassifier(
        hidden_layer_sizes=(256, 128), activation="relu", solver="adam",
        learning_rate_init=1e-3, batch_size=32, max_iter=30, n_iter_no_change=31, tol=0.0,
        alpha=0.0, random_state=args.seed,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(x_train), y_train)
    print(f"digits: test accuracy {model.score(scaler.transform(x_test), y_test):.4f}")


if __name__ == "__main__":
    main()

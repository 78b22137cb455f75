"""Test accuracy of `fnn train --model cnn` on digits over seeds: the recipe as it is,
with `--batch-norm`, and with `--schedule cosine --epochs 40 --batch-size 16`, each
exactly what `fnn train --model cnn [FLAGS] --seed S` trains (the seed also sets the
split). Accuracies only: nothing here is timed (the whole runs' times are `fnn train`'s
own `metrics.json`, benchmarks/README.md says which).

    python benchmarks/cnn_seeds.py [--seeds 0 1 2 3]

Writes benchmarks/results/cnn_seeds.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from fit_overhead import machine

from fnn import experiment

VARIANTS = {  # name: (the flags of `fnn train --model cnn`, TrainConfig fields)
    "cnn": ("", {}),
    "cnn_batch_norm": ("--batch-norm", {"batch_norm": True}),
    "cnn_cosine": (
        "--schedule cosine --epochs 40 --batch-size 16",
        {"schedule": "cosine", "epochs": 40, "batch_size": 16},
    ),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "cnn_seeds.json"
    )
    args = parser.parse_args(argv)
    variants = {}
    for name, (flags, fields) in VARIANTS.items():
        accuracies = {}
        for seed in args.seeds:
            config = experiment.TrainConfig.for_dataset("digits", model="cnn", seed=seed, **fields)
            result = experiment.fit_run(experiment.prepare(config), progress=False)
            accuracies[str(seed)] = float(result.history["test_accuracy"][-1])
            print(f"{name} seed {seed}: test accuracy {accuracies[str(seed)]:.4f}")
        variants[name] = {
            "command": f"fnn train --model cnn {flags}".strip() + " --seed S",
            "test_accuracy": accuracies,
            "mean": statistics.mean(accuracies.values()),
            "min": min(accuracies.values()),
            "max": max(accuracies.values()),
        }
    result = {"machine": machine(), "dataset": "digits", "seeds": args.seeds, "variants": variants}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

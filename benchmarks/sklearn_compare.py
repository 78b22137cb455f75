"""fnn against scikit-learn's MLPClassifier / MLPRegressor on the same splits.

For each data set: fnn with the data set's recipe (what `fnn train --dataset NAME` runs),
and scikit-learn with the same split and standardisation (`fnn.data`), hidden widths,
activation, optimiser (Adam), learning rate, batch size and number of epochs;
scikit-learn runs every epoch (no early convergence stop). Reported: test
accuracy (or R²) and wall time of training (fnn: including compilation, and the
steady-state time per epoch). Three seeds each (the seed sets the split, the init and the
data order). Writes benchmarks/results/sklearn_compare.json and prints a table.

    python benchmarks/sklearn_compare.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

from fit_overhead import machine
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor

from fnn import experiment

# The README's table: each bundled data set with its recipe (`fnn train --dataset NAME`).
DATASETS = ("digits", "breast_cancer", "iris", "wine", "diabetes")
SKLEARN_ACTIVATION = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic"}


def run_fnn(config: experiment.TrainConfig) -> dict:
    run = experiment.prepare(config)
    data = run.data
    start = time.perf_counter()
    result = experiment.fit_run(run, eval_train=False, progress=False)
    wall = time.perf_counter() - start
    history = result.history
    metric = "test_r2" if data.task == "regression" else "test_accuracy"
    return {
        "score": history[metric][-1],
        "wall_s": wall,
        "epoch_s_steady": statistics.median(history["epoch_s"][1:]),
    }


def run_sklearn(config: experiment.TrainConfig, data) -> dict:
    common = dict(
        hidden_layer_sizes=config.hidden,
        activation=SKLEARN_ACTIVATION[config.activation],
        solver="adam",
        learning_rate_init=config.lr,
        batch_size=config.batch_size,
        max_iter=config.epochs,
        n_iter_no_change=config.epochs + 1,  # run every epoch, as fnn does
        tol=0.0,
        alpha=1e-4 if config.optimizer == "adamw" else 0.0,  # L2 ~ weight decay
        random_state=config.seed,
    )
    model = MLPRegressor(**common) if data.task == "regression" else MLPClassifier(**common)
    y_train = data.y_train.ravel() if data.task != "classification" else data.y_train
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data.x_train, y_train)
    wall = time.perf_counter() - start
    pred = model.predict(data.x_test)
    if data.task == "regression":
        score = r2_score(data.y_test, pred.reshape(data.y_test.shape))
    else:
        score = accuracy_score(data.y_test.ravel(), pred.ravel())
    return {"score": float(score), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "sklearn_compare.json"
    )
    args = parser.parse_args()
    rows = []
    for name in DATASETS:
        for seed in args.seeds:
            config = experiment.TrainConfig.for_dataset(name, seed=seed)
            data = experiment.load_data(config)
            ours = run_fnn(config)
            theirs = run_sklearn(config, data)
            rows.append(
                {
                    "dataset": name,
                    "seed": seed,
                    "task": data.task,
                    "metric": "r2" if data.task == "regression" else "accuracy",
                    "config": config.to_dict(),
                    "fnn": ours,
                    "sklearn": theirs,
                }
            )
            print(f"{name} seed {seed}: fnn {ours['score']:.4f}, sklearn {theirs['score']:.4f}")
    summary = {}
    for name in DATASETS:
        mine = [r for r in rows if r["dataset"] == name]
        summary[name] = {
            "metric": mine[0]["metric"],
            "fnn_mean": statistics.mean(r["fnn"]["score"] for r in mine),
            "sklearn_mean": statistics.mean(r["sklearn"]["score"] for r in mine),
            "fnn_seed0": mine[0]["fnn"]["score"],
            "sklearn_seed0": mine[0]["sklearn"]["score"],
            "fnn_wall_s_median": statistics.median(r["fnn"]["wall_s"] for r in mine),
            "fnn_epoch_ms_steady": 1e3
            * statistics.median(r["fnn"]["epoch_s_steady"] for r in mine),
            "sklearn_wall_s_median": statistics.median(r["sklearn"]["wall_s"] for r in mine),
        }
    result = {"machine": machine(), "seeds": args.seeds, "summary": summary, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    host = result["machine"]
    print(f"\n{host['processor']} ({host['cores']} CPUs), {host['device']}, jax {host['jax']}")
    header = (
        f"{'data set':<14} {'metric':<9} {'fnn':>7} {'sklearn':>8} "
        f"{'fnn s':>7} {'(epoch ms)':>10} {'sklearn s':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, s in summary.items():
        print(
            f"{name:<14} {s['metric']:<9} {s['fnn_mean']:>7.4f} {s['sklearn_mean']:>8.4f} "
            f"{s['fnn_wall_s_median']:>7.2f} {s['fnn_epoch_ms_steady']:>10.2f} "
            f"{s['sklearn_wall_s_median']:>10.2f}"
        )
    print(f"(means over seeds {args.seeds}; fnn s includes compilation)\nwrote {args.out}")


if __name__ == "__main__":
    main()

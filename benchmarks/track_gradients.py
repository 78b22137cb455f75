"""What `--track-gradients` costs: the digits recipe (`fnn train`'s defaults) fitted with
and without the per-layer gradient probe, alternated in one process after both have
compiled, with the per-epoch evaluation `fnn train` does. Reported: the whole fit's wall
time and the median epoch time (`history["epoch_s"]`) of each, and their ratios.

    python benchmarks/track_gradients.py [--reps 5] [--dataset digits]

Writes benchmarks/results/track_gradients.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from fit_overhead import machine

from fnn import experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "track_gradients.json"
    )
    args = parser.parse_args()
    runs = {
        tracked: experiment.prepare(
            experiment.TrainConfig.for_dataset(args.dataset, track_gradients=tracked)
        )
        for tracked in (False, True)
    }
    for run in runs.values():  # compile both
        experiment.fit_run(run, progress=False, epochs=2)
    walls: dict[bool, list[float]] = {False: [], True: []}
    epochs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.reps):
        for tracked, run in runs.items():
            start = time.perf_counter()
            result = experiment.fit_run(run, progress=False)
            walls[tracked].append(time.perf_counter() - start)
            epochs[tracked].append(statistics.median(result.history["epoch_s"][1:]))
    pairs = [t / p for t, p in zip(walls[True], walls[False], strict=True)]
    epoch_pairs = [t / p for t, p in zip(epochs[True], epochs[False], strict=True)]
    result = {
        "machine": machine(),
        "dataset": args.dataset,
        "recipe": experiment.recipes.describe(args.dataset),
        "reps": args.reps,
        "fit_s_median": {
            "plain": statistics.median(walls[False]),
            "tracked": statistics.median(walls[True]),
        },  # fmt: skip
        "epoch_ms_median": {
            "plain": 1e3 * statistics.median(epochs[False]),
            "tracked": 1e3 * statistics.median(epochs[True]),
        },  # fmt: skip
        "fit_ratio_median": statistics.median(pairs),
        "epoch_ratio_median": statistics.median(epoch_pairs),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    host = result["machine"]
    print(f"{args.dataset} ({result['recipe']}), {host['processor']} ({host['cores']} CPUs)")
    print(
        f"fit: plain {result['fit_s_median']['plain']:.2f} s, tracked "
        f"{result['fit_s_median']['tracked']:.2f} s, ratio {result['fit_ratio_median']:.3f}"
    )
    print(f"epoch: plain {result['epoch_ms_median']['plain']:.1f} ms, tracked "
          f"{result['epoch_ms_median']['tracked']:.1f} ms, ratio "
          f"{result['epoch_ratio_median']:.3f}")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

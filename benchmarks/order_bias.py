"""What the unit timed before another one costs it: the cause of the old grid's order bias.

The grid used to time the matmul peak probes (JAX, numpy's BLAS and PyTorch matmuls) in the
same rotation as the implementations, so one implementation always ran right after the
last probe. This script times the same compiled training step (fnn's manual backward on a
built-in workload) right after each kind of preceding unit, and the step alone:

- `alone`: the step after itself (the baseline);
- `after_<library>`: right after a matmul unit of that library (jax, numpy, torch where
  installed), the probe the old grid ran;
- `after_<library>_then_warm`: after that probe, one untimed call of the step, then the
  timed one: what the fixed harness does before every timed unit.

Each condition runs `--repeats` rounds, the conditions in a seeded random order per round;
the figure is the median over rounds of the step's time over the `alone` time of the same
round. Writes `results/order_bias.json`.

    python benchmarks/order_bias.py                   # mlp_b256, 41 rounds
    python benchmarks/order_bias.py --workload deep_relu --repeats 61
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from fnn.bench.impls import build_jax_impl
from fnn.bench.measure import machine_info, matmul_units, square_peak_size
from fnn.bench.problems import make_problem
from fnn.bench.workloads import WORKLOADS

RESULTS = Path(__file__).parent / "results" / "order_bias.json"


def conditions(step, state, probes):
    """Each condition: a callable that runs what precedes the step and returns the timed
    seconds of one step unit."""

    def timed(state):
        start = time.perf_counter()
        step(state)
        return time.perf_counter() - start

    out = {"alone": lambda: (step(state), timed(state))[1]}
    for library, (probe, _) in probes.items():
        out[f"after_{library}"] = lambda probe=probe: (probe(None), timed(state))[1]
        out[f"after_{library}_then_warm"] = lambda probe=probe: (
            probe(None),
            step(state),
            timed(state),
        )[2]
    return out


def measure(workload: str, repeats: int, seed: int) -> dict:
    problem = make_problem(WORKLOADS[workload], "float32")
    impl = build_jax_impl("manual", problem)
    side = square_peak_size("cpu", False)
    unit_flops = problem.flops_per_step * problem.steps
    calls = max(1, round(unit_flops / (2.0 * side**3)))
    probes = matmul_units(side, side, side, problem.dtype, calls)
    state = impl.unit(impl.state)
    for probe, _ in probes.values():
        probe(None)
    runs = conditions(impl.unit, state, probes)
    rng = random.Random(seed)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        order = list(runs)
        rng.shuffle(order)
        for name in order:
            times[name].append(runs[name]())
    alone = times["alone"]
    ratios = {
        name: statistics.median(t / a for t, a in zip(ts, alone, strict=True))
        for name, ts in times.items()
    }
    return {
        "workload": workload,
        "steps_per_unit": problem.steps,
        "probe": f"{side}x{side}x{side} x {calls} calls",
        "repeats": repeats,
        "seed": seed,
        "alone_ms_median": statistics.median(alone) * 1e3,
        "ratio_vs_alone": ratios,
        "ms_median": {name: statistics.median(ts) * 1e3 for name, ts in times.items()},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", action="append", help="default: mlp_b256 and deep_relu")
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    machine = machine_info()
    rows = []
    for workload in args.workload or ["mlp_b256", "deep_relu"]:
        row = measure(workload, args.repeats, args.seed)
        rows.append(row)
        print(f"{workload}: the step alone {row['alone_ms_median']:.2f} ms per unit")
        for name, ratio in row["ratio_vs_alone"].items():
            print(f"  {name:<28} {ratio:6.3f} x alone")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

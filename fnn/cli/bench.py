"""`fnn bench`: time manual and automatic differentiation against each other and the
hardware's matmul peak, and write results.json, results.csv, report.md and charts."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fnn import bench


def _names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark manual backprop against jax.grad, numpy and peers",
        description=(
            "Train each workload with each implementation (SGD on a fixed batch), "
            "alternating implementations round by round, and record step time (median, "
            "IQR), compile time, FLOP/s and its fraction of a matmul peak measured in the "
            "same run, compiled memory, residuals kept, HLO op counts and the gradient's "
            "difference from autodiff."
        ),
        epilog="workloads: "
        + ", ".join(f"{w.name} ({w.description})" for w in bench.WORKLOADS.values())
        + ". impls: "
        + ", ".join(bench.IMPLS),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short grid: " + ", ".join(bench.QUICK_WORKLOADS) + " with fewer steps",
    )
    parser.add_argument(
        "--workloads", type=_names, metavar="A,B", help="comma-separated workload names"
    )
    parser.add_argument("--impls", type=_names, metavar="A,B", help="comma-separated impls")
    parser.add_argument(
        "--dtype",
        type=_names,
        metavar="D[,D]",
        help="dtypes for every workload (default: float32; float64 too for the tutorial on "
        "CPU; bfloat16 too on GPU). Known: " + ", ".join(bench.DTYPES),
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed rounds (default 7, 3 quick)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per timed unit for every workload"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"), metavar="DIR")
    parser.add_argument("--list", action="store_true", help="list workloads and impls, then exit")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for w in bench.WORKLOADS.values():
            print(f"{w.name:<18} {w.description}")
        print("impls: " + ", ".join(bench.IMPLS))
        return 0
    try:
        for names, valid, kind in (
            (args.workloads, bench.WORKLOADS, "workload"),
            (args.impls, bench.IMPLS, "impl"),
            (args.dtype, bench.DTYPES, "dtype"),
        ):
            bench.choose_all(kind, names or [], valid)
    except ValueError as error:
        print(f"fnn bench: {error}")
        return 2
    if args.repeats is not None and args.repeats < 1 or args.steps is not None and args.steps < 1:
        print("fnn bench: --repeats and --steps must be positive")
        return 2
    repeats = args.repeats or (3 if args.quick else 7)
    steps = None
    if args.steps is not None:
        steps = dict.fromkeys(args.workloads or bench.WORKLOADS, args.steps)
    start = time.perf_counter()
    records = bench.run_benchmarks(
        args.workloads,
        args.impls,
        args.dtype,
        repeats=repeats,
        quick=args.quick,
        steps=steps,
    )
    paths = bench.write_results(records, args.out)
    print(f"wrote {', '.join(str(p) for p in paths)} in {time.perf_counter() - start:.0f} s")
    return 0

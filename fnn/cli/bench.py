"""`fnn bench`: time manual and automatic differentiation against each other, against
the peers and the machine's matmul peak, on the built-in workloads or on your own
network (`--model FILE.py:FUNCTION`) or layer (`--layer FILE.py:FUNCTION`), and write
results.json, results.csv, report.md and charts."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from fnn import bench
from fnn.bench.impls import IMPLS, JAX_IMPLS
from fnn.bench.problems import make_problem
from fnn.bench.records import BenchRecord
from fnn.bench.workloads import (
    DTYPES,
    QUICK_REPEATS,
    QUICK_WORKLOADS,
    REPEATS,
    WORKLOADS,
    choose_all,
)
from fnn.cli.messages import flags_of
from fnn.cli.outputs import check_writable_dir
from fnn.cli.user_code import UserCodeError, call, input_shape
from fnn.core import Layer, Loss, SettingError

MODEL_HELP = (
    "benchmark your network: FUNCTION() returns (net, loss, x, y), or a dict with keys "
    "net, loss, x, y and optionally optimizer (an optax optimiser), name, and impls "
    "({name: builder} of your own implementations, see fnn.bench.compare)"
)
LAYER_HELP = (
    "benchmark your layer's forward and backward against jax.vjp: FUNCTION() returns an "
    "fnn Layer, or a dict with key layer and optionally variants ({name: Layer} computing "
    "the same function), ctx, make_input, in_shape and batch"
)


def _names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark manual backprop against jax.grad, numpy and peers",
        description=(
            "Train each workload with each implementation (SGD on a fixed batch), "
            "every implementation once per round, in a seeded random order, each timed "
            "unit right after an untimed one, with an A/A twin (--aa); record step time "
            "(median, IQR), compile time, FLOP/s and its fraction of a matmul peak measured in the "
            "same run, compiled memory, residuals kept, HLO op counts and the gradient's "
            "difference from autodiff."
        ),
        epilog="workloads: "
        + ", ".join(f"{w.name} ({w.description})" for w in WORKLOADS.values())
        + ". impls: "
        + ", ".join(IMPLS),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short grid: " + ", ".join(QUICK_WORKLOADS) + " with fewer steps",
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
        "CPU; bfloat16 too on GPU). Known: " + ", ".join(DTYPES),
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed rounds (default {REPEATS}, {QUICK_REPEATS} quick)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per timed unit for every workload"
    )
    parser.add_argument(
        "--aa",
        default="manual",
        metavar="IMPL",
        help="the impl timed twice, as itself and as IMPL_aa (the A/A self-test: their "
        "ratio is the noise of the table; default manual, 'none' for no twin)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the impls' random order in each round"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"), metavar="DIR")
    parser.add_argument("--list", action="store_true", help="list workloads and impls, then exit")
    parser.add_argument(
        "--summary",
        action="store_true",
        help="instead of timing, print each network's layers: output shape, params, "
        "FLOPs and residuals kept by the hand-written backward and by jax.grad "
        "(fnn.bench.summary)",
    )
    yours = parser.add_argument_group("your own network or layer (instead of the workloads)")
    yours.add_argument("--model", metavar="FILE.py:FUNCTION", help=MODEL_HELP)
    yours.add_argument("--layer", metavar="FILE.py:FUNCTION", help=LAYER_HELP)
    yours.add_argument(
        "--in-shape",
        type=input_shape,
        metavar="D[,D...]",
        help="--layer: input shape without batch",
    )
    yours.add_argument("--batch", type=int, metavar="N", help="--layer: batch size (default 256)")
    # `fnn.bench.compare(net, loss, x, y)` names what --model's FUNCTION gave
    yours_parts = dict.fromkeys(("net", "loss", "x", "y"), "--model")
    parser.set_defaults(run=run, flags={**flags_of(parser), **yours_parts})


def _yours(obtained, spec: str, flag: str, keys: tuple[str, ...]) -> dict:
    """What FUNCTION returned, as a dict with `keys`; a UserCodeError saying what was
    expected otherwise."""
    if flag == "--layer" and isinstance(obtained, Layer):
        return {"layer": obtained}
    if flag == "--model" and isinstance(obtained, tuple) and len(obtained) == 4:
        return dict(zip(keys, obtained, strict=True))
    if isinstance(obtained, Mapping) and all(k in obtained for k in keys):
        return dict(obtained)
    expected = LAYER_HELP if flag == "--layer" else MODEL_HELP
    raise UserCodeError(f"{flag}: {spec}() returned {type(obtained).__name__}; expected: "
                        f"{expected.split(': ', 1)[1]}")  # fmt: skip


def _run_model(args: argparse.Namespace) -> list[BenchRecord]:
    got = _yours(call(args.model, "--model"), args.model, "--model", ("net", "loss", "x", "y"))
    if not isinstance(got["net"], Layer) or not isinstance(got["loss"], Loss):
        raise UserCodeError(
            f"--model: {args.model}() must give an fnn Layer and an fnn Loss as net and loss, "
            f"got {type(got['net']).__name__} and {type(got['loss']).__name__}"
        )
    impls = list(args.impls or JAX_IMPLS) + list(dict(got.get("impls") or {}).items())
    return bench.compare(
        got["net"],
        got["loss"],
        got["x"],
        got["y"],
        impls=impls,
        optimizer=got.get("optimizer"),
        steps=args.steps,
        repeats=args.repeats,
        dtype=(args.dtype or [None])[0],
        name=got.get("name"),
        quick=args.quick,
        progress=print,
        aa=_aa(args),
    )


def _aa(args: argparse.Namespace) -> str | None:
    return None if args.aa == "none" else args.aa


def _run_layer(args: argparse.Namespace) -> list[BenchRecord]:
    got = _yours(call(args.layer, "--layer"), args.layer, "--layer", ("layer",))
    in_shape = args.in_shape or got.get("in_shape")
    if in_shape is None:
        raise SettingError("--layer needs the input shape", settings=("in_shape",))
    impls = list(args.impls or ("manual", "autodiff"))
    impls += list(dict(got.get("variants") or {}).items())
    return bench.compare_layer(
        got["layer"],
        tuple(in_shape),
        batch=args.batch or got.get("batch") or 256,
        dtype=(args.dtype or ["float32"])[0],
        ctx=got.get("ctx"),
        impls=impls,
        calls=args.steps or 20,
        repeats=args.repeats,
        make_input=got.get("make_input"),
        quick=args.quick,
        progress=print,
        aa=_aa(args),
    )


def _summaries(args: argparse.Namespace) -> None:
    """`--summary`: the table of each chosen network, printed."""
    dtype = (args.dtype or ["float32"])[0]
    if args.model:
        got = _yours(call(args.model, "--model"), args.model, "--model", ("net", "loss", "x", "y"))
        print(bench.summary(got["net"], x=got["x"], dtype=dtype))
    elif args.layer:
        got = _yours(call(args.layer, "--layer"), args.layer, "--layer", ("layer",))
        in_shape = args.in_shape or got.get("in_shape")
        if in_shape is None:
            raise SettingError("--layer needs the input shape", settings=("in_shape",))
        batch = args.batch or got.get("batch") or 256
        print(bench.summary(got["layer"], tuple(in_shape), batch=batch, dtype=dtype))
    else:
        names = choose_all("workload", args.workloads or QUICK_WORKLOADS,
                                 WORKLOADS)  # fmt: skip
        for name in names:
            problem = make_problem(WORKLOADS[name], dtype)
            print(bench.summary(problem.net, x=problem.x, dtype=dtype), end="\n\n")


def run(args: argparse.Namespace) -> int:
    """Errors (an `fnn.errors.FnnError`) exit 2 in `fnn.cli.main`."""
    if args.list:
        for w in WORKLOADS.values():
            print(f"{w.name:<18} {w.description}")
        print("impls: " + ", ".join(IMPLS))
        return 0
    start = time.perf_counter()
    if args.summary:  # prints; writes nothing to --out
        choose_all("dtype", args.dtype or [], DTYPES)
        _summaries(args)
        return 0
    check_writable_dir(args.out, "out")
    if args.model and args.layer:
        raise SettingError("give --model or --layer, not both", settings=("model",))
    if (args.model or args.layer) and args.workloads:
        raise SettingError("--workloads are the built-in ones; with --model or --layer "
                           "the case is yours", settings=("workloads",))  # fmt: skip
    for number, name in (
        (args.repeats, "repeats"),
        (args.steps, "steps"),
        (args.batch, "batch"),
    ):
        if number is not None and number < 1:
            raise SettingError(f"{name} must be positive, got {number}", settings=(name,))
    if args.dtype:
        choose_all("dtype", args.dtype, DTYPES)
    if args.aa != "none":
        choose_all("aa impl", [args.aa], IMPLS)
    if args.model:
        records = _run_model(args)
    elif args.layer:
        records = _run_layer(args)
    else:
        choose_all("workload", args.workloads or [], WORKLOADS)
        choose_all("impl", args.impls or [], IMPLS)
        steps = None
        if args.steps is not None:
            steps = dict.fromkeys(args.workloads or WORKLOADS, args.steps)
        records = bench.run_benchmarks(
            args.workloads,
            args.impls,
            args.dtype,
            repeats=args.repeats,
            quick=args.quick,
            steps=steps,
            aa=_aa(args),
            seed=args.seed,
        )
    paths = bench.report(records, args.out)
    print(f"wrote {', '.join(str(p) for p in paths)} in {time.perf_counter() - start:.0f} s")
    mismatched = [r for r in records if r.status == "mismatch"]
    for r in mismatched:
        print(f"fnn bench: {r.workload} {r.impl}: {r.note}", file=sys.stderr)
    return 1 if mismatched else 0

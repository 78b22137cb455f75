"""`fnn check`: verify the hand-written backward passes of the built-ins; with `--mutate
FILE.py:FUNCTION`, plant classic mistakes in your layer's backward and see whether its
check catches them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

from fnn.check import CASES, DTYPES, format_table, mutation_test, run_checks
from fnn.check.references import (
    FORWARD_RTOL,
    REFERENCES,
    UNREFERENCED,
    check_forwards,
    format_forward_table,
)
from fnn.check.report import DEFAULT_RTOL
from fnn.cli.messages import flags_of
from fnn.cli.outputs import check_writable_file
from fnn.cli.user_code import UserCodeError, input_shape, load_function
from fnn.core import Layer, SettingError

MUTATE_HELP = (
    "instead of the built-ins, mutation-test your layer: plant classic mistakes in its "
    "backward (a sign, a factor of 2, a transpose, a dropped term, a reduction axis), one "
    "at a time, and check each mutant at your check point; exits 1 when a mutant survives. "
    "FUNCTION() returns an fnn Layer, or a dict with key layer and optionally in_shape, "
    "batch, ctx, make_input"
)


def _tol(x: float) -> str:
    """A tolerance as the docs write it: 1e-10, 1e-4."""
    return f"{x:.0e}".replace("e-0", "e-")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="verify every hand-written backward against jax.vjp and finite differences, "
        "per example and at ties, and every forward against an independent reference",
        description=(
            "Compare each built-in layer, activation, loss and network's hand-written "
            "backward with jax.vjp and with finite differences (float64), at params, "
            "inputs and cotangents drawn in general position; each declared per-example "
            "backward with each example's own jax.vjp; each layer at integer inputs where "
            "relu and max_pool tie; and each forward with a reference written from its "
            "formula. Exits 1 when any item fails. Tolerances: relative error <= "
            f"{_tol(DEFAULT_RTOL['float64'])} in float64, <= "
            f"{_tol(DEFAULT_RTOL['float32'])} in float32 (forwards: "
            f"{_tol(FORWARD_RTOL['float64'])} and {_tol(FORWARD_RTOL['float32'])})."
        ),
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="items to check (default: all). Known: " + ", ".join(CASES),
    )
    parser.add_argument("--dtype", choices=DTYPES, default="float64")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write records here")
    yours = parser.add_argument_group("mutation testing of your own layer")
    yours.add_argument("--mutate", metavar="FILE.py:FUNCTION", help=MUTATE_HELP)
    yours.add_argument(
        "--in-shape",
        type=input_shape,
        metavar="D[,D...]",
        help="--mutate: input shape without batch",
    )
    yours.add_argument("--batch", type=int, metavar="N", help="--mutate: batch size (default 4)")
    parser.set_defaults(run=run, flags=flags_of(parser))


def run(args: argparse.Namespace) -> int:
    """Errors (an `fnn.errors.FnnError`) exit 2 in `fnn.cli.main`."""
    if args.mutate:
        return _mutate(args)
    unknown = [name for name in args.names if name not in CASES]
    if unknown:
        raise SettingError(
            f"unknown item(s) {', '.join(unknown)}; known items: {', '.join(CASES)}",
            settings=("names",),
        )
    if args.in_shape or args.batch:
        raise SettingError("--in-shape and --batch go with --mutate", settings=("mutate",))
    if args.json:
        check_writable_file(args.json, "json")
    results = run_checks(args.names, args.dtype)
    print(format_table(results))
    referenced = [name for name in args.names or CASES if name in REFERENCES]
    forwards = {r.name: r for r in check_forwards(referenced, args.dtype)} if referenced else {}
    if forwards:
        print(f"\nforwards against independent references ({args.dtype}):")
        unreferenced = sum(name in UNREFERENCED for name in args.names or CASES)
        print(format_forward_table(list(forwards.values()), unreferenced))
    if args.json:
        records = [
            {**r.to_dict(), "forward": forwards[r.name].to_dict() if r.name in forwards else None}
            for r in results
        ]
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    passed = all(r.passed for r in results) and all(r.passed for r in forwards.values())
    return 0 if passed else 1


def _layer_of(obtained, spec: str) -> tuple[Layer, dict]:
    """The Layer FUNCTION returned and the check settings beside it."""
    if isinstance(obtained, Layer):
        return obtained, {}
    if isinstance(obtained, Mapping) and isinstance(obtained.get("layer"), Layer):
        extra = {
            k: obtained[k] for k in ("in_shape", "batch", "ctx", "make_input") if k in obtained
        }
        return obtained["layer"], extra
    raise UserCodeError(
        f"--mutate: {spec}() returned {type(obtained).__name__}; expected an fnn Layer, or a "
        "dict with key layer and optionally in_shape, batch, ctx, make_input"
    )


def _mutate(args: argparse.Namespace) -> int:
    if args.names:
        raise SettingError(
            "--mutate tests your layer, not the built-in items; give one or the other",
            settings=("mutate",),
        )
    if args.batch is not None and args.batch < 1:
        raise SettingError(f"batch must be positive, got {args.batch}", settings=("batch",))
    if args.json:
        check_writable_file(args.json, "json")
    function = load_function(args.mutate, "--mutate")

    def called():
        try:
            return function()
        except Exception as error:
            raise UserCodeError(
                f"--mutate: {args.mutate}() raised {type(error).__name__}: {error}"
            ) from error

    def build() -> Layer:
        return _layer_of(called(), args.mutate)[0]

    settings = _layer_of(called(), args.mutate)[1]
    in_shape = args.in_shape or settings.get("in_shape")
    settings.pop("in_shape", None)
    if in_shape is None:
        raise SettingError("--mutate needs the input shape", settings=("in_shape",))
    if args.batch is not None:
        settings["batch"] = args.batch
    print(f"mutation test of {args.mutate}, input shape {tuple(in_shape)}, {args.dtype}")
    report = mutation_test(build, tuple(in_shape), dtype=args.dtype, **settings)
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in report.results], indent=2) + "\n")
    return 0 if report.passed else 1

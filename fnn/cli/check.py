"""`fnn check`: verify the hand-written backward passes of the built-ins."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fnn.check import CASES, DTYPES, format_table, run_checks
from fnn.cli.messages import describe, flags_of
from fnn.cli.outputs import check_writable_file
from fnn.core import SettingError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="verify every hand-written backward against jax.vjp and finite differences",
        description=(
            "Compare each built-in layer, activation, loss and network's hand-written "
            "backward with jax.vjp and with finite differences (float64), at params, "
            "inputs and cotangents drawn in general position. Exits 1 when any item "
            "fails. Tolerances: relative error <= 1e-10 in float64, <= 1e-4 in float32."
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
    parser.set_defaults(run=run, flags=flags_of(parser))


def run(args: argparse.Namespace) -> int:
    unknown = [name for name in args.names if name not in CASES]
    try:
        if unknown:
            raise SettingError(
                f"unknown item(s) {', '.join(unknown)}; known items: {', '.join(CASES)}",
                settings=("names",),
            )
        if args.json:
            check_writable_file(args.json, "json")
    except SettingError as error:
        print(f"fnn check: error: {describe(error, args.flags)}", file=sys.stderr)
        return 2
    results = run_checks(args.names, args.dtype)
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    return 0 if all(r.passed for r in results) else 1

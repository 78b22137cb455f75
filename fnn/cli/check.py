"""`fnn check`: verify the hand-written backward passes of the built-ins."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fnn.check import CASES, DTYPES, format_table, run_checks


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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    unknown = [name for name in args.names if name not in CASES]
    if unknown:
        print(f"fnn check: unknown item(s) {', '.join(unknown)}")
        print("known items: " + ", ".join(CASES))
        return 2
    results = run_checks(args.names, args.dtype)
    print(format_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    return 0 if all(r.passed for r in results) else 1

"""The `fnn` command: `fnn check | train | bench`. Each subcommand lives in its own module
with `add_parser(subparsers)` and `run(args) -> exit code`; this module only dispatches."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fnn.cli import bench, check, train

COMMANDS = [check, train, bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fnn",
        description="Hand-written backpropagation in JAX, verified against jax.grad.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

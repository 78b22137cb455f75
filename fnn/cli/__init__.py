"""The `fnn` command: `fnn check | train | sample | bench | summary`. Each subcommand lives
in its own module with `add_parser(subparsers)` and `run(args) -> exit code`; this module
only dispatches."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fnn.cli import bench, check, sample, summary, train
from fnn.cli.cache import use_compilation_cache

COMMANDS = [check, train, sample, bench, summary]


class Parser(argparse.ArgumentParser):
    """argparse's parser, with its errors said in two lines instead of after the whole
    usage: what is wrong, and where the flags are listed."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` lists the flags)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="fnn",
        description="Hand-written backpropagation in JAX, verified against jax.grad.",
        epilog="Compiled programs are cached in ~/.cache/fnn/jax (or $XDG_CACHE_HOME/fnn/jax) "
        "so that a repeated command starts fast; FNN_CACHE_DIR=DIR moves the cache, "
        "FNN_CACHE_DIR=off turns it off.",
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_compilation_cache()  # FNN_CACHE_DIR moves it or turns it off (fnn/cli/cache.py)
    try:
        return args.run(args)
    except BrokenPipeError:  # `fnn ... | head` closed the pipe: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


if __name__ == "__main__":
    sys.exit(main())

"""The `fnn` command: `fnn check | train | sample | bench | summary`. Each subcommand lives
in its own module with `add_parser(subparsers)` and `run(args) -> exit code`; this module
dispatches, and turns what a command raises into an exit code.

Exit codes: 0 done; 1 a command's own failure (a gradient check that fails, a loss that
diverged) or an error fnn did not raise on purpose, with its traceback: a bug in fnn or
in the code it was given; 2 bad usage: a flag, a file, a data set or a checkpoint that
does not fit, said in one line with the flags that fix it (any `fnn.errors.FnnError`).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import traceback
from collections.abc import Sequence

from fnn.cli import bench, check, sample, summary, train
from fnn.cli.config import configure_jax
from fnn.cli.messages import describe
from fnn.errors import FnnError

COMMANDS = [check, train, sample, bench, summary]
WIDTH = 88  # the command list's line width
REPORT = (
    "if fnn raised it, please report it on fnn's issue tracker with the command line and "
    "the traceback above"
)


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
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The parser's commands (argparse has no public way to them)."""
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers


def command_list(parser: argparse.ArgumentParser) -> str:
    """What `fnn` alone prints: the commands, each with its one-line help."""
    helps = [(a.dest, a.help or "") for a in _subparsers(parser)._choices_actions]  # no public list
    width = max(len(name) for name, _ in helps)
    indent = " " * (width + 4)
    lines = [
        textwrap.fill(f"  {name:<{width}}  {text}", WIDTH, subsequent_indent=indent)
        for name, text in helps
    ]
    return "\n".join(
        [
            f"usage: {parser.prog} COMMAND [flags]",
            "",
            parser.description or "",
            "",
            "commands:",
            *lines,
            "",
            f"`{parser.prog} COMMAND --help` lists a command's flags.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)  # a usage error exits 2 here
    if unknown:  # said by the command's own parser, which lists its flags
        said_by = _subparsers(parser).choices.get(args.command, parser)
        said_by.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        print(command_list(parser))
        return 0
    try:
        configure_jax(args)  # the one place the command line configures JAX
        return args.run(args)
    except BrokenPipeError:  # `fnn ... | head` closed the pipe: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    except FnnError as error:  # the input does not fit: say what, and which flags fix it
        print(f"fnn {args.command}: error: {describe(error, args.flags)}", file=sys.stderr)
        return 2
    except Exception as error:  # not raised on purpose: a bug, in fnn or in the code given
        traceback.print_exc()
        first = str(error).splitlines()[0] if str(error) else ""
        print(
            f"fnn: this is a bug in fnn (or in your code): {type(error).__name__}: {first}\n"
            f"{REPORT}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

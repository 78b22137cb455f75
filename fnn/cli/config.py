"""JAX's configuration for the `fnn` command's process, set in this one place.

The command line owns its process, so it may configure JAX for it; the library does not
(no function under `fnn/` outside `fnn/cli/` changes `jax.config`, joining processes
through `jax.distributed` excepted, which is process-wide by nature). `main` calls
`configure_jax` once, before dispatching to a command:

- the persistent compilation cache (`fnn.cli.cache`), for every command;
- 64-bit types, for a command that computes in float64: `fnn train` and `fnn summary`
  with `--dtype float64`, and `fnn train --resume` of a run saved in float64.
  `fnn.experiment.prepare` refuses float64 without them rather than switching them on
  itself. `fnn check` and `fnn bench` need nothing here: the checker and the benchmark
  grid scope float64 to their own work (`jax.enable_x64`).
"""

from __future__ import annotations

import argparse

from fnn.cli.cache import use_compilation_cache

FLOAT64_COMMANDS = ("train", "summary")  # those that compute in the --dtype they are given


def wants_float64(args: argparse.Namespace) -> bool:
    """Whether the command computes in float64 (see the module's docstring). Reading a
    resumed run's checkpoint may raise its `CheckpointError`, the one `--resume` would
    raise."""
    if args.command not in FLOAT64_COMMANDS or getattr(args, "list_datasets", False):
        return False
    if getattr(args, "resume", False) and args.out is not None:
        from fnn.experiment import CHECKPOINT
        from fnn.train.checkpoint import read_metadata

        return read_metadata(args.out / CHECKPOINT)["config"].get("dtype") == "float64"
    return args.dtype == "float64"


def configure_jax(args: argparse.Namespace) -> None:
    """Sets what the command needs of JAX's configuration, for the whole process."""
    use_compilation_cache()  # FNN_CACHE_DIR moves it or turns it off (fnn/cli/cache.py)
    if wants_float64(args):
        import jax

        jax.config.update("jax_enable_x64", True)

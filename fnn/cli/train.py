"""`fnn train`: train an MLP on a data set, with verified hand-written gradients.

Exit codes: 0 trained; 1 the loss diverged (NaN/inf; the last good checkpoint stays), the
gradient check failed or a write failed mid-run (or a bug: see `fnn.cli`); 2 bad usage:
an unknown choice, a bad flag value, a data set that cannot be loaded, an output directory
that cannot be written, a checkpoint that cannot be resumed (an `fnn.errors.FnnError`,
reported by `fnn.cli.main`). The flags are in fnn/cli/train_flags.py. float64 runs get
64-bit types from `fnn.cli.config`, before this module runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from fnn.cli import train_flags
from fnn.cli.messages import describe
from fnn.cli.outputs import check_writable_dir
from fnn.errors import SettingError

# Flags that may differ from the checkpoint's config on --resume.
RESUME_FLAGS = {"epochs", "out", "resume", "checkpoint_every", "no_progress", "overwrite"}
SCALE_FLAGS = ("coordinator", "num_processes", "process_id")


def _error(error: BaseException, args: argparse.Namespace, code: int) -> int:
    """Prints the library's error with the flags that fix it; returns the exit code."""
    print(f"fnn train: error: {describe(error, args.flags)}", file=sys.stderr)
    return code


def _start(args: argparse.Namespace, given: dict):
    """Builds the run (fresh or resumed) and its output directory, or raises."""
    from fnn import experiment
    from fnn.train.checkpoint import read_metadata
    from fnn.train.distributed import is_main_process

    if args.resume:
        if args.out is None:
            raise SettingError("--resume needs --out DIR, the directory of the run to continue")
        saved = experiment.TrainConfig.from_dict(
            read_metadata(args.out / experiment.CHECKPOINT)["config"]
        )
        differing = [
            f"--{name.replace('_', '-')} {value} (the checkpoint has {getattr(saved, name)})"
            for name, value in given.items()
            if name not in RESUME_FLAGS and value != getattr(saved, name)
        ]
        if differing:
            raise SettingError(
                "--resume continues the saved configuration; these flags differ from it: "
                + "; ".join(differing)
            )
        if is_main_process():  # process 0 alone writes
            check_writable_dir(args.out, "out")
        return experiment.resume(args.out, epochs=given.get("epochs")), args.out
    config = experiment.TrainConfig.for_dataset(**given)  # the data set's recipe, then flags
    out = args.out or Path("runs") / f"{config.dataset}-{datetime.now():%Y%m%d-%H%M%S}"
    if (out / experiment.CHECKPOINT).exists() and not args.overwrite:
        raise SettingError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to "
            "replace it, or another --out"
        )
    prepared = experiment.prepare(config)  # the config, the data: before any directory
    if is_main_process():  # process 0 alone writes
        check_writable_dir(out, "out")
    return prepared, out


def _mesh(args: argparse.Namespace):
    """Joins the processes (with --coordinator) and builds the data-parallel mesh; None
    for one device in one process (the plain, unsharded path)."""
    from fnn.train import distributed, parallel

    given = [
        f"--{name.replace('_', '-')}" for name in SCALE_FLAGS if getattr(args, name) is not None
    ]
    if given and len(given) != len(SCALE_FLAGS):
        raise SettingError(
            "several processes need --coordinator, --num-processes and --process-id "
            f"together; got only {', '.join(given)}"
        )
    if given:
        distributed.check_processes(args.coordinator, args.num_processes, args.process_id)
        host, _ = distributed.parse_address(args.coordinator)
        if not distributed.is_private(host):
            print(
                f"fnn train: warning: the coordinator {args.coordinator} is neither loopback "
                "nor a private network: its gRPC service has no authentication, so anyone "
                "who reaches it can join or disturb the run (docs/scaling.md)",
                file=sys.stderr,
            )
        print(
            f"fnn train: process {args.process_id} of {args.num_processes}: joining "
            f"{args.coordinator}, waiting up to {args.coordinator_timeout:g} s for all "
            f"{args.num_processes} processes (past that the JAX runtime aborts this process)",
            file=sys.stderr,
            flush=True,
        )
        distributed.initialize_distributed(
            args.coordinator,
            args.num_processes,
            args.process_id,
            timeout_s=args.coordinator_timeout,
        )
    mesh = parallel.make_data_mesh(args.devices)
    return None if mesh.size == 1 else mesh


def add_parser(subparsers) -> None:
    train_flags.add_parser(subparsers, run)


def run(args: argparse.Namespace) -> int:
    from fnn import experiment
    from fnn.errors import NonFiniteLossError
    from fnn.tasks import METRIC_LABELS, metric_name
    from fnn.train.distributed import is_main_process
    from fnn.train.parallel import check_batch_divisible, describe_mesh

    if args.list_datasets:
        return train_flags.list_datasets()
    start = time.perf_counter()
    given = train_flags.config_values(args)
    mesh = _mesh(args)  # errors (an fnn.errors.FnnError) exit 2 in fnn.cli.main
    prepared, out = _start(args, given)
    if mesh is not None:
        check_batch_divisible(prepared.config.batch_size, mesh)

    if not is_main_process():  # process 0 alone prints and writes
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        args.no_progress = True

    config, data = prepared.config, prepared.data
    overridden = sorted(set(given) & set(experiment.recipe_fields(config.dataset)))
    flags = ", ".join(f"--{name.replace('_', '-')}" for name in overridden)
    print(
        f"recipe: {config.dataset}'s ({experiment.recipes.describe(config.dataset)})"
        + (f", overridden by {flags}" if flags else "")
        + ("; resuming, with the checkpoint's config" if args.resume else "")
    )
    check = experiment.verify_gradients(prepared)
    verdict = "match" if check.passed else "DO NOT match"
    checked = experiment.check_sample(prepared)[0].shape
    on = f"{checked[0]} {config.dataset} examples"
    if data.task == "language_model":
        on = f"{checked[0]} {config.dataset} windows of {checked[1]} tokens"
    print(
        f"gradient check: the network's hand-written gradients {verdict} jax.grad on "
        f"{on} (float64): max relative error {check.max_rel_err:.1e} (tolerance "
        f"{check.rtol:.0e})"
    )
    if not check.passed:
        print(check, file=sys.stderr)
        print("fnn train: error: the gradient check failed: not training (nothing written)",
              file=sys.stderr)  # fmt: skip
        return 1
    steps = data.x_train.shape[0] // config.batch_size
    resumed = f", resuming after epoch {prepared.start_epoch}" if prepared.start_epoch else ""
    if mesh is not None:
        resumed += f", data-parallel over {describe_mesh(mesh)}"
    print(
        f"training {prepared.net.name} on {config.dataset} ({data.task}, "
        f"{data.x_train.shape[0]} train / {data.x_test.shape[0]} test): {config.grad} "
        f"gradients, {prepared.loss.name}, {config.optimizer} lr {config.lr:g} "
        f"({config.schedule}), {config.epochs} epochs of {steps} steps of "
        f"{config.batch_size}, {config.dtype}{resumed}",
        flush=True,
    )
    metric = metric_name(data.task)
    try:
        result = experiment.train(
            prepared,
            out,
            checkpoint_every=args.checkpoint_every,
            progress=not args.no_progress,
            mesh=mesh,
        )
        record = experiment.write_outputs(
            prepared,
            result,
            out,
            wall_s=time.perf_counter() - start,
            check=check,
            mesh=mesh,
            overridden=overridden,
        )
    except OSError as error:  # the disk filled up, or permissions changed, mid-run
        print(
            f"fnn train: error: could not write {error.filename or out}: {error.strerror or error}",
            file=sys.stderr,
        )
        kept = out / experiment.CHECKPOINT
        if kept.exists():
            print(f"the last good checkpoint is {kept}", file=sys.stderr)
        return 1
    except NonFiniteLossError as error:
        experiment.write_outputs(
            prepared,
            error.last_good,
            out,
            wall_s=time.perf_counter() - start,
            check=check,
            status="diverged",
            error=str(error),
            mesh=mesh,
            overridden=overridden,
        )
        _error(error, args, 1)
        kept = out / experiment.CHECKPOINT
        if kept.exists():
            print(f"the last good checkpoint is {kept} (epoch {error.last_good.epoch})")
        return 1
    label = METRIC_LABELS[metric]
    early = f", stopped early (best epoch {result.best_epoch})" if result.stopped_early else ""
    print(
        f"{config.dataset}: test {label} {record[f'test_{metric}']:.4f}, test loss "
        f"{record['test_loss']:.4f} after {result.epoch} epochs{early} "
        f"({record['wall_s']:.1f} s on {record['device']['platform']})"
    )
    names = [experiment.METRICS, experiment.CURVES, experiment.CHECKPOINT]
    names += [experiment.GRADIENTS] if config.track_gradients else []
    print(f"wrote {out}/: {', '.join(names)}")
    return 0

"""`fnn train`: train an MLP on a data set, with verified hand-written gradients.

Exit codes: 0 trained; 1 the loss diverged (NaN/inf; the last good checkpoint stays) or
the gradient check failed; 2 bad usage: an unknown choice, a bad flag value, a data set
that cannot be loaded, a checkpoint that cannot be resumed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from fnn.cli.messages import describe, flags_of
from fnn.cli.outputs import check_writable_dir
from fnn.grad import GRAD_MODES
from fnn.layers import ACTIVATIONS
from fnn.losses import LOSSES
from fnn.train.optim import OPTIMIZERS, SCHEDULES

# Flags that may differ from the checkpoint's config on --resume.
RESUME_FLAGS = {"epochs", "out", "resume", "checkpoint_every", "no_progress", "overwrite"}
SCALE_FLAGS = ("coordinator", "num_processes", "process_id")


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths such as 128,64, got {text!r}"
        ) from None
    if not widths or any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"layer widths must be positive ints, got {text!r}")
    return widths


def _number(convert, ok, expected: str):
    """An argparse type: `convert(text)`, which must satisfy `ok`, else an error saying
    what was expected."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value:g}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive int")
_count = _number(int, lambda v: v >= 0, "an int >= 0")
_positive_float = _number(float, lambda v: v > 0, "a positive number")
_dropout_rate = _number(float, lambda v: 0 <= v < 1, "a dropout rate in [0, 1)")


def add_parser(subparsers) -> None:
    from fnn.data import DATASETS
    from fnn.experiment import TrainConfig, recipes

    d = TrainConfig()
    by_recipe = "(default: the data set's recipe, see --list-datasets)"
    parser = subparsers.add_parser(
        "train",
        help="train an MLP on a data set (digits by default) with hand-written gradients",
        description=(
            "Train a multi-layer perceptron (--model cnn: a small conv net for image data "
            "sets). Before training, the network's hand-written "
            "gradients are checked against jax.grad in float64 on 32 training examples. "
            "Each epoch is one compiled lax.scan over shuffled minibatches (the last "
            "n mod batch-size shuffled examples sit out that epoch); after each, the test "
            "split is evaluated. Writes OUT/metrics.json, OUT/curves.png and "
            "OUT/checkpoint.npz."
        ),
        epilog=(
            "recipes (network and training per data set, which flags override): "
            + "; ".join(f"{name}: {recipes.describe(name)}" for name in recipes.RECIPES)
            + ". exit codes: 0 trained; 1 the loss became NaN/inf (the last good checkpoint "
            "stays in OUT), the gradient check failed or a write failed mid-run; 2 bad "
            "usage, data, output directory or checkpoint."
        ),
    )
    # Defaults are None so that --resume can tell the flags given from those not given.
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=DATASETS,
        help=f"the data set; it picks the recipe (default: {d.dataset})",
    )
    data.add_argument(
        "--list-datasets",
        action="store_true",
        help="list the data sets and their recipes, then exit",
    )
    data.add_argument(
        "--data-dir", metavar="DIR", help="where MNIST / Fashion-MNIST files are (IDX or .npz)"
    )
    data.add_argument("--csv", metavar="PATH", help="a CSV file, for --dataset csv")
    data.add_argument(
        "--target-column",
        metavar="COL",
        help="the CSV's target column: a header name or an index (default: -1, the last)",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        choices=("mlp", "cnn"),
        help="mlp: dense layers of --hidden widths; cnn: conv2d(16, 3), conv2d(32, 3, "
        "stride 2), flatten, dense(64), for image data sets (digits as 8x8x1, MNIST "
        f"28x28x1) {by_recipe}",
    )
    model.add_argument(
        "--hidden",
        type=_widths,
        metavar="W1,W2,...",
        help=f"hidden layer widths, mlp only {by_recipe}",
    )
    model.add_argument("--activation", choices=sorted(ACTIVATIONS), help=by_recipe)
    model.add_argument(
        "--batch-norm",
        action="store_true",
        default=None,
        help="batch_norm before each hidden activation (mlp) or after each convolution (cnn)",
    )
    model.add_argument(
        "--dropout",
        type=_dropout_rate,
        metavar="RATE",
        help=f"dropout after each hidden dense layer's activation (default: {d.dropout:g})",
    )
    model.add_argument(
        "--loss",
        choices=sorted(LOSSES),
        help="(default: the recipe's, else the task's: softmax_cross_entropy for "
        "classification, sigmoid_binary_cross_entropy for binary, mean_squared_error for "
        "regression)",
    )
    model.add_argument(
        "--grad",
        choices=GRAD_MODES,
        help=f"hand-written backward or jax.grad (default: {d.grad})",
    )
    model.add_argument("--dtype", choices=("float32", "float64"), help=f"(default: {d.dtype})")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, help=by_recipe)
    opt.add_argument("--lr", type=_positive_float, help=f"learning rate {by_recipe}")
    opt.add_argument("--schedule", choices=SCHEDULES, help=by_recipe)
    opt.add_argument(
        "--clip-norm",
        type=_positive_float,
        metavar="C",
        help="clip gradients to global norm C (default: no clipping)",
    )
    opt.add_argument("--epochs", type=_positive_int, help=f"total epochs {by_recipe}")
    opt.add_argument("--batch-size", type=_positive_int, help=by_recipe)
    opt.add_argument(
        "--patience",
        type=_positive_int,
        help="stop after this many epochs without a lower test loss, keeping the best "
        "params (default: no early stopping)",
    )
    opt.add_argument("--seed", type=int, help=f"init, split and data-order seed ({d.seed})")
    run_group = parser.add_argument_group("outputs")
    run_group.add_argument(
        "--out", type=Path, metavar="DIR", help="output directory (default: runs/DATASET-TIME)"
    )
    run_group.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out DIR from its checkpoint up to --epochs in total",
    )
    run_group.add_argument(
        "--overwrite", action="store_true", help="replace a run already in --out DIR"
    )
    run_group.add_argument(
        "--checkpoint-every",
        type=_count,
        default=10,
        metavar="N",
        help="checkpoint every N epochs, and always at the end (0: at the end only)",
    )
    run_group.add_argument("--no-progress", action="store_true", help="no progress bar")
    run_group.add_argument(
        "--track-gradients",
        action="store_true",
        default=None,
        help="after each epoch, record each layer's delta RMS, gradient RMS and update-to-"
        "weight ratio from the hand-written backward (metrics.json) and draw OUT/"
        "gradients.png",
    )
    scale = parser.add_argument_group("scaling out (docs/scaling.md)")
    scale.add_argument(
        "--devices",
        type=_positive_int,
        metavar="N",
        help="data-parallel over N local devices per process, the batch split over them "
        "(default: all local devices; --batch-size must be a multiple of the total)",
    )
    scale.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="several processes: process 0's address, reachable by every process; bind "
        "it to loopback or a private network (its gRPC service has no authentication)",
    )
    scale.add_argument("--num-processes", type=_positive_int, metavar="N", help="(default: 1)")
    scale.add_argument("--process-id", type=int, metavar="I", help="this process, 0 to N-1")
    scale.add_argument(
        "--coordinator-timeout",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="seconds to wait for the coordinator and the other processes (default: 60)",
    )
    parser.set_defaults(run=run, flags=flags_of(parser))


def _error(error: BaseException, args: argparse.Namespace, code: int = 2) -> int:
    """Prints the library's error with the flags that fix it; returns the exit code."""
    print(f"fnn train: error: {describe(error, args.flags)}", file=sys.stderr)
    return code


def _config_values(args: argparse.Namespace) -> dict:
    """The config fields given on the command line."""
    names = {
        "dataset",
        "data_dir",
        "csv",
        "target_column",
        "model",
        "hidden",
        "activation",
        "batch_norm",
        "dropout",
        "loss",
        "grad",
        "optimizer",
        "lr",
        "schedule",
        "clip_norm",
        "epochs",
        "batch_size",
        "patience",
        "seed",
        "dtype",
        "track_gradients",
    }
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _start(args: argparse.Namespace, given: dict):
    """Builds the run (fresh or resumed) and its output directory, or raises."""
    import jax

    from fnn import experiment
    from fnn.train.checkpoint import read_metadata

    if args.resume:
        if args.out is None:
            raise ValueError("--resume needs --out DIR, the directory of the run to continue")
        saved = experiment.TrainConfig.from_dict(
            read_metadata(args.out / experiment.CHECKPOINT)["config"]
        )
        differing = [
            f"--{name.replace('_', '-')} {value} (the checkpoint has {getattr(saved, name)})"
            for name, value in given.items()
            if name not in RESUME_FLAGS and value != getattr(saved, name)
        ]
        if differing:
            raise ValueError(
                "--resume continues the saved configuration; these flags differ from it: "
                + "; ".join(differing)
            )
        if saved.dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        check_writable_dir(args.out, "out")
        return experiment.resume(args.out, epochs=given.get("epochs")), args.out
    config = experiment.TrainConfig.for_dataset(**given)  # the data set's recipe, then flags
    out = args.out or Path("runs") / f"{config.dataset}-{datetime.now():%Y%m%d-%H%M%S}"
    if (out / experiment.CHECKPOINT).exists() and not args.overwrite:
        raise ValueError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to "
            "replace it, or another --out"
        )
    if config.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    prepared = experiment.prepare(config)  # the config, the data: before any directory
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
        raise ValueError(
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


def run(args: argparse.Namespace) -> int:
    from fnn import experiment
    from fnn.data import DataError
    from fnn.tasks import metric_name
    from fnn.train import NonFiniteLossError
    from fnn.train.checkpoint import CheckpointError
    from fnn.train.distributed import is_main_process
    from fnn.train.parallel import check_batch_divisible, describe_mesh

    if args.list_datasets:
        from fnn.experiment import recipes

        for name in recipes.RECIPES:
            print(f"{name:<14} {recipes.describe(name)}")
        return 0
    start = time.perf_counter()
    given = _config_values(args)
    try:
        mesh = _mesh(args)
        prepared, out = _start(args, given)
        if mesh is not None:
            check_batch_divisible(prepared.config.batch_size, mesh)
    except (DataError, CheckpointError, ValueError, RuntimeError) as error:
        return _error(error, args)

    if not is_main_process():  # process 0 alone prints and writes
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        args.no_progress = True

    config, data = prepared.config, prepared.data
    overridden = sorted(set(given) & set(experiment.RECIPE_FIELDS))
    flags = ", ".join(f"--{name.replace('_', '-')}" for name in overridden)
    print(
        f"recipe: {config.dataset}'s ({experiment.recipes.describe(config.dataset)})"
        + (f", overridden by {flags}" if flags else "")
        + ("; resuming, with the checkpoint's config" if args.resume else "")
    )
    check = experiment.verify_gradients(prepared)
    verdict = "match" if check.passed else "DO NOT match"
    print(
        f"gradient check: the network's hand-written gradients {verdict} jax.grad on "
        f"{min(experiment.CHECK_EXAMPLES, data.x_train.shape[0])} {config.dataset} examples "
        f"(float64): max relative error {check.max_rel_err:.1e} (tolerance {check.rtol:.0e})"
    )
    if not check.passed:
        print(check, file=sys.stderr)
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
    label = "accuracy" if metric == "accuracy" else "R²"
    early = f", stopped early (best epoch {result.best_epoch})" if result.stopped_early else ""
    print(
        f"{config.dataset}: test {label} {record[f'test_{metric}']:.4f}, test loss "
        f"{record['test_loss']:.4f} after {result.epoch} epochs{early} "
        f"({record['wall_s']:.1f} s on {record['device']['platform']})"
    )
    names = [experiment.METRICS, experiment.CURVES, experiment.CHECKPOINT]
    names += [experiment.GRADIENTS] if config.track_gradients else []
    names = ", ".join(names)
    print(f"wrote {out}/: {names}")
    return 0

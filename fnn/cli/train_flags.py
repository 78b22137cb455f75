"""The flags of `fnn train`: the parser, the number types that check their values, and
which flags set the run's config."""

from __future__ import annotations

import argparse
from pathlib import Path

from fnn.cli.messages import flags_of
from fnn.grad import GRAD_MODES
from fnn.layers import ACTIVATIONS
from fnn.lm import RECOMPUTE
from fnn.train.optim import OPTIMIZERS, SCHEDULES


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


positive_int = _number(int, lambda v: v >= 1, "a positive int")
non_negative_int = _number(int, lambda v: v >= 0, "an int >= 0")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
_positive_float = _number(float, lambda v: v > 0, "a positive number")
_dropout_rate = _number(float, lambda v: 0 <= v < 1, "a dropout rate in [0, 1)")


def add_parser(subparsers, run) -> None:
    from fnn.experiment import recipes

    parser = subparsers.add_parser(
        "train",
        help="train a network with hand-written gradients: an MLP on digits by default, a "
        "GPT on a text file with --dataset text",
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
    add_model_flags(parser)
    _add_training_flags(parser)
    # the library's names for what a flag sets, where they differ from the flag's own
    # (`fnn.train.parallel.check_batch_divisible(batch_size, mesh)`: the mesh is --devices)
    parser.set_defaults(run=run, flags={**flags_of(parser), "mesh": "--devices"})


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The data and model flags (`fnn train`'s, shared with `fnn summary`)."""
    from fnn.data import DATASETS
    from fnn.experiment import TrainConfig
    from fnn.experiment.config import RUN_LOSSES

    d = TrainConfig()
    by_recipe = "(default: the data set's recipe, see --list-datasets)"
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
        "--text",
        metavar="FILE",
        help="a local text file, for --dataset text: its bytes are the tokens (vocab 256)",
    )
    data.add_argument(
        "--target-column",
        metavar="COL",
        help="the CSV's target column: a header name or an index (default: -1, the last)",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        choices=("mlp", "cnn", "gpt"),
        help="mlp: dense layers of --hidden widths; cnn: conv2d(16, 3), conv2d(32, 3, "
        "stride 2), flatten, dense(64), for image data sets (digits as 8x8x1, MNIST "
        f"28x28x1); gpt: a GPT-2-shaped language model, for --dataset text {by_recipe}",
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
    lm = parser.add_argument_group("gpt (--dataset text)")
    lm.add_argument("--context", type=positive_int, metavar="T",
                    help=f"tokens (bytes) per window {by_recipe}")  # fmt: skip
    lm.add_argument("--width", type=positive_int, metavar="D", help=by_recipe)
    lm.add_argument("--heads", type=positive_int, help=f"attention heads {by_recipe}")
    lm.add_argument("--blocks", type=positive_int, help=f"transformer blocks {by_recipe}")
    lm.add_argument(
        "--attention-block",
        type=positive_int,
        metavar="N",
        help="attention in blocks of N positions, O(T) memory (default: the plain layer)",
    )
    lm.add_argument(
        "--recompute",
        choices=RECOMPUTE,
        help=f"what each block's backward recomputes instead of keeping (default: {d.recompute})",
    )
    model.add_argument(
        "--loss",
        choices=sorted(RUN_LOSSES),
        help="(default: the recipe's, else the task's: softmax_cross_entropy for "
        "classification, sigmoid_binary_cross_entropy for binary, mean_squared_error for "
        "regression, lm_cross_entropy for text)",
    )
    model.add_argument(
        "--grad",
        choices=GRAD_MODES,
        help=f"hand-written backward or jax.grad (default: {d.grad})",
    )
    model.add_argument("--dtype", choices=("float32", "float64"), help=f"(default: {d.dtype})")
    model.add_argument("--batch-size", type=positive_int, help=by_recipe)


def _add_training_flags(parser: argparse.ArgumentParser) -> None:
    from fnn.experiment import TrainConfig

    d = TrainConfig()
    by_recipe = "(default: the data set's recipe, see --list-datasets)"
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
    opt.add_argument("--epochs", type=positive_int, help=f"total epochs {by_recipe}")
    opt.add_argument(
        "--patience",
        type=positive_int,
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
        type=non_negative_int,
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
        type=positive_int,
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
    scale.add_argument("--num-processes", type=positive_int, metavar="N", help="(default: 1)")
    scale.add_argument("--process-id", type=int, metavar="I", help="this process, 0 to N-1")
    scale.add_argument(
        "--coordinator-timeout",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="seconds to wait for the coordinator and the other processes (default: 60)",
    )


def list_datasets() -> int:
    """`--list-datasets`: each data set and its recipe; the exit code 0."""
    from fnn.experiment import recipes

    for name in recipes.RECIPES:
        print(f"{name:<14} {recipes.describe(name)}")
    return 0


def config_values(args: argparse.Namespace) -> dict:
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
        "text",
        "context",
        "width",
        "heads",
        "blocks",
        "attention_block",
        "recompute",
    }
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}

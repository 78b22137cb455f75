"""`fnn summary`: the network `fnn train` would build, layer by layer: output shape,
params, forward and backward FLOPs, and the residuals the hand-written backward and
`jax.grad` keep (`fnn.bench.summary`). Takes `fnn train`'s data and model flags."""

from __future__ import annotations

import argparse

from fnn.cli import train_flags
from fnn.cli.messages import flags_of


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "summary",
        help="show the network fnn train would build: shapes, params, FLOPs, residuals kept",
        description=(
            "Build the network `fnn train` would build with the same flags and print one "
            "row per layer: output shape, params, forward and backward FLOPs per example "
            "(XLA's cost analysis), the residuals its hand-written backward keeps and "
            "those jax.grad keeps (arrays and bytes per example), and the whole network's "
            "compiled temp memory in both modes at the batch size. Trains nothing."
        ),
    )
    train_flags.add_model_flags(parser)
    parser.set_defaults(run=run, flags=flags_of(parser))


def run(args: argparse.Namespace) -> int:
    """Errors (an `fnn.errors.FnnError`) exit 2 in `fnn.cli.main`; float64 gets 64-bit
    types from `fnn.cli.config` before this runs."""
    from fnn import bench, experiment

    if args.list_datasets:
        return train_flags.list_datasets()
    config = experiment.TrainConfig.for_dataset(**train_flags.config_values(args))
    prepared = experiment.prepare(config)
    x = prepared.data.x_train[: config.batch_size]
    print(f"{config.dataset}: {len(prepared.data.x_train)} training examples, {config.model}")
    print(bench.summary(prepared.net, x=x, dtype=config.dtype))
    return 0

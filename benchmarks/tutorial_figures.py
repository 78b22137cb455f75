"""The figures README.md quotes on why the tutorial's loss is flat, from
examples/seed_backprop.py's own functions: the losses of its three runs (the tutorial's
random targets; a learnable target with the tutorial's initialisation and with
glorot_normal), the two floors of the random targets, and the RMS of the deltas dZ3 and
dZ1 at iteration 0 (`fnn.backward_trace`). Float32, seed 0, lr 0.1, 10 000 steps, as the
example runs by default. Nothing here is timed.

    python benchmarks/tutorial_figures.py [--steps 10000] [--seed 0]

Writes benchmarks/results/tutorial_figures.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fnn

ROOT = Path(__file__).resolve().parents[1]


def seed_backprop():
    """examples/seed_backprop.py as a module."""
    spec = importlib.util.spec_from_file_location(
        "seed_backprop", ROOT / "examples" / "seed_backprop.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "tutorial_figures.json"
    )
    args = parser.parse_args(argv)
    example = seed_backprop()
    x, y = example.tutorial_data(args.seed)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    loss = fnn.sigmoid_binary_cross_entropy()
    runs = {
        "random_targets": (example.tutorial_network(), y),
        "learnable_tutorial_init": (example.tutorial_network(), example.learnable_targets(x)),
        "learnable_glorot_normal": (
            example.tutorial_network("glorot_normal"),
            example.learnable_targets(x),
        ),
    }
    figures = {}
    for label, (net, targets) in runs.items():
        params = fnn.init(net, jax.random.PRNGKey(args.seed), (100,))
        _, losses, snapshots = example.descend(
            net, loss, params, x, targets, lr=args.lr, steps=args.steps, every=args.steps
        )
        losses = np.asarray(losses, np.float64)
        rms = example.delta_rms(net, loss, snapshots, x, targets)  # at iteration 0
        figures[label] = {
            "loss_first": float(losses[0]),
            "loss_last": float(losses[-1]),
            "loss_min": float(losses.min()),
            "loss_max": float(losses.max()),
            "rms_at_iteration_0": {name: float(values[0]) for name, values in rms.items()},
        }
    constant, entropy = example.floors(y)
    result = {
        "machine": {"device": f"{jax.devices()[0].platform}", "jax": jax.__version__},
        "settings": {"steps": args.steps, "seed": args.seed, "lr": args.lr, "dtype": "float32"},
        "floors": {"predict_the_mean": constant, "predict_each_exactly": entropy},
        "runs": figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for label, run in figures.items():
        rms = run["rms_at_iteration_0"]
        print(
            f"{label}: loss {run['loss_first']:.5f} -> {run['loss_last']:.5f}; "
            f"dZ3 {rms['dZ3']:.3g}, dZ1 {rms['dZ1']:.3g}"
        )
    print(f"floors: {constant:.5f}, {entropy:.5f}; wrote {args.out}")


if __name__ == "__main__":
    main()

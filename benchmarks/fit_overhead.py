"""How much `fnn.train.fit` costs over the bare compiled loop, and digits epochs/s.

1. Time per step of `fit` (shuffle with a PRNG key, gather the batches, `lax.scan` the
   step, one host sync per epoch; no evaluation) against a bare `lax.scan` of the same
   step over batches cut once in advance. Goal: fit ≤ 1.10 × bare. Also reported: fit
   with the per-epoch evaluation of both splits that `fnn train` does.
2. Digits with `fnn train`'s defaults: epochs per second, manual backward vs jax.grad.

Repetitions alternate between the variants; medians are reported. Compilation is done
before timing. Writes benchmarks/results/fit_overhead.json.

    python benchmarks/fit_overhead.py [--reps 7] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from fnn import experiment
from fnn.train import fit, make_train_step, scan_steps


def machine() -> dict:
    """The CPU model and core count (lscpu), and the JAX device."""
    info = {"processor": platform.processor() or platform.machine(), "cores": None}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        info["processor"] = fields.get("Model name", info["processor"]).strip()
        info["cores"] = int(fields.get("CPU(s)", "0").strip() or 0)
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    device = jax.devices()[0]
    return {**info, "device": f"{device.platform}: {device.device_kind}", "jax": jax.__version__}


def bare_scan(run, mode: str):
    """A jitted `lax.scan` of the same step over pre-cut batches, and those batches."""
    step = make_train_step(run.net, run.loss, run.optimizer, mode, jit=False)
    data, batch = run.data, run.config.batch_size
    n_batches = data.x_train.shape[0] // batch
    xs = jnp.asarray(data.x_train[: n_batches * batch]).reshape(n_batches, batch, -1)
    ys = jnp.asarray(data.y_train[: n_batches * batch]).reshape(n_batches, batch)

    @jax.jit
    def epoch(train_state, xs, ys):
        train_state, losses = scan_steps(step, train_state, (xs, ys))
        return train_state, jnp.mean(losses)

    def run_epochs(epochs):
        train_state = run.train_state
        for _ in range(epochs):
            train_state, loss = epoch(train_state, xs, ys)
            float(loss)  # the same one host sync per epoch as fit
        return train_state.params

    return run_epochs, n_batches


def fit_epochs(run, mode: str, *, evaluate: bool):
    """`fit` from the same params and optimiser state, data already on the device (as the
    bare loop has it), so that only per-epoch and per-step costs differ."""
    train = tuple(jnp.asarray(a) for a in (run.data.x_train, run.data.y_train))
    test = tuple(jnp.asarray(a) for a in (run.data.x_test, run.data.y_test))
    data = run.data

    def run_epochs(epochs):
        return fit(
            run.net,
            run.loss,
            run.optimizer,
            run.train_state,
            train,
            test if evaluate else None,
            key=run.key,
            epochs=epochs,
            batch_size=run.config.batch_size,
            mode=mode,
            task=data.task,
            eval_train=evaluate,
            progress=False,
        ).state.params

    return run_epochs


def timed(fn, epochs) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(epochs))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "fit_overhead.json"
    )
    args = parser.parse_args()

    run = experiment.prepare(experiment.TrainConfig())  # fnn train's defaults, digits
    variants = {}
    bare, n_batches = bare_scan(run, "manual")
    variants["bare_scan"] = bare
    variants["fit"] = fit_epochs(run, "manual", evaluate=False)
    variants["fit_with_eval"] = fit_epochs(run, "manual", evaluate=True)
    variants["fit_with_eval_autodiff"] = fit_epochs(run, "autodiff", evaluate=True)
    for fn in variants.values():  # compile everything first
        timed(fn, 1)
    samples = {name: [] for name in variants}
    for _ in range(args.reps):
        for name, fn in variants.items():  # alternated
            samples[name].append(timed(fn, args.epochs))
    steps = args.epochs * n_batches
    median = {name: statistics.median(v) for name, v in samples.items()}
    per_step_us = {name: 1e6 * t / steps for name, t in median.items()}
    epochs_per_s = {name: args.epochs / t for name, t in median.items()}
    result = {
        "machine": machine(),
        "workload": {
            "dataset": "digits",
            "network": run.net.name,
            "batch_size": run.config.batch_size,
            "steps_per_epoch": n_batches,
            "epochs_per_rep": args.epochs,
            "reps": args.reps,
            "optimizer": f"{run.config.optimizer} lr {run.config.lr:g}",
            "dtype": run.config.dtype,
        },
        "median_s": median,
        "per_step_us": per_step_us,
        "fit_over_bare": median["fit"] / median["bare_scan"],
        "fit_with_eval_over_bare": median["fit_with_eval"] / median["bare_scan"],
        "epochs_per_s": {
            "manual": epochs_per_s["fit_with_eval"],
            "autodiff": epochs_per_s["fit_with_eval_autodiff"],
            "note": "fnn train's defaults: one epoch = training + evaluation of both splits",
        },
        "samples_s": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    host = result["machine"]
    print(f"{host['processor']} ({host['cores']} CPUs), jax {jax.__version__}")
    print(f"digits, {run.net.name}, batch {run.config.batch_size}, {n_batches} steps/epoch")
    for name in variants:
        print(f"  {name:<24} {per_step_us[name]:8.1f} µs/step  {epochs_per_s[name]:7.1f} epochs/s")
    print(f"fit / bare scan: {result['fit_over_bare']:.3f} (goal ≤ 1.10)")
    print(f"fit with evaluation / bare scan: {result['fit_with_eval_over_bare']:.3f}")
    print(
        f"epochs/s with evaluation: manual {epochs_per_s['fit_with_eval']:.1f}, "
        f"autodiff {epochs_per_s['fit_with_eval_autodiff']:.1f}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Why fnn's relu keeps a 1-bit mask: it against a relu that keeps its output.

A relu that keeps its output `y` and computes `dx = where(y > 0, dy, 0)` lets XLA fuse
the cheap `max(z + b, 0)` producer into the backward's select, so the backward reads the
dense layer's pre-activation `z` instead of `y`: `z` and `y` both stay alive until the
backward, twice the memory of sigmoid or tanh (whose expensive producers are not
duplicated). jax.grad's relu does the same. fnn's relu keeps `packbits(y > 0)` (1 bit per
element, produced by a reduction, which XLA does not duplicate into consumers), so `z`
dies in the forward.

    PYTHONPATH=. python benchmarks/relu_mask.py [WORKLOAD ...] [--repeats N] [--out PATH]

prints, per workload: compiled temp bytes and median step time (alternated rounds, ratio
to autodiff) for the output-keeping relu, fnn's bit-mask relu and autodiff, and the max
relative gradient difference of fnn's relu from autodiff; writes the same to
benchmarks/results/relu_mask.json (`--out`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fnn.bench.impls import dispatch_unit
from fnn.bench.measure import machine_info, rel_grad_err, time_rotation
from fnn.bench.problems import gradients, make_problem
from fnn.bench.workloads import WORKLOADS
from fnn.grad import value_and_grad
from fnn.layers import dense, serial
from fnn.layers.activations import elementwise
from fnn.train import TrainState, make_train_step


def relu_output():
    """relu keeping its output y: the form fnn used before the bit mask."""

    def fn(x):
        y = jnp.maximum(x, 0)
        return y, y

    def grad(y, dy):
        return jnp.where(y > 0, dy, 0)  # dx = dy ⊙ [y > 0]

    return elementwise("relu_output", fn, grad)


def net_with(workload, activation):
    layers = []
    for i, width in enumerate(workload.features):
        layers.append(dense(width))
        if i < len(workload.features) - 1:
            layers.append(activation())
    return serial(*layers)


def compare(name: str, repeats: int) -> dict:
    workload = WORKLOADS[name]
    problem = make_problem(workload, "float32")
    train_state = TrainState.create(problem.net, problem.params, problem.optimizer)
    batch = (problem.x, problem.y)
    nets = {"relu_output": net_with(workload, relu_output), "relu_bitmask": problem.net}
    compiled = {}
    for label, net in nets.items():
        step = make_train_step(net, problem.loss, problem.optimizer, "manual")
        compiled[label] = step.lower(train_state, batch).compile()
    step = make_train_step(problem.net, problem.loss, problem.optimizer, "autodiff")
    compiled["autodiff"] = step.lower(train_state, batch).compile()
    units = {k: dispatch_unit(c, batch, workload.steps) for k, c in compiled.items()}
    states = dict.fromkeys(compiled, train_state)
    times = time_rotation(units, states, repeats)
    ref = np.asarray(times["autodiff"])
    print(f"{name} (float32, {repeats} alternated rounds of {workload.steps} steps)")
    record = {"workload": name, "dtype": "float32", "repeats": repeats,
              "steps_per_round": workload.steps, "impls": {}}  # fmt: skip
    for label, c in compiled.items():
        temp_bytes = c.memory_analysis().temp_size_in_bytes
        step_ms = float(np.median(times[label]) / workload.steps * 1e3)
        ratio = float(np.median(np.asarray(times[label]) / ref))
        record["impls"][label] = {
            "temp_bytes": int(temp_bytes),
            "step_ms_median": step_ms,
            "ratio_vs_autodiff": ratio,  # median over rounds of the per-round ratio
        }
        print(f"  {label:<13} temp {temp_bytes / 2**20:7.2f} MiB  step {step_ms:8.2f} ms  "
              f"ratio {ratio:.3f}")  # fmt: skip
    vg = jax.jit(value_and_grad(nets["relu_bitmask"], problem.loss, "manual"))
    err = rel_grad_err(vg(*[problem.params, *batch])[1], gradients(problem, "autodiff"))
    record["relu_bitmask_rel_grad_err"] = float(err)
    print(f"  relu_bitmask rel_grad_err vs autodiff {err:.1e}")
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="relu residual: output vs 1-bit mask")
    parser.add_argument("workloads", nargs="*", default=["mlp_b256", "deep_relu"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "relu_mask.json"
    )
    args = parser.parse_args(argv)
    records = [compare(name, args.repeats) for name in args.workloads]
    result = {"machine": machine_info(), "records": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

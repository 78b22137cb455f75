"""Whose float32 gradient is the accurate one? Each implementation's gradient at a
workload's initial params against the float64 gradient of the same network and batch.

The grid flags a record "mismatch" when its gradient differs from jax.grad's in the
workload's own dtype (`rel_grad_err`). That reference is itself a float32 computation:
this script measures every implementation, jax.grad included, against float64
(`jax.grad` with 64-bit types), per parameter leaf, `max|g − g64| / max|g64|`. Writes
`results/reference_precision.json`.

    python benchmarks/reference_precision.py                      # mlp_b4096 and mlp_b256
    python benchmarks/reference_precision.py --workloads deep_relu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fnn
from fnn.bench.grid import build_impl
from fnn.bench.impls import Skip
from fnn.bench.measure import machine_info
from fnn.bench.problems import make_problem
from fnn.bench.workloads import WORKLOADS

RESULTS = Path(__file__).parent / "results" / "reference_precision.json"
IMPLS = ("manual", "autodiff", "numpy", "equinox", "flax_nnx", "torch")


def float64_gradient(problem):
    """jax.grad of the same network, loss and batch in float64."""
    as64 = lambda t: jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), t)  # noqa: E731
    y = np.asarray(problem.y)
    y = jnp.asarray(y) if y.dtype.kind in "iu" else jnp.asarray(y, np.float64)
    grad = jax.jit(fnn.value_and_grad(problem.net, problem.loss, "autodiff"))
    return grad(as64(problem.params), jnp.asarray(np.asarray(problem.x, np.float64)), y)[1]


def leaf_errors(grads, reference) -> list[float]:
    out = []
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True):
        g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
        out.append(float(np.max(np.abs(g - r)) / np.max(np.abs(r))))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="mlp_b4096,mlp_b256")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = {}
    with jax.enable_x64(True):
        for name in args.workloads.split(","):
            problem = make_problem(WORKLOADS[name], "float32")
            g64 = float64_gradient(problem)
            rows[name] = {}
            for impl in IMPLS:
                try:
                    grads = build_impl(impl, problem).grads()
                except Skip as why:
                    print(f"{name} {impl}: skipped ({why})")
                    continue
                errors = leaf_errors(grads, g64)
                rows[name][impl] = {"max": max(errors), "per_leaf": errors}
                print(f"{name:<10} {impl:<9} float32 against float64: max {max(errors):.1e} "
                      f"(per leaf {', '.join(f'{e:.0e}' for e in errors)})")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_info(), "rows": rows}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

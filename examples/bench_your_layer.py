"""Write it, check it, measure it: a layer of your own, two hand-written backwards of it,
raced against each other and against `jax.vjp`.

The layer is PReLU (the README's), `y = x` where x > 0, else `a ⊙ x`, with a slope `a`
learnt per feature. Its backward needs to know where x > 0, and the slope's gradient
needs the negative part of x:

    dx = dy ⊙ (1 if x > 0 else a)          da = Σ_batch dy ⊙ x ⊙ [x ≤ 0]

Written two ways:

- `prelu()` keeps x;
- `prelu_mask()` keeps where x > 0 as 1 bit per element, and the output y, from which
  the negative part of x is `y / a` (for a ≠ 0). In a network the next dense layer keeps
  y anyway, so this backward costs the network 1 bit per element instead of x.

Each is checked against `jax.vjp` and finite differences (`fnn.check_layer`), then timed
with `fnn.bench.compare_layer`, alone and between two dense layers, where the residuals
kept show the difference. The table is printed; the JSON, CSV, markdown and charts go to
`--out`.

    python examples/bench_your_layer.py --out examples/out/bench_your_layer
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax.numpy as jnp

import fnn
from fnn.layers.parts import pack_mask, unpack_mask


def _init(initial_slope):
    def init(key, in_shape, dtype=jnp.float32):
        del key
        return tuple(in_shape), {"a": jnp.full((in_shape[-1],), initial_slope, dtype)}

    return init


def prelu(initial_slope: float = 0.25) -> fnn.Layer:
    """PReLU keeping its input x."""

    def forward(params, x):
        return jnp.where(x > 0, x, params["a"] * x), x  # residual: x

    def backward(params, x, dy):
        negative = x <= 0
        axes = tuple(range(x.ndim - 1))
        da = jnp.sum(jnp.where(negative, dy * x, 0), axis=axes)  # da = Σ dy ⊙ x ⊙ [x ≤ 0]
        dx = jnp.where(negative, params["a"] * dy, dy)  # dx = dy ⊙ (1 if x > 0 else a)
        return {"a": da}, dx

    return fnn.Layer(_init(initial_slope), forward, backward, "prelu")


def prelu_mask(initial_slope: float = 0.25) -> fnn.Layer:
    """PReLU keeping where x > 0 (1 bit per element) and its output y."""

    def forward(params, x):
        positive = x > 0
        y = jnp.where(positive, x, params["a"] * x)
        return y, (pack_mask(positive), y)  # residuals: 1 bit per element, and y

    def backward(params, residuals, dy):
        bits, y = residuals
        positive = unpack_mask(bits, dy)
        axes = tuple(range(y.ndim - 1))
        x_negative = y / params["a"]  # where x ≤ 0, y = a·x, so x = y/a (a ≠ 0)
        da = jnp.sum(jnp.where(positive, 0, dy * x_negative), axis=axes)  # Σ dy ⊙ x ⊙ [x ≤ 0]
        dx = jnp.where(positive, dy, params["a"] * dy)  # dx = dy ⊙ (1 if x > 0 else a)
        return {"a": da}, dx

    return fnn.Layer(_init(initial_slope), forward, backward, "prelu_mask")


def block(layer: fnn.Layer, width: int) -> fnn.Layer:
    """`layer` between two dense layers, as it sits in a network."""
    return fnn.serial(fnn.dense(width), layer, fnn.dense(width))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="fewer timed rounds")
    parser.add_argument("--out", type=Path, default=Path("examples/out/bench_your_layer"))
    args = parser.parse_args(argv)

    # 1. Check both backwards: float64, against jax.vjp and finite differences.
    for layer in (prelu(), prelu_mask()):
        result = fnn.check_layer(layer, (8,))
        print(result)
        assert result.passed, result

    # 2. Race them, alone and in a block, against jax.vjp of the forward.
    width, batch = args.width, args.batch
    records = fnn.bench.compare_layer(
        prelu(), (width,), batch=batch, impls=["manual", "autodiff", ("prelu_mask", prelu_mask())],
        quick=args.quick,
    )  # fmt: skip
    records += fnn.bench.compare_layer(
        block(prelu(), width),
        (width,),
        batch=batch,
        impls=["manual", "autodiff", ("prelu_mask", block(prelu_mask(), width))],
        quick=args.quick,
    )

    # 3. The table, then the files (JSON, CSV, markdown, charts).
    print(f"\n{'layer':<40} {'impl':<11} {'time':>10} {'temp MiB':>9} {'kept':>14} {'err':>8}")
    for r in records:
        kept = f"{r['residual_arrays']} ({r['residual_bytes'] / 2**20:.2f} MiB)"
        print(
            f"{r['workload'][:40]:<40} {r['impl']:<11} {r['step_ms_median'] * 1e3:8.1f} µs "
            f"{r['temp_bytes'] / 2**20:9.2f} {kept:>14} {r['rel_grad_err']:8.1e}"
        )
    paths = fnn.bench.report(records, args.out, title="PReLU: two hand-written backwards")
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return records


if __name__ == "__main__":
    main()

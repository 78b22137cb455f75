"""Manual against automatic differentiation, layer by layer.

`fnn bench` times whole networks. This script times single layers and small blocks, each
as the gradient of a mean squared error on `(batch, T, D)` activations, manual against
jax.grad, in alternated rounds in one process: the transformer block's parts (attention
causal and not, layer_norm, the feed-forward block dense→gelu→dense, dense on a 3-D input,
gelu) and the random and stateful layers in training mode (batch_norm, dropout, which
run through `fnn.value_grad_and_state` with a key and running statistics). It prints and
writes (with `--out`) per part the median times, the median of the per-round ratios and
the compiled temp memory.

    PYTHONPATH=. python benchmarks/layer_parts.py [--rounds N] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import jax

import fnn
from fnn.bench.measure import machine_info
from fnn.layers import multi_head_attention

BATCH, T, D, FFN = 16, 64, 128, 512


def parts() -> dict[str, fnn.Layer]:
    return {
        "attention_causal": multi_head_attention(4, causal=True),
        "attention": multi_head_attention(4),
        "layer_norm": fnn.layer_norm(),
        "ffn_dense_gelu_dense": fnn.serial(fnn.dense(FFN), fnn.gelu(), fnn.dense(D)),
        "dense_3d_input": fnn.dense(D),
        "gelu": fnn.gelu(),
        "batch_norm_train": fnn.batch_norm(),
        "dropout_train": fnn.dropout(0.1),
        "dense_batch_norm_relu": fnn.serial(fnn.dense(D), fnn.batch_norm(), fnn.relu()),
    }


def measure(name: str, net: fnn.Layer, rounds: int, calls: int = 5) -> dict:
    loss = fnn.mean_squared_error()
    x = jax.random.normal(jax.random.PRNGKey(0), (BATCH, T, D))
    y = jax.random.normal(jax.random.PRNGKey(1), (BATCH, T, D))
    params = fnn.init(net, jax.random.PRNGKey(2), (T, D))
    # training mode: a dropout key and batch_norm's running statistics, updated per call
    ctx = fnn.Ctx(True, jax.random.PRNGKey(3), fnn.init_state(net, params))
    fns = {
        m: jax.jit(functools.partial(fnn.value_grad_and_state(net, loss, m), ctx=ctx))
        for m in ("manual", "autodiff")
    }
    for f in fns.values():
        jax.block_until_ready(f(params, x, y))
    times: dict[str, list[float]] = {m: [] for m in fns}
    for _ in range(rounds):  # alternated: both modes see the same load
        for mode, f in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                out = f(params, x, y)
            jax.block_until_ready(out)
            times[mode].append((time.perf_counter() - start) / calls)
    ratios = [a / b for a, b in zip(times["manual"], times["autodiff"], strict=True)]
    temp = {
        m: f.lower(params, x, y).compile().memory_analysis().temp_size_in_bytes
        for m, f in fns.items()
    }
    return {
        "part": name,
        "manual_ms": 1e3 * statistics.median(times["manual"]),
        "autodiff_ms": 1e3 * statistics.median(times["autodiff"]),
        "ratio": statistics.median(ratios),
        "manual_temp_mib": temp["manual"] / 2**20,
        "autodiff_temp_mib": temp["autodiff"] / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", help="write the records and the machine to this JSON file")
    args = parser.parse_args()
    records = []
    for name, net in parts().items():
        r = measure(name, net, args.rounds)
        records.append(r)
        print(
            f"{name:22s} manual {r['manual_ms']:7.2f} ms  autodiff {r['autodiff_ms']:7.2f} ms  "
            f"ratio {r['ratio']:.3f}  temp {r['manual_temp_mib']:.2f} / "
            f"{r['autodiff_temp_mib']:.2f} MiB"
        )
    if args.out:
        machine = machine_info()
        shape = {"batch": BATCH, "T": T, "D": D, "ffn": FFN, "rounds": args.rounds}
        with open(args.out, "w") as f:
            json.dump({"machine": machine, "shape": shape, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()

"""Sampling with and without the key-value cache (`fnn.generate(kv_cache=...)`), on the
text recipe's gpt (context 128, width 128, 4 heads, 4 blocks; random params: the speed
does not depend on what the model learnt), one prompt byte and `--tokens` new bytes.

Both loops are compiled first (the compile time is recorded apart), then timed in
alternation, the order of each round drawn from a seeded generator, `--rounds` rounds.
Both produce the same tokens (checked).

    python benchmarks/generate_speed.py [--tokens 300] [--rounds 5] [--batch 1]

Writes benchmarks/results/generate_speed.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from fit_overhead import machine

import fnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "generate_speed.json"
    )
    args = parser.parse_args()
    net = fnn.gpt(256, args.context, args.width, args.heads, args.blocks, head="fused")
    params = fnn.init(net, jax.random.PRNGKey(0), (args.context,))
    prompt = np.full((args.batch, 1), ord("d"), np.int32)

    def run(kv_cache: bool):
        ids = fnn.generate(net, params, prompt, heads=args.heads, tokens=args.tokens,
                           key=jax.random.PRNGKey(1), kv_cache=kv_cache)  # fmt: skip
        return np.asarray(ids)

    modes = {"kv_cache": True, "window": False}
    compile_s, outputs = {}, {}
    for name, kv in modes.items():
        start = time.perf_counter()
        outputs[name] = run(kv)  # the first call compiles
        compile_s[name] = time.perf_counter() - start
    assert np.array_equal(outputs["kv_cache"], outputs["window"]), "the two modes differ"
    times: dict[str, list[float]] = {name: [] for name in modes}
    order_rng, orders = random.Random(0), []
    for _ in range(args.rounds):
        order = list(modes)
        order_rng.shuffle(order)
        orders.append(order)
        for name in order:
            start = time.perf_counter()
            run(modes[name])
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "machine": machine(),
        "model": net.name,
        "batch": args.batch,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "orders": orders,
        "first_call_s": compile_s,
        "seconds": times,
        "median_s": median,
        "ms_per_token": {name: 1e3 * s / args.tokens for name, s in median.items()},
        "speedup_of_cache": median["window"] / median["kv_cache"],
        "same_tokens": True,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name in modes:
        print(f"{name:<9} {result['ms_per_token'][name]:7.2f} ms/token  (first call "
              f"{compile_s[name]:.1f} s)")  # fmt: skip
    print(f"the cache is {result['speedup_of_cache']:.2f} x faster; wrote {args.out}")


if __name__ == "__main__":
    main()

"""Attention's memory and time against the sequence length T: the dense layer against the
blockwise one (`multi_head_attention(..., block_size=b)`, O(T) memory).

One step is one forward and backward of causal `multi_head_attention(4)` on `x: (1, T,
256)`, float32, for a fixed random cotangent `dy`: the gradients of the params and of x.
The implementations:

  dense_manual        (a) today's layer, its hand-written backward
  dense_vjp           (b) today's layer, jax.vjp of its forward
  blockwise_manual    (c) the blockwise layer, its hand-written backward
  blockwise_ckpt_vjp  (d) jax.vjp through the blockwise forward wrapped in jax.checkpoint
  blockwise_manual_aa (c) again under another name: an A/A row, the timing noise

Per (implementation, T): XLA's compiled temp, argument and output bytes
(`memory_analysis()`), the residual bytes kept between forward and backward (the inputs
params and x not counted: `fnn.bench.measure.count_kept` of the hand-written residuals, JAX's
saved-residuals analysis for jax.vjp), and the median step time over rounds, each round
running every implementation once in a seeded random order (recorded), after one warm-up
call each. Timing is skipped (memory only) where the step is estimated (from the shorter
T, quadratically) to take over 20 s or its memory exceeds 8 GiB. Writes
benchmarks/results/attention_memory_cpu.json and .png and prints a table.

    PYTHONPATH=. python benchmarks/attention_memory.py [--lengths 256 512 ...] [--block 128]
        [--rounds 7] [--seed 0] [--memory-only] [--quick] [--out PATH_WITHOUT_SUFFIX]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fnn.bench.measure import (
    count_kept,
    count_vjp_residuals,
    cpu_model,
    machine_info,
    memory_figures,
)
from fnn.layers import multi_head_attention

HEADS, WIDTH, BATCH = 4, 256, 1
LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
MAX_STEP_S, MAX_BYTES = 20.0, 8 * 2**30
MIN_UNIT_S = 0.05  # a timed unit repeats the step until it takes about this long
OUT = Path(__file__).resolve().parent / "results" / "attention_memory_cpu"
GOALS = [  # (what, T, implementation, reference, the largest ratio allowed)
    ("temp_bytes", 8192, "blockwise_manual", "dense_vjp", 1 / 20),
    ("median_s", 8192, "blockwise_manual", "blockwise_ckpt_vjp", 1.5),
    ("median_s", 256, "blockwise_manual", "dense_manual", 1.0),
]


def implementations(block: int) -> dict[str, tuple[Callable, Callable]]:
    """name -> (step(params, x, dy) -> (dparams, dx), residuals(params, x, dy) -> bytes)."""
    dense = multi_head_attention(HEADS, causal=True)
    blockwise = multi_head_attention(HEADS, causal=True, block_size=block)

    def manual(layer):
        def step(p, x, dy):
            return layer.backward(p, layer.forward(p, x)[1], dy)

        def kept(p, x, dy):
            return count_kept(lambda p, x: layer.forward(p, x)[1], p, x)[1]

        return step, kept

    def autodiff(forward):
        def step(p, x, dy):
            return jax.vjp(forward, p, x)[1](dy)

        def kept(p, x, dy):
            return count_vjp_residuals(forward, dy, p, x)[1]

        return step, kept

    return {
        "dense_manual": manual(dense),
        "dense_vjp": autodiff(lambda p, x: dense.forward(p, x)[0]),
        "blockwise_manual": manual(blockwise),
        "blockwise_ckpt_vjp": autodiff(jax.checkpoint(lambda p, x: blockwise.forward(p, x)[0])),
        "blockwise_manual_aa": manual(blockwise),
    }


def problem(T: int):
    """(params, x, dy), float32, drawn from fixed seeds."""
    layer = multi_head_attention(HEADS, causal=True)
    params = layer.init(jax.random.PRNGKey(0), (T, WIDTH), jnp.float32)[1]
    x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, T, WIDTH), jnp.float32)
    dy = jax.random.normal(jax.random.PRNGKey(2), (BATCH, T, WIDTH), jnp.float32)
    return params, x, dy


def _seconds(compiled, args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return time.perf_counter() - start


def measure_length(T, impls, args, estimates, rng) -> tuple[list[dict], list[list[str]]]:
    """The records of every implementation at length T and the order of each round;
    `estimates` maps a name to its predicted step seconds (from the shorter T) and is
    updated with the measured ones."""
    params, x, dy = problem(T)
    records, units = {}, {}
    for name, (step, kept) in impls.items():
        compiled = jax.jit(step).lower(params, x, dy).compile()
        memory = memory_figures(compiled)
        record = {"impl": name, "T": T, **memory, "residual_bytes": kept(params, x, dy)}
        total = sum(v or 0 for v in memory.values())
        if args.memory_only:
            record["skipped_timing"] = "--memory-only"
        elif total > MAX_BYTES:
            record["skipped_timing"] = f"memory {total / 2**30:.1f} GiB > {MAX_BYTES / 2**30:.0f}"
        elif estimates.get(name, 0) > MAX_STEP_S:
            record["skipped_timing"] = f"estimated step {estimates[name]:.0f} s > {MAX_STEP_S:.0f}"
        else:
            warm = _seconds(compiled, (params, x, dy))  # warm-up
            if warm < 1.0:  # the first call pays once-only costs: time a second
                warm = _seconds(compiled, (params, x, dy))
            calls = max(1, round(MIN_UNIT_S / max(warm, 1e-6)))
            units[name] = (compiled, calls)
            record.update(calls_per_unit=calls, times_s=[])
        records[name] = record
    orders = []
    for _ in range(args.rounds if units else 0):
        order = [str(name) for name in rng.permutation(list(units))]
        orders.append(order)
        for name in order:
            compiled, calls = units[name]
            start = time.perf_counter()
            for _ in range(calls):
                out = compiled(params, x, dy)
            jax.block_until_ready(out)
            records[name]["times_s"].append((time.perf_counter() - start) / calls)
    for name, record in records.items():
        if "times_s" in record:
            record["median_s"] = statistics.median(record["times_s"])
            estimates[name] = record["median_s"] * 4  # the next T, doubled: quadratic
        else:
            estimates[name] = estimates.get(name, 0) * 4
    return list(records.values()), orders


def goals(records: list[dict]) -> dict[str, dict]:
    """Each goal's measured ratio and whether it is met (None where not measured)."""
    by = {(r["impl"], r["T"]): r for r in records}
    out = {}
    for field, T, impl, ref, bound in GOALS:
        a, b = by.get((impl, T), {}).get(field), by.get((ref, T), {}).get(field)
        ratio = a / b if a is not None and b else None
        text = f"{impl} {field} ≤ {bound:g} × {ref}'s at T={T}"
        out[text] = {
            "ratio": ratio,
            "bound": bound,
            "met": None if ratio is None else ratio <= bound,
        }
    return out


def table(records: list[dict]) -> str:
    lines = [f"{'impl':<20} {'T':>5} {'temp MiB':>10} {'resid MiB':>10} {'step ms':>10}"]
    for r in records:
        step = f"{1e3 * r['median_s']:10.1f}" if "median_s" in r else f"{'skipped':>10}"
        lines.append(
            f"{r['impl']:<20} {r['T']:>5} {r['temp_bytes'] / 2**20:10.1f} "
            f"{r['residual_bytes'] / 2**20:10.2f} {step}"
        )
    return "\n".join(lines)


def plot(records: list[dict], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    memory, timing = fig.subplots(1, 2)
    for name in dict.fromkeys(r["impl"] for r in records):
        rows = [r for r in records if r["impl"] == name]
        style = "--" if name.endswith("_aa") else "-"
        memory.plot(
            [r["T"] for r in rows], [r["temp_bytes"] / 2**20 for r in rows], "o" + style, label=name
        )
        timed = [r for r in rows if "median_s" in r]
        if timed:
            T, ms = [r["T"] for r in timed], [1e3 * r["median_s"] for r in timed]
            timing.plot(T, ms, "o" + style, label=name)
    for ax, label in ((memory, "compiled temp memory (MiB)"), (timing, "median step time (ms)")):
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(label)
        if ax.lines:
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize="small")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0, help="seeds the order of each round")
    parser.add_argument("--memory-only", action="store_true", help="compile, do not time")
    parser.add_argument("--quick", action="store_true", help="T = 64, 128, block 32, 2 rounds")
    parser.add_argument("--out", type=Path, default=OUT, help="path without suffix")
    args = parser.parse_args()
    if args.quick:  # a smoke run, written next to the temporary files, not the results
        args.lengths, args.block, args.rounds = [64, 128], 32, 2
        if args.out == OUT:
            args.out = Path(tempfile.gettempdir()) / "attention_memory_quick"
    impls = implementations(args.block)
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()
    records, orders, estimates = [], {}, {}
    for T in sorted(args.lengths):
        measured, orders[T] = measure_length(T, impls, args, estimates, rng)
        records += measured
        print(table([r for r in records if r["T"] == T]).split("\n", 1)[1], flush=True)
    setup = {"heads": HEADS, "width": WIDTH, "batch": BATCH, "dtype": "float32", "causal": True}
    result = {
        "machine": {
            **machine_info(),
            "processor": platform.processor(),
            "cpu_model_name": cpu_model(),
            "cores": os.cpu_count(),
        },
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "setup": {**setup, "block_size": args.block, "rounds": args.rounds, "seed": args.seed},
        "residual_bytes": "kept between forward and backward, params and x not counted",
        "skip_rule": f"no timing where the step is estimated over {MAX_STEP_S:.0f} s or its "
        f"memory (temp + arguments + outputs) exceeds {MAX_BYTES / 2**30:.0f} GiB",
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "caveat": "a 2-core machine shared with other jobs: timings are noisy; the A/A "
        "row (blockwise_manual_aa, the same program as blockwise_manual) shows how much",
        "goals": goals(records),
        "orders": orders,  # per T, the order of the implementations in each round
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    title = (
        f"causal multi_head_attention({HEADS}), D={WIDTH}, batch {BATCH}, float32, "
        f"block {args.block}; {cpu_model()}, {os.cpu_count()} cores"
    )
    plot(records, args.out.with_suffix(".png"), title)
    print(table(records))
    for text, goal in result["goals"].items():
        verdict = {None: "not measured", True: "met", False: "NOT met"}[goal["met"]]
        ratio = "" if goal["ratio"] is None else f"ratio {goal['ratio']:.3f}, "
        print(f"{text}: {ratio}{verdict}")


if __name__ == "__main__":
    main()

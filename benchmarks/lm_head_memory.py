"""The fused language-model head against the unfused one: compiled memory and time.

Value and gradient (w.r.t. `h` and `table`) of the mean next-token cross-entropy of the
logits `h·tableᵀ`, float32, `rows = batch·T` positions of width `D`, vocabulary `V`:

- `fused_<c>`: `fnn.lm_cross_entropy(c)`, which keeps the per-row log-sum-exp and
  recomputes the logits chunk by chunk in its backward (fnn/lm/head.py);
  `fused_<c>_again` is the same program compiled a second time (the A/A row: the spread
  between two identical entries);
- `unfused_manual`: `tied_logits`, `softmax_cross_entropy`'s hand-written backward, then
  `dh = dz·table` and `dtable = dzᵀ·h` by hand: keeps the `(rows, V)` log-probabilities;
- `unfused_autodiff`: `jax.value_and_grad` of `softmax_cross_entropy(tied_logits(...))`.

Per implementation: `temp_bytes` (and argument, output bytes) from
`jax.jit(f).lower(...).compile().memory_analysis()`; `residual_arrays`/`residual_bytes`,
what the backward keeps besides the arguments (the residual tree, via `jax.eval_shape`,
for the hand-written ones; JAX's saved-residuals analysis for autodiff); the median time
of a call over rounds in which the order of the implementations is drawn anew (seeded,
recorded), each after a warm-up call; `ratio` is the median over rounds of the call's
time over `unfused_autodiff`'s in the same round. A vocabulary is timed only when every
warm-up call took less than `--max-call-s`; its rounds are cut to fit `--budget-s`.
Compiled with XLA's default flags.

    PYTHONPATH=. python benchmarks/lm_head_memory.py [--vocab 256 50257] [--rows 4096]
        [--batch 4] [--width 256] [--chunk 1024] [--rounds 15] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fnn
from fnn.bench.measure import (
    count_kept,
    count_residuals,
    machine_info,
    memory_figures,
    rel_grad_err,
)
from fnn.lm.head import HeadInput, tied_logits

OUT = Path(__file__).parent / "results" / "lm_head_memory_cpu.json"
REFERENCE = "unfused_autodiff"


def unfused_manual(pred, ids):
    """The plain head by hand: logits, softmax_cross_entropy and its backward, the head's
    two matmuls."""
    loss = fnn.softmax_cross_entropy()
    value, residuals = loss.forward(tied_logits(pred), ids)  # keeps log softmax(z): (B, T, V)
    dz = loss.backward(residuals)  # dz = (softmax(z) − onehot(y))/N
    dh = jnp.einsum("btv,vd->btd", dz, pred.table)  # dh = dz·table
    dtable = jnp.einsum("btv,btd->vd", dz, pred.h)  # dtable = dzᵀ·h
    return value, HeadInput(dh, dtable)


def unfused_residuals(pred, ids):
    return fnn.softmax_cross_entropy().forward(tied_logits(pred), ids)[1]


def unfused_value(pred, ids):
    return fnn.softmax_cross_entropy().forward(tied_logits(pred), ids)[0]


def kept_by(residuals):
    """`(pred, ids) -> (arrays, bytes)` of the residual tree `residuals(pred, ids)`."""
    return lambda pred, ids: count_kept(residuals, pred, ids)


def implementations(chunks):
    """name -> (value-and-grad function, residual counter `(pred, ids) -> (arrays, bytes)`)."""
    impls = {}
    for chunk in chunks:
        loss = fnn.lm_cross_entropy(chunk)

        def fused(pred, ids, loss=loss):
            value, residuals = loss.forward(pred, ids)
            return value, loss.backward(residuals)

        impls[f"fused_{chunk}"] = fused, kept_by(lambda p, t, loss=loss: loss.forward(p, t)[1])
    first = f"fused_{chunks[0]}"
    impls[f"{first}_again"] = (lambda *a, f=impls[first][0]: f(*a)), impls[first][1]  # A/A
    impls["unfused_manual"] = unfused_manual, kept_by(unfused_residuals)
    impls[REFERENCE] = (
        jax.value_and_grad(unfused_value),
        lambda pred, ids: count_residuals(unfused_value, pred, ids),
    )
    return impls


def problem(batch, rows, width, vocab, seed):
    k_h, k_table, k_ids = jax.random.split(jax.random.PRNGKey(seed), 3)
    h = jax.random.normal(k_h, (batch, rows // batch, width), jnp.float32)
    table = 0.02 * jax.random.normal(k_table, (vocab, width), jnp.float32)  # GPT-2's init
    ids = jax.random.randint(k_ids, (batch, rows // batch), 0, vocab)
    return HeadInput(h, table), ids


def call_s(fn, args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def measure(vocab, args, rng) -> dict:
    """Memory and (when cheap enough) time of every implementation at one vocabulary."""
    pred, ids = problem(args.batch, args.rows, args.width, vocab, args.seed)
    impls = implementations(list(dict.fromkeys([1024, args.chunk])))
    compiled, records = {}, {}
    for name, (fn, kept) in impls.items():
        compiled[name] = jax.jit(fn).lower(pred, ids).compile()
        arrays, nbytes = kept(pred, ids)
        records[name] = {
            "impl": name,
            **memory_figures(compiled[name]),
            "residual_arrays": arrays,
            "residual_bytes": nbytes,
        }
    warm = {name: call_s(c, (pred, ids)) for name, c in compiled.items()}  # warm-up calls
    timed = max(warm.values()) < args.max_call_s
    rounds = min(args.rounds, max(3, int(args.budget_s / sum(warm.values())))) if timed else 0
    times, orders = {name: [] for name in compiled}, []
    for _ in range(rounds):
        order = [str(n) for n in rng.permutation(list(compiled))]
        orders.append(order)
        for name in order:
            times[name].append(call_s(compiled[name], (pred, ids)))
    reference = jax.device_get(compiled[REFERENCE](pred, ids))
    for name, record in records.items():
        value, grads = jax.device_get(compiled[name](pred, ids))
        ratios = [a / b for a, b in zip(times[name], times[REFERENCE], strict=True)]
        record.update(
            warmup_ms=1e3 * warm[name],
            median_ms=1e3 * statistics.median(times[name]) if rounds else None,
            ratio=statistics.median(ratios) if rounds else None,
            times_ms=[round(1e3 * t, 3) for t in times[name]],  # in round order
            value_diff=float(abs(value - reference[0])),
            rel_grad_err=rel_grad_err(grads, reference[1]),
        )
    return {"vocab": vocab, "rounds": rounds, "orders": orders, "records": list(records.values())}


def table(results) -> str:
    def mib(nbytes, digits=1):
        return f"{nbytes / 2**20:9.{digits}f}" if nbytes is not None else f"{'-':>9}"

    lines = [
        f"{'V':>6} {'implementation':<22} {'temp MiB':>9} {'kept MiB':>9} {'median ms':>10} "
        f"{'ratio':>6} {'rel grad err':>12}"
    ]
    for result in results:
        for r in result["records"]:
            ms = f"{r['median_ms']:10.1f}" if r["median_ms"] is not None else f"{'-':>10}"
            ratio = f"{r['ratio']:6.3f}" if r["ratio"] is not None else f"{'-':>6}"
            lines.append(
                f"{result['vocab']:>6} {r['impl']:<22} {mib(r['temp_bytes'])} "
                f"{mib(r['residual_bytes'], 3)} {ms} {ratio} {r['rel_grad_err']:12.1e}"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[256, 50257])
    parser.add_argument("--rows", type=int, default=4096, help="batch·T")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--width", type=int, default=256, help="D")
    parser.add_argument("--chunk", type=int, default=1024, help="a second chunk size")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--max-call-s", type=float, default=10.0)
    parser.add_argument("--budget-s", type=float, default=120.0, help="timing per vocabulary")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.rows % args.batch:
        parser.error(f"--rows {args.rows} must be a multiple of --batch {args.batch}")
    rng = np.random.default_rng(args.seed)
    results = [measure(vocab, args, rng) for vocab in args.vocab]
    print(table(results))
    run = {
        "machine": machine_info(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(run, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

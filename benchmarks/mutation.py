"""The mutation score of `fnn check`: how many classic backward mistakes it catches.

Every mutant of every built-in's backward code (`fnn.check.mutants`: a sign flip, a
factor of 2, a missing transpose, a dropped term, a wrong reduction axis, one at a time)
is swapped in, and the catalogue items that run the mutated function (found by one
traced pass over the whole catalogue) are checked, float64 with finite differences,
cheapest first, until one fails. Writes benchmarks/results/mutation.json (per mutant:
file, function, line, operator, the diff of the line, the items run, caught or not and
how) and prints the score, caught / non-equivalent mutants.

    python benchmarks/mutation.py                 # everything (minutes)
    python benchmarks/mutation.py --only dense    # a module or a function
    python benchmarks/mutation.py --only blockwise_backward --limit 20

The compiles run with the test suite's XLA flags (tests/conftest.py: backend
optimisations off, about 3x faster to compile a small program; the operations are the
same).
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = " ".join(
    [
        os.environ.get("XLA_FLAGS", ""),
        "--xla_backend_optimization_level=0",
        "--xla_cpu_use_fusion_emitters=false",
        "--xla_cpu_parallel_codegen_split_count=1",
    ]
).strip()

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

from fnn.check import CASES, run_checks  # noqa: E402
from fnn.check.mutate import MutationReport, builtin_mutants, run_mutant  # noqa: E402

OUT = Path(__file__).parent / "results" / "mutation.json"

# Mutants that cannot change any gradient, by `Mutant.key`, with the reason.
EQUIVALENT: dict[str, str] = {
    "parts.py:unpack_mask: return 2 * jnp.unpackbits(bits, axis=-1, "
    "count=like.shape[-1]).astype(bool)": "the mask is only ever a jnp.where condition, "
    "where 2·[x > 0] is exactly as true as [x > 0]",
}


def _selected(site, only: str | None) -> bool:
    return only is None or only == Path(site.file).stem or only in site.function


def _cost_order(exercised) -> dict[str, tuple]:
    """Items cheapest first: a leaf layer or loss before a network, fewer functions run
    before more."""
    return {
        name: (getattr(CASES[name], "network", False), len(exercised.checks.get(name, ())), name)
        for name in CASES
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", metavar="NAME", help="a module (dense) or a function name")
    parser.add_argument("--limit", type=int, metavar="N", help="run the first N mutants only")
    parser.add_argument("--out", type=Path, default=OUT, metavar="PATH")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    checks = {name: (lambda name=name: CASES[name].run("float64")) for name in CASES}
    everything, exercised = builtin_mutants(checks)
    traced_s = time.perf_counter() - start
    chosen = [m for m in everything if _selected(m[0], args.only)][: args.limit]
    if not chosen:
        print(f"no backward code matches --only {args.only!r}", file=sys.stderr)
        return 2
    order = _cost_order(exercised)
    needed = sorted({name for *_, names in chosen for name in names}, key=order.get)
    baseline = {r.name: r for r in run_checks(needed, "float64")}
    broken = {name: str(r) for name, r in baseline.items() if not r.passed}
    for text in broken.values():
        print(f"left out, fails unmutated: {text}", file=sys.stderr)
    print(
        f"{len(chosen)} mutants of {len({m[0] for m in chosen})} functions, "
        f"{len(needed)} items (traced pass {traced_s:.0f} s)",
        flush=True,
    )
    results = []
    for i, (_site, mutant, top, names) in enumerate(chosen, 1):
        items = [n for n in sorted(names, key=order.get) if n not in broken]
        runs = [(n, lambda n=n: run_checks([n], "float64")[0]) for n in items]
        r = run_mutant(mutant, top, runs, equivalent=EQUIVALENT.get(mutant.key, ""))
        results.append(r)
        verdict = f"caught ({r.how})" if r.status == "caught" else r.status
        print(
            f"[{i}/{len(chosen)}] {Path(mutant.file).name}:{mutant.line} {mutant.operator}: "
            f"{verdict} after {len(r.checks)} item(s) | {mutant.after.strip()}",
            flush=True,
        )
    report = MutationReport(tuple(results), time.perf_counter() - start)
    stale = set(EQUIVALENT) - {m.key for _, m, *_ in everything}
    for key in sorted(stale):  # the code changed: the reason no longer applies to anything
        print(f"EQUIVALENT names no mutant any more: {key}", file=sys.stderr)
    record = {
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}, "
        f"{os.cpu_count()} cores",
        "jax": jax.__version__,
        "command": " ".join(["python benchmarks/mutation.py", *(argv or sys.argv[1:])]),
        "seconds": round(report.seconds, 1),
        "score": report.score,
        "summary": report.summary(),
        "counts": {
            "mutants": len(results),
            "caught": report.count("caught"),
            **{
                f"caught ({h})": report.count("caught", h)
                for h in ("wrong gradient", "wrong shape", "crash")
            },
            "survived": report.count("survived"),
            "equivalent": report.count("equivalent"),
        },
        "left_out_items": broken,
        "traced_pass_failures": exercised.failed,
        "mutants": [r.to_dict() for r in results],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print("\nsurvivors:")
    for r in report.survivors:
        m = r.mutant
        where = f"{Path(m.file).name}:{m.line} {m.function}"
        print(f"  {where} [{m.operator}] {m.after.strip()} ({r.detail})")
    print(f"\n{report.summary()} in {report.seconds:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the order given to `--impls` change the verdict? The grid run twice in one process,
the impls in one order and then reversed, each run with its A/A twin.

A fair harness gives manual/autodiff ratios that agree between the two orders to within
the A/A spread (the twin's `aa_ratio` − 1). Writes `results/order_fairness.json`: per
workload and order, each impl's ratio to autodiff, the A/A ratio, and the difference
between the orders.

    python benchmarks/order_fairness.py                    # mlp_b256, deep_relu; 15 rounds
    python benchmarks/order_fairness.py --workloads tutorial --repeats 21
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fnn.bench.grid import run_benchmarks
from fnn.bench.measure import machine_info

RESULTS = Path(__file__).parent / "results" / "order_fairness.json"
IMPLS = ("manual", "autodiff", "custom_vjp")


def ratios(records: list[dict]) -> dict[str, dict[str, float]]:
    """Per workload: each timed impl's ratio_vs_autodiff, and the A/A ratio."""
    out: dict[str, dict[str, float]] = {}
    for r in records:
        if r.get("status") not in ("ok", "mismatch"):
            continue
        row = out.setdefault(r["workload"], {})
        if r.get("aa_ratio") is not None:
            row["aa"] = r["aa_ratio"]
        elif r.get("ratio_vs_autodiff") is not None:
            row[r["impl"]] = r["ratio_vs_autodiff"]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="mlp_b256,deep_relu")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    workloads = args.workloads.split(",")
    runs = {}
    for label, impls in (("given", IMPLS), ("reversed", IMPLS[::-1])):
        records = run_benchmarks(workloads, list(impls), ["float32"],
                                       repeats=args.repeats, aa="manual")  # fmt: skip
        runs[label] = {"impls": list(impls), "ratios": ratios(records)}
    summary = {}
    for workload in workloads:
        given, rev = runs["given"]["ratios"][workload], runs["reversed"]["ratios"][workload]
        summary[workload] = {
            "manual_vs_autodiff": {"given": given["manual"], "reversed": rev["manual"]},
            "order_difference": abs(given["manual"] / rev["manual"] - 1),
            "aa_spread": max(abs(given["aa"] - 1), abs(rev["aa"] - 1)),
        }
        s = summary[workload]
        print(f"{workload}: manual/autodiff {given['manual']:.3f} ({','.join(IMPLS)}) vs "
              f"{rev['manual']:.3f} (reversed): differ by {s['order_difference'] * 100:.1f} %; "
              f"A/A spread {s['aa_spread'] * 100:.1f} %")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_info(), "repeats": args.repeats, "runs": runs,
               "summary": summary}  # fmt: skip
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

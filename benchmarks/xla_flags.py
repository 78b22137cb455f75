"""Does an XLA:CPU flag close the gap to PyTorch? fnn's manual step under several
`XLA_FLAGS` settings, each in its own process (XLA reads the flags when its backend
starts), each process also timing PyTorch eager on the same workload as the yardstick.

    PYTHONPATH=. python benchmarks/xla_flags.py [--workloads deep_relu,mlp_b256]
        [--rounds 3] [--repeats 7] [--out benchmarks/results/xla_flags.json]

The settings run in turn, A B C A B C ... (`--rounds` times), so that a drift of the
shared machine's speed falls on all of them alike; each process runs `fnn bench
--impls manual,torch` (alternated rounds inside it) and the script reports, per setting
and workload, the median over processes of fnn's step time and of its ratio to
PyTorch's step in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn custom calls": "--xla_cpu_use_onednn=true "
    "--xla_cpu_experimental_onednn_custom_call=true",
    "no xnnpack": "--xla_cpu_use_xnnpack=false",
    "eigen single thread": "--xla_cpu_multi_thread_eigen=false",
}


def one_process(flags: str, workloads: str, repeats: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, XLA_FLAGS=flags, FNN_CACHE_DIR="off")
        cli = "import sys; from fnn.cli import main; sys.exit(main(sys.argv[1:]))"
        command = [sys.executable, "-c", cli, "bench", "--workloads", workloads,
                   "--impls", "manual,torch", "--repeats", str(repeats), "--out", out]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return [{"error": done.stderr.strip().splitlines()[-1:]}]
        return json.loads((Path(out) / "results.json").read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="deep_relu,mlp_b256")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/xla_flags.json"))
    args = parser.parse_args(argv)
    chosen = [name for name in args.settings.split(",") if name]
    runs: dict[str, list[list[dict]]] = {name: [] for name in chosen}
    for round_ in range(args.rounds):
        for name in chosen:
            records = one_process(SETTINGS[name], args.workloads, args.repeats)
            runs[name].append(records)
            print(f"round {round_ + 1}, {name}: {len(records)} records", flush=True)
    summary = []
    for name in chosen:
        for workload in args.workloads.split(","):
            steps, ratios, errors = [], [], []
            for records in runs[name]:
                by_impl = {r.get("impl"): r for r in records if r.get("workload") == workload}
                manual, torch = by_impl.get("manual"), by_impl.get("torch")
                if not manual or manual.get("step_ms_median") is None:
                    errors.append(str(records[:1]))
                    continue
                steps.append(manual["step_ms_median"])
                if torch and torch.get("step_ms_median"):
                    ratios.append(manual["step_ms_median"] / torch["step_ms_median"])
            row = {
                "setting": name,
                "xla_flags": SETTINGS[name],
                "workload": workload,
                "manual_ms_median": statistics.median(steps) if steps else None,
                "manual_over_torch_median": statistics.median(ratios) if ratios else None,
                "processes": len(steps),
                "errors": errors,
            }
            summary.append(row)
            ms = row["manual_ms_median"]
            ratio = row["manual_over_torch_median"]
            print(f"{name:<22} {workload:<12} manual {ms if ms is None else round(ms, 2)} ms, "
                  f"manual/torch {ratio if ratio is None else round(ratio, 3)}")  # fmt: skip
    machine = runs[chosen[0]][0][0].get("cpu_model") if runs[chosen[0]][0] else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "rows": summary}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

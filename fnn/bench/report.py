"""Output: the records as results.json and results.csv (`CSV_FIELDS`), a markdown report
with one table per (workload, dtype), and three bar charts (step time, ratio to autodiff,
fraction of the matmul peak); `write_results` writes them all, `read_results` reads the
JSON back. Each takes `BenchRecord`s or records as results.json holds them."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fnn.bench.impls import IMPLS, REFERENCE_NOTE
from fnn.bench.records import CSV_FIELDS, TIMED, BenchRecord

Record = Mapping[str, Any]  # a BenchRecord, or one as results.json holds it


def write_json(records: Sequence[Record], path: Path) -> None:
    """The records as a JSON list (`BenchRecord.to_dict` of each)."""
    path.write_text(json.dumps([_as_dict(r) for r in records], indent=1) + "\n")


def read_results(path: str | Path) -> list[BenchRecord]:
    """The records of a results.json that `fnn bench` (or `report`) wrote."""
    return [BenchRecord.from_dict(r) for r in json.loads(Path(path).read_text())]


def _as_dict(record: Record) -> dict[str, Any]:
    return record.to_dict() if isinstance(record, BenchRecord) else dict(record)


def write_csv(records: Sequence[Record], path: Path) -> None:
    """One row per record, `CSV_FIELDS` as columns (the fields a spreadsheet can hold)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({k: record.get(k) for k in CSV_FIELDS})


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _step_cell(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms * 1e3:.1f} µs"


def _ok(records: Sequence[Record]) -> list[Record]:
    """The timed records (a gradient mismatch is timed too, and flagged)."""
    return [r for r in records if r.get("status") in TIMED]


def _cases(records: Sequence[Record]) -> list[tuple[str, str]]:
    """The (workload, dtype) pairs of `records`, in order of first appearance."""
    return list(dict.fromkeys((r["workload"], r["dtype"]) for r in records))


def format_report(records: Sequence[Record], title: str = "fnn bench") -> str:
    """Markdown: the machine, one table per (workload, dtype), then skipped cases."""
    ok = _ok(records)
    lines = [f"# {title}", ""]
    if records:
        m = records[0]
        lines += [
            f"Machine: {m.get('device_kind')} ({m.get('platform')}), CPU {m.get('cpu_model')}, "
            f"{m.get('cpu_cores')} cores; jax {m.get('jax_version')}.",
            "",
            "Step = time per training step (median over alternated rounds, IQR after ±). "
            "ratio = this impl's unit time over autodiff's in the same round, median "
            f"(the reference is {REFERENCE_NOTE}). % peak = the step's FLOP/s over the best "
            "matmul rate any library present reached in the same rotation (the machine's "
            "limit, not one framework's); floor × = step time over FLOPs ÷ peak. FLOPs "
            "are 6·B·P for the built-in workloads, XLA's cost analysis for yours. "
            "temp = compiled temp bytes; resid = arrays (MiB) kept for the backward, "
            "arguments excluded; GEMMs/fusions/ops from the compiled HLO; err = max "
            "relative gradient difference from autodiff. Each round times every impl once, "
            "in a random order (seeded), each timed unit right after an untimed one; "
            "`<impl>_aa` is the A/A twin: the same compiled unit timed as another impl, "
            "so its ratio to the original is the table's noise.",
            "",
        ]
    for workload, dtype in _cases(ok):
        rows = [r for r in ok if (r["workload"], r["dtype"]) == (workload, dtype)]
        first = rows[0]
        lines += [
            f"## {workload}, {dtype}",
            "",
            f"{first.get('description', '')}; batch {first['batch']}, {first['params']:,} "
            f"params, {first['steps_per_call']} steps per timed unit; {_peak_text(first)}",
            "",
            *_aa_line(rows),
            "| impl | step | ± IQR | best | ratio | % peak | floor × | compile s | temp MiB | "
            "resid | GEMMs/fusions/ops | err |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            resid = (
                "-"
                if r.get("residual_arrays") is None
                else f"{r['residual_arrays']} ({r['residual_bytes'] / 2**20:.2f})"
            )
            hlo = (
                "-"
                if r.get("hlo_ops") is None
                else f"{r['hlo_gemms']}/{r['hlo_fusions']}/{r['hlo_ops']}"
            )
            temp = "-" if r.get("temp_bytes") is None else f"{r['temp_bytes'] / 2**20:.2f}"
            flag = " ⚠ gradient mismatch" if r.get("status") == "mismatch" else ""
            lines.append(
                f"| {r['impl']}{flag} | {_step_cell(r['step_ms_median'])} | "
                f"{_step_cell(r['step_ms_iqr'])} | {_step_cell(r.get('step_ms_min'))} | "
                f"{_fmt(r['ratio_vs_autodiff'], '.3f')} | "
                f"{_fmt(r['peak_fraction'] and r['peak_fraction'] * 100, '.1f')} | "
                f"{_fmt(r['floor_ratio'], '.2f')} | {_fmt(r['compile_s'], '.2f')} | {temp} | "
                f"{resid} | {hlo} | {_fmt(r['rel_grad_err'], '.1e')} |"
            )
        lines.append("")
    wrong = [r for r in records if r.get("status") == "mismatch"]
    if wrong:
        lines += ["## Gradient mismatches (timed, but not the same computation)", ""]
        lines += [f"- {r['workload']} {r['dtype']} {r['impl']}: {r.get('note', '')}" for r in wrong]
        lines.append("")
    other = [r for r in records if r.get("status") not in TIMED]
    if other:
        lines += ["## Not run", ""]
        for r in other:
            lines.append(f"- {r['workload']} {r['dtype']} {r['impl']}: {r.get('note', '')}")
        lines.append("")
    return "\n".join(lines)


def _aa_line(rows: Sequence[Record]) -> list[str]:
    """The A/A self-test's line for a table (nothing where no twin ran)."""
    twins = [r for r in rows if r.get("aa_ratio") is not None]
    return [
        f"A/A: {r['impl']} / {r['impl'].removesuffix('_aa')} = {r['aa_ratio']:.3f} "
        "(median over rounds; 1 + the noise of this table's ratios)."
        for r in twins
    ] + ([""] if twins else [])


def _peak_text(record: Record) -> str:
    """The peak a table's % peak is taken against, and whose it is."""
    peak = record.get("peak_flops_per_s")
    if not peak:
        return "no matmul peak measured."
    text = (
        f"peak {peak / 1e9:.1f} GFLOP/s ({record.get('peak_shape')}, "
        f"{record.get('peak_library', 'jax')})."
    )
    source = record.get("flops_source")
    if source and source != "6·B·P":
        text += f" FLOPs: {source}."
    return text


def _bar_chart(records, value, ylabel, title, path, *, log=False, lines=()):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = _ok(records)
    cases = _cases(ok)
    names = [*IMPLS, *dict.fromkeys(r["impl"] for r in ok)]  # the built-ins first, then yours
    impls = [
        i for i in dict.fromkeys(names) if any(r["impl"] == i and value(r) is not None for r in ok)
    ]
    if not impls:  # nothing to draw (no ratios without an autodiff reference, say)
        return False
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(cases) + 2), 4.2))
    width = 0.8 / max(len(impls), 1)
    for j, impl in enumerate(impls):
        xs, ys, flags = [], [], []
        for i, case in enumerate(cases):
            for r in ok:
                if r["impl"] == impl and (r["workload"], r["dtype"]) == case:
                    if value(r) is not None:
                        xs.append(i + (j - (len(impls) - 1) / 2) * width)
                        ys.append(value(r))
                        flags.append(r.get("status") == "mismatch")
        bars = ax.bar(xs, ys, width, label=impl)
        for bar, wrong in zip(bars, flags, strict=True):  # a wrong gradient: never a winner
            if wrong:
                bar.set_hatch("xx")
                ax.annotate("mismatch", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=6, rotation=90)  # fmt: skip
    for y, style in lines:
        ax.axhline(y, color="k", linestyle=style, linewidth=0.8)
    ax.set_xticks(range(len(cases)), [f"{w}\n{d}" for w, d in cases], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=min(len(impls), 4))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_charts(records: Sequence[Record], out: Path, suffix: str = "") -> list[Path]:
    """Up to three PNGs: step time per impl, the ratio to autodiff, the fraction of peak
    (each one drawn where its records have values); the paths written."""
    device = records[0]["device_kind"] if records else ""
    paths = [out / f"{stem}{suffix}.png" for stem in ("time", "ratio", "peak")]
    drawn = [
        _bar_chart(
            records,
            lambda r: r["step_ms_median"],
            "ms per step (log)",
            f"Step time per implementation — {device}",
            paths[0],
            log=True,
        )
    ]
    drawn.append(
        _bar_chart(
            [r for r in records if r.get("impl") not in ("autodiff", "autodiff_scan")],
            lambda r: r.get("ratio_vs_autodiff") if r.get("kind") != "numpy" else None,
            "time / autodiff time",
            f"Step time relative to autodiff (manual_scan: to autodiff_scan) — {device}",
            paths[1],
            lines=((1.0, "-"), (1.03, ":")),
        )
    )
    drawn.append(
        _bar_chart(
            [r for r in records if r.get("workload") != "tutorial"],
            lambda r: r.get("peak_fraction"),
            "FLOP/s ÷ the machine's matmul peak",
            f"Fraction of the measured matmul peak — {device}",
            paths[2],
            lines=((1.0, "-"), (1 / 1.1, ":")),
        )
    )
    return [path for path, done in zip(paths, drawn, strict=True) if done]


def write_results(
    records: Sequence[Record], out: Path | str, suffix: str = "", title: str = "fnn bench"
) -> list[Path]:
    """Writes results{suffix}.json/.csv, report{suffix}.md and the charts under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"results{suffix}.json", out / f"results{suffix}.csv"]
    write_json(records, paths[0])
    write_csv(records, paths[1])
    report = out / f"report{suffix}.md"
    report.write_text(format_report(records, title))
    paths.append(report)
    if _ok(records):
        paths += write_charts(records, out, suffix)
    return paths

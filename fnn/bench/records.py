"""A timed implementation's record: the fields `fnn bench` writes (listed in `fnn.bench`'s
docstring), the peak's, the mismatch flag against `GRAD_TOLERANCE`, the A/A twin's name,
and the progress line."""

from __future__ import annotations

import statistics
from typing import Any

from fnn.bench.impls import REFERENCE, Impl
from fnn.bench.measure import (
    hlo_conv_count,
    hlo_counts,
    median_iqr,
    memory_figures,
    peak_bytes_in_use,
    rel_grad_err,
)
from fnn.check.report import DEFAULT_RTOL

GRAD_TOLERANCE = {**DEFAULT_RTOL, "bfloat16": 5e-2, "float16": 5e-2}  # on rel_grad_err


def flag_mismatch(record: dict[str, Any]) -> dict[str, Any]:
    """Marks a timed record whose gradient is off by more than its dtype's
    `GRAD_TOLERANCE`: `status` "mismatch", the reason in `note` (it is still timed, but
    it does not compute the same thing, and is never reported as the fastest)."""
    err, tol = record.get("rel_grad_err"), GRAD_TOLERANCE.get(record.get("dtype"), 1e-4)
    if record.get("status") == "ok" and err is not None and not err <= tol:
        record["status"] = "mismatch"
        record["note"] = (
            f"gradient differs from autodiff's: rel_grad_err {err:.2e} > {tol:g}; "
            + (record.get("note") or "")
        ).rstrip("; ")
    return record


def aa_name(impl: str) -> str:
    """The name of `impl`'s A/A twin: the same compiled unit, timed as another impl."""
    return f"{impl}_aa"


def peak_fields(record, peak, shape, library) -> dict[str, Any]:
    rate = record["flops_per_s"]
    return {
        "peak_flops_per_s": peak or None,
        "peak_shape": shape,
        "peak_library": library,
        "peak_fraction": rate / peak if rate and peak else None,
        "floor_ratio": peak / rate if rate and peak else None,
    }


def timed_record(base, impl: Impl, times, steps, flops_per_step, reference) -> dict[str, Any]:
    """One "ok" record: the fields listed in `fnn.bench`'s docstring (the peak's apart)."""
    per_step = [t / steps * 1e3 for t in times[impl.name]]
    median, iqr = median_iqr(per_step)
    ref_name = REFERENCE.get(impl.name, "autodiff")
    ratio = None
    if ref_name in times:
        pairs = [a / b for a, b in zip(times[impl.name], times[ref_name], strict=True)]
        ratio = float(statistics.median(pairs))
    compiled = impl.compiled
    hlo = compiled.as_text() if compiled is not None else None
    return {
        **base,
        "impl": impl.name,
        "status": "ok",
        "kind": impl.kind,
        "step_ms_median": median,
        "step_ms_iqr": iqr,
        "step_ms_min": min(per_step),
        "total_ms": median * steps,
        "ratio_vs_autodiff": ratio,
        "ratio_reference": ref_name if ratio is not None else None,
        "compile_s": impl.compile_s,
        "flops_per_s": None if flops_per_step is None else flops_per_step / (median / 1e3),
        **memory_figures(compiled),
        "peak_bytes_in_use": peak_bytes_in_use() if compiled is not None else None,
        "residual_arrays": impl.residuals[0] if impl.residuals else None,
        "residual_bytes": impl.residuals[1] if impl.residuals else None,
        **(hlo_counts(hlo) if hlo is not None else _NO_HLO),
        "hlo_convs": hlo_conv_count(hlo) if hlo is not None else None,
        "rel_grad_err": (
            rel_grad_err(impl.grads(), reference)
            if impl.grads is not None and reference is not None
            else None
        ),
        "step_ms_samples": per_step,
        "note": impl.note,
    }


_NO_HLO = dict.fromkeys(("hlo_gemms", "hlo_fusions", "hlo_ops"))


def progress_line(r: dict[str, Any]) -> str:
    ratio = f"{r['ratio_vs_autodiff']:.3f}" if r["ratio_vs_autodiff"] is not None else "  -  "
    temp = "-" if r["temp_bytes"] is None else f"{r['temp_bytes'] / 2**20:.2f} MiB"
    peak = "  -  " if r["peak_fraction"] is None else f"{r['peak_fraction'] * 100:5.1f}"
    err = "" if r["rel_grad_err"] is None else f"  err {r['rel_grad_err']:.1e}"
    return (
        f"  {r['workload']:<18} {r['dtype']:<9} {r['impl']:<14} "
        f"{r['step_ms_median']:10.4f} ms/step ±{r['step_ms_iqr']:.4f}  ratio {ratio}  "
        f"{peak}% peak  temp {temp}{err}"
    )

"""The grid: build, check, time and measure every implementation of each workload in each
dtype (`run_workload`, `run_benchmarks`), with the matmul peak probes timed in the same
rotation, and one progress line per case."""

from __future__ import annotations

import importlib.util
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from fnn.bench.impls import (
    IMPLS,
    JAX_IMPLS,
    PEER_MODULES,
    PER_EXAMPLE_IMPLS,
    REFERENCE,
    Impl,
    Skip,
    build_jax_impl,
    build_per_example_impl,
)
from fnn.bench.measure import (
    hlo_conv_count,
    hlo_counts,
    machine_info,
    matmul_unit,
    median_iqr,
    memory_figures,
    peak_bytes_in_use,
    rel_grad_err,
    square_peak_size,
    time_rotation,
)
from fnn.bench.peers import PEER_BUILDERS
from fnn.bench.problems import Problem, gradients, make_problem
from fnn.bench.reference import build_numpy_impl
from fnn.bench.workloads import (
    CPU_WORKLOADS,
    DTYPES,
    GPU_WORKLOADS,
    QUICK_STEPS,
    QUICK_WORKLOADS,
    WORKLOADS,
    Workload,
    choose_all,
    default_dtypes,
    scaled,
)


def build_impl(name: str, problem: Problem) -> Impl:
    """Builds implementation `name` for `problem`; raises `Skip` when it cannot run."""
    if name in JAX_IMPLS:
        return build_jax_impl(name, problem)
    if name in PER_EXAMPLE_IMPLS:
        return build_per_example_impl(name, problem)
    if name == "numpy":
        if jax.devices()[0].platform != "cpu":
            raise Skip("numpy runs on the host CPU: compared on CPU runs only")
        return build_numpy_impl(problem)
    module = PEER_MODULES[name]
    if importlib.util.find_spec(module) is None:
        raise Skip(f"{module} is not installed")
    return PEER_BUILDERS[name](problem)


def _calls_for(flops: float, target_flops: float) -> int:
    return max(1, min(1000, round(target_flops / max(flops, 1.0))))


def _peak_probes(workload: Workload, dtype, square: int) -> dict[str, tuple[Callable, float]]:
    """The matmul probes timed in the rotation: the workload's largest GEMM and a square."""
    m, k, n = workload.largest_gemm
    probes = {}
    step_flops = workload.flops_per_step * workload.steps
    target = max(step_flops, 2.0 * square**3)
    for shape in {(m, k, n), (square, square, square)}:
        calls = _calls_for(2.0 * math.prod(shape), target)
        probes["peak:{}x{}x{}".format(*shape)] = matmul_unit(*shape, dtype, calls)
    return probes


def run_workload(
    workload: Workload,
    dtype: str,
    impls: Sequence[str],
    *,
    repeats: int,
    square: int,
    machine: dict[str, Any],
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Builds, checks, times and measures every impl on one workload in one dtype."""
    impls = [
        name
        for name in impls
        if (name in PER_EXAMPLE_IMPLS) == workload.per_example
        or (workload.per_example and name == "autodiff")
    ]
    if workload.image is not None or workload.sequence is not None:  # numpy, peers: MLPs
        impls = [name for name in impls if name in JAX_IMPLS]
    problem = make_problem(workload, dtype)
    built, records = {}, []
    base = {
        **machine,
        "workload": workload.name,
        "description": workload.description,
        "dtype": dtype,
        "batch": workload.batch,
        "params": workload.params,
        "weights": workload.weights,
        "steps_per_call": workload.steps,
        "repeats": repeats,
    }

    def not_run(name: str, status: str, note: str, shown: str) -> None:
        records.append({**base, "impl": name, "status": status, "note": note})
        progress(f"  {workload.name:<18} {dtype:<9} {name:<14} {shown}")

    for name in impls:
        try:
            built[name] = build_impl(name, problem)
        except Skip as why:
            not_run(name, "skipped", str(why), f"skipped: {why}")
        except Exception as error:  # a peer's API drift must not stop the grid
            note = f"failed to build: {type(error).__name__}: {error}"
            not_run(name, "error", note[:300], note[:120])
    reference = None
    if "autodiff" in built or "autodiff_scan" in built:
        reference = gradients(problem, "autodiff")

    units, states = {}, {}
    for name, impl in list(built.items()):  # the warm-up, one impl at a time
        try:
            states[name], units[name] = impl.unit(impl.state), impl.unit
        except Exception as error:
            note = f"failed to run: {type(error).__name__}: {error}"[:300]
            not_run(name, "error", note, note[:120])
            del built[name]
    probes = _peak_probes(workload, problem.dtype, square)
    for key, (unit, _) in probes.items():
        units[key], states[key] = unit, unit(None)
    try:
        times = time_rotation(units, states, repeats, warmup=False)
    except Exception as error:
        note = f"failed while timing: {type(error).__name__}: {error}"[:300]
        progress(f"  {workload.name:<18} {dtype:<9} {note}")
        return records + [{**base, "impl": n, "status": "error", "note": note} for n in built]

    peak, peak_shape = 0.0, ""
    for key, (_, flops) in probes.items():
        rate = flops / min(times[key])  # a peak: the best round
        if rate > peak:
            peak, peak_shape = rate, key.removeprefix("peak:")
    for impl in built.values():
        record = _record(base, impl, times, workload, peak, peak_shape, reference)
        records.append(record)
        progress(_progress_line(record))
    return records


def _record(base, impl, times, workload, peak, peak_shape, reference) -> dict[str, Any]:
    """One "ok" record: the fields listed in `fnn.bench`'s docstring."""
    per_step = [t / workload.steps * 1e3 for t in times[impl.name]]
    median, iqr = median_iqr(per_step)
    ref_name = REFERENCE.get(impl.name, "autodiff")
    ratio = None
    if ref_name in times:
        pairs = [a / b for a, b in zip(times[impl.name], times[ref_name], strict=True)]
        ratio = float(statistics.median(pairs))
    flops_per_s = workload.flops_per_step / (median / 1e3)
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
        "total_ms": median * workload.steps,
        "ratio_vs_autodiff": ratio,
        "ratio_reference": ref_name if ratio is not None else None,
        "compile_s": impl.compile_s,
        "flops_per_s": flops_per_s,
        "peak_flops_per_s": peak,
        "peak_shape": peak_shape,
        "peak_fraction": flops_per_s / peak if peak else None,
        "floor_ratio": peak / flops_per_s if peak else None,
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


def _progress_line(r: dict[str, Any]) -> str:
    ratio = f"{r['ratio_vs_autodiff']:.3f}" if r["ratio_vs_autodiff"] is not None else "  -  "
    temp = "-" if r["temp_bytes"] is None else f"{r['temp_bytes'] / 2**20:.2f} MiB"
    return (
        f"  {r['workload']:<18} {r['dtype']:<9} {r['impl']:<14} "
        f"{r['step_ms_median']:10.4f} ms/step ±{r['step_ms_iqr']:.4f}  ratio {ratio}  "
        f"{r['peak_fraction'] * 100:5.1f}% peak  temp {temp}"
    )


def run_benchmarks(
    workloads: Sequence[str] | None = None,
    impls: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    *,
    repeats: int = 7,
    quick: bool = False,
    steps: dict[str, int] | None = None,
    deadline: float | None = None,
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Runs the grid and returns its records.

    Arguments:
      workloads: workload names (default: the platform's grid, or the quick one).
      impls: implementation names (default: all; peers skip when not installed).
      dtypes: dtype names applied to every workload (default: `default_dtypes`).
      repeats: timed rounds per workload.
      quick: the quick grid (fewer workloads and steps, a smaller square probe).
      steps: per-workload steps per unit, overriding the workload's (and quick's).
      deadline: a `time.monotonic()` value after which no new case starts.
      progress: called with one line per case.

    Raises:
      SettingError: an unknown workload, impl or dtype name (the message lists the valid
        ones).
    """
    platform_name = jax.devices()[0].platform
    if workloads is None:
        workloads = (
            QUICK_WORKLOADS
            if quick
            else (CPU_WORKLOADS if platform_name == "cpu" else GPU_WORKLOADS)
        )
    workloads = choose_all("workload", workloads, WORKLOADS)
    impls = choose_all("impl", impls if impls is not None else IMPLS, IMPLS)
    if dtypes is not None:
        choose_all("dtype", dtypes, DTYPES)
    wanted = {d for w in workloads for d in (dtypes or default_dtypes(w, platform_name))}
    if "float64" in wanted:
        jax.config.update("jax_enable_x64", True)
    machine = machine_info()
    square = square_peak_size(platform_name, quick)
    overrides = {**(QUICK_STEPS if quick else {}), **(steps or {})}
    progress(
        f"fnn bench: {machine['device_kind']} ({machine['cpu_model']}, "
        f"{machine['cpu_cores']} cores), jax {machine['jax_version']}, repeats {repeats}"
    )
    records = []
    for name in workloads:
        workload = scaled(WORKLOADS[name], overrides.get(name))
        for dtype in dtypes or default_dtypes(name, platform_name):
            if deadline is not None and time.monotonic() > deadline:
                progress(f"  {name:<18} {dtype:<9} skipped: out of time")
                records.append(
                    {**machine, "workload": name, "dtype": dtype, "impl": "*", "status": "skipped",
                     "note": "out of time"}
                )  # fmt: skip
                continue
            records += run_workload(
                workload,
                dtype,
                impls,
                repeats=repeats,
                square=square,
                machine=machine,
                progress=progress,
            )
    return records

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
    build_custom_impl,
    build_jax_impl,
    build_per_example_impl,
)
from fnn.bench.measure import (
    hlo_conv_count,
    hlo_counts,
    machine_info,
    matmul_units,
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
from fnn.core import SettingError


def build_impl(impl: str | tuple[str, Callable], problem: Problem) -> Impl:
    """Builds implementation `impl` for `problem`: a built-in name, or `(name, builder)`
    for a user's own (`fnn.bench.impls.build_custom_impl`); raises `Skip` when it cannot
    run here."""
    if not isinstance(impl, str):
        return build_custom_impl(*impl, problem)
    if impl in JAX_IMPLS:
        return build_jax_impl(impl, problem)
    if impl in PER_EXAMPLE_IMPLS:
        return build_per_example_impl(impl, problem)
    if problem.workload is None:
        raise Skip(f"{impl} rebuilds the built-in MLP workloads only, not a user's network")
    if impl == "numpy":
        if jax.devices()[0].platform != "cpu":
            raise Skip("numpy runs on the host CPU: compared on CPU runs only")
        return build_numpy_impl(problem)
    module = PEER_MODULES[impl]
    if importlib.util.find_spec(module) is None:
        raise Skip(f"{module} is not installed")
    return PEER_BUILDERS[impl](problem)


def _calls_for(flops: float, target_flops: float) -> int:
    return max(1, min(1000, round(target_flops / max(flops, 1.0))))


def peak_probes(
    gemm: tuple[int, int, int] | None,
    unit_flops: float | None,
    dtype,
    square: int,
    *,
    import_torch: bool = True,
) -> dict[str, tuple[Callable, float]]:
    """The matmul probes timed in the rotation, in every library present (PyTorch, with
    `import_torch=False`, only if already imported): the case's largest GEMM (when known)
    and a square one, each sized to about a unit's FLOPs."""
    target = max(unit_flops or 0.0, 2.0 * square**3)
    probes = {}
    for shape in {gemm, (square, square, square)} - {None}:
        calls = _calls_for(2.0 * math.prod(shape), target)
        units = matmul_units(*shape, dtype, calls, import_torch=import_torch)
        for library, probe in units.items():
            probes["peak:{}:{}x{}x{}".format(library, *shape)] = probe
    return probes


def measure_impls(
    base: dict[str, Any],
    built: dict[str, Impl],
    reference: Any,
    *,
    steps: int,
    flops_per_step: float | None,
    probes: dict[str, tuple[Callable, float]],
    repeats: int,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Warms every impl up, times them and the peak probes in one rotation, and returns a
    record per impl (an "error" record for one that fails to run)."""
    records, units, states = [], {}, {}

    def failed(name: str, note: str) -> None:
        records.append({**base, "impl": name, "status": "error", "note": note[:300]})
        progress(f"  {base['workload']:<18} {base['dtype']:<9} {name:<14} {note[:120]}")

    for name, impl in list(built.items()):  # the warm-up, one impl at a time
        try:
            states[name], units[name] = impl.unit(impl.state), impl.unit
        except Exception as error:
            failed(name, f"failed to run: {type(error).__name__}: {error}")
            del built[name]
    for key, (unit, _) in probes.items():
        units[key], states[key] = unit, unit(None)
    try:
        times = time_rotation(units, states, repeats, warmup=False)
    except Exception as error:
        for name in built:
            failed(name, f"failed while timing: {type(error).__name__}: {error}")
        return records
    peak, peak_shape, peak_library = 0.0, "", ""
    for key, (_, flops) in probes.items():
        rate = flops / min(times[key])  # a peak: the best round
        if rate > peak:
            _, peak_library, peak_shape = key.split(":")
            peak = rate
    for impl in built.values():
        record = _record(base, impl, times, steps, flops_per_step, reference)
        record.update(_peak_fields(record, peak, peak_shape, peak_library))
        records.append(record)
        progress(_progress_line(record))
    return records


def _peak_fields(record, peak, shape, library) -> dict[str, Any]:
    rate = record["flops_per_s"]
    return {
        "peak_flops_per_s": peak or None,
        "peak_shape": shape,
        "peak_library": library,
        "peak_fraction": rate / peak if rate and peak else None,
        "floor_ratio": peak / rate if rate and peak else None,
    }


def build_all(
    impls: Sequence[str | tuple[str, Callable]],
    problem: Any,
    base: dict[str, Any],
    build: Callable,
    progress: Callable[[str], None] = print,
    *,
    tolerate_errors: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Builds every impl with `build(impl, problem)`: `(built, records)`, the built impls
    by name and a record for each one skipped (its library missing) or, with
    `tolerate_errors`, failed to build (a peer's API drift must not stop a grid). A
    SettingError (a user's impl that cannot be what it claims) always propagates."""
    built, records = {}, []
    for impl in impls:
        name = impl if isinstance(impl, str) else impl[0]
        try:
            built[name] = build(impl, problem)
        except Skip as why:
            records.append({**base, "impl": name, "status": "skipped", "note": str(why)})
            progress(f"  {base['workload']:<18} {base['dtype']:<9} {name:<14} skipped: {why}")
        except SettingError:
            raise
        except Exception as error:
            if not tolerate_errors:
                raise
            note = f"failed to build: {type(error).__name__}: {error}"
            records.append({**base, "impl": name, "status": "error", "note": note[:300]})
            progress(f"  {base['workload']:<18} {base['dtype']:<9} {name:<14} {note[:120]}")
    return built, records


def run_problem(
    problem: Problem,
    impls: Sequence[str | tuple[str, Callable]],
    *,
    repeats: int,
    square: int,
    machine: dict[str, Any],
    progress: Callable[[str], None] = print,
    import_torch: bool = True,
) -> list[dict[str, Any]]:
    """Builds, checks, times and measures every impl on one problem (the peak probes
    import PyTorch where installed, or with `import_torch=False` use it only if a torch
    impl or the caller has imported it)."""
    base = {
        **machine,
        "workload": problem.name,
        "description": problem.description,
        "dtype": problem.dtype.name,
        "batch": problem.batch,
        "params": problem.workload.params if problem.workload else problem.num_params,
        "weights": problem.workload.weights if problem.workload else None,
        "steps_per_call": problem.steps,
        "repeats": repeats,
        "flops_source": problem.flops_source,
    }
    built, records = build_all(impls, problem, base, build_impl, progress)
    reference = gradients(problem, "autodiff")
    unit_flops = None if problem.flops_per_step is None else problem.flops_per_step * problem.steps
    return records + measure_impls(
        base,
        built,
        reference,
        steps=problem.steps,
        flops_per_step=problem.flops_per_step,
        probes=peak_probes(
            problem.gemm, unit_flops, problem.dtype, square, import_torch=import_torch
        ),
        repeats=repeats,
        progress=progress,
    )


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
    """Builds, checks, times and measures every impl that applies to one workload in one
    dtype (per-example impls on per-example workloads; numpy and the peers on MLPs)."""
    impls = [
        name
        for name in impls
        if (name in PER_EXAMPLE_IMPLS) == workload.per_example
        or (workload.per_example and name == "autodiff")
    ]
    if workload.image is not None or workload.sequence is not None:  # numpy, peers: MLPs
        impls = [name for name in impls if name in JAX_IMPLS]
    problem = make_problem(workload, dtype)
    return run_problem(
        problem, impls, repeats=repeats, square=square, machine=machine, progress=progress
    )


def _record(base, impl, times, steps, flops_per_step, reference) -> dict[str, Any]:
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


def _progress_line(r: dict[str, Any]) -> str:
    ratio = f"{r['ratio_vs_autodiff']:.3f}" if r["ratio_vs_autodiff"] is not None else "  -  "
    temp = "-" if r["temp_bytes"] is None else f"{r['temp_bytes'] / 2**20:.2f} MiB"
    peak = "  -  " if r["peak_fraction"] is None else f"{r['peak_fraction'] * 100:5.1f}"
    err = "" if r["rel_grad_err"] is None else f"  err {r['rel_grad_err']:.1e}"
    return (
        f"  {r['workload']:<18} {r['dtype']:<9} {r['impl']:<14} "
        f"{r['step_ms_median']:10.4f} ms/step ±{r['step_ms_iqr']:.4f}  ratio {ratio}  "
        f"{peak}% peak  temp {temp}{err}"
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

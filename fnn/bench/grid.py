"""The grid: build, check, time and measure every implementation of each workload in each
dtype (`run_workload`, `run_benchmarks`), with the matmul peak probes timed in the same
rotation, and one progress line per case."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from fnn.bench.impls import (
    IMPLS,
    JAX_IMPLS,
    PEER_MODULES,
    PER_EXAMPLE_IMPLS,
    Impl,
    Skip,
    build_custom_impl,
    build_jax_impl,
    build_per_example_impl,
)
from fnn.bench.measure import (
    machine_info,
    matmul_units,
    square_peak_size,
    time_rounds,
)
from fnn.bench.peers import PEER_BUILDERS
from fnn.bench.problems import Problem, gradients, make_problem
from fnn.bench.records import BenchRecord, aa_name, flag_mismatch, progress_line, timed_record
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
    default_repeats,
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
    for shape in {s for s in (gemm, (square, square, square)) if s is not None}:
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
    aa: str | None = None,
    seed: int = 0,
) -> list[BenchRecord]:
    """Warms every impl up, times them in rounds of a seeded random order (each timed
    call right after an untimed one: `fnn.bench.measure.time_rounds`), then the peak
    probes in rounds of their own, and returns a record per impl (an "error" record for
    one that fails to run; "mismatch" for a wrong gradient).

    `aa`: an impl to enter twice, the second time as `aa_name(aa)` (the same compiled
    unit, its own state): the A/A self-test. The twin's record carries `aa_ratio`, the
    median over rounds of its time over the original's, the noise floor of the table.
    """
    records, units, states = [], {}, {}

    def failed(name: str, note: str) -> None:
        records.append(BenchRecord(**base, impl=name, status="error", note=note[:300]))
        progress(f"  {base['workload']:<18} {base['dtype']:<9} {name:<14} {note[:120]}")

    for name, impl in list(built.items()):  # the warm-up, one impl at a time
        try:
            states[name], units[name] = impl.unit(impl.state), impl.unit
        except Exception as error:
            failed(name, f"failed to run: {type(error).__name__}: {error}")
            del built[name]
    if aa is not None and aa in built:
        twin = dataclasses.replace(built[aa], name=aa_name(aa))
        built[twin.name] = twin
        units[twin.name], states[twin.name] = twin.unit, twin.unit(twin.state)
    try:
        times, orders = time_rounds(units, states, repeats, seed=seed)
        probe_states = {key: unit(None) for key, (unit, _) in probes.items()}
        probe_units = {key: unit for key, (unit, _) in probes.items()}
        times.update(time_rounds(probe_units, probe_states, repeats, seed=seed)[0])
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
        record = timed_record(
            base,
            impl,
            times,
            steps=steps,
            flops_per_step=flops_per_step,
            reference=reference,
            peak=(peak, peak_shape, peak_library),
            seed=seed,
            positions=[order.index(impl.name) for order in orders],
            twin_of=aa if aa is not None and impl.name == aa_name(aa) else None,
        )
        records.append(flag_mismatch(record))
        progress(progress_line(records[-1]))
    return records


def build_all(
    impls: Sequence[str | tuple[str, Callable]],
    problem: Any,
    base: dict[str, Any],
    build: Callable,
    progress: Callable[[str], None] = print,
    *,
    tolerate_errors: bool = True,
) -> tuple[dict[str, Any], list[BenchRecord]]:
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
            records.append(BenchRecord(**base, impl=name, status="skipped", note=str(why)))
            progress(f"  {base['workload']:<18} {base['dtype']:<9} {name:<14} skipped: {why}")
        except SettingError:
            raise
        except Exception as error:
            if not tolerate_errors:
                raise
            note = f"failed to build: {type(error).__name__}: {error}"
            records.append(BenchRecord(**base, impl=name, status="error", note=note[:300]))
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
    aa: str | None = None,
    seed: int = 0,
) -> list[BenchRecord]:
    """Builds, checks, times and measures every impl on one problem (the peak probes
    import PyTorch where installed, or with `import_torch=False` use it only if a torch
    impl or the caller has imported it); `aa` and `seed` as in `measure_impls`."""
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
        aa=aa,
        seed=seed,
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
    aa: str | None = None,
    seed: int = 0,
) -> list[BenchRecord]:
    """Builds, checks, times and measures every impl that applies to one workload in one
    dtype (per-example impls on per-example workloads; numpy and the peers on MLPs); the
    A/A twin of `aa` (or, where `aa` does not run on this workload, of the first impl)."""
    impls = [
        name
        for name in impls
        if (name in PER_EXAMPLE_IMPLS) == workload.per_example
        or (workload.per_example and name == "autodiff")
    ]
    if workload.image is not None or workload.sequence is not None:  # numpy, peers: MLPs
        impls = [name for name in impls if name in JAX_IMPLS]
    problem = make_problem(workload, dtype)
    if aa is not None and aa not in impls and impls:
        aa = impls[0]
    return run_problem(problem, impls, repeats=repeats, square=square, machine=machine,
                       progress=progress, aa=aa, seed=seed)  # fmt: skip


def run_benchmarks(
    workloads: Sequence[str] | None = None,
    impls: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    *,
    repeats: int | None = None,
    quick: bool = False,
    steps: dict[str, int] | None = None,
    deadline: float | None = None,
    progress: Callable[[str], None] = print,
    aa: str | None = "manual",
    seed: int = 0,
) -> list[BenchRecord]:
    """Runs the grid and returns its records.

    Arguments:
      workloads: workload names (default: the platform's grid, or the quick one).
      impls: implementation names (default: all; peers skip when not installed).
      dtypes: dtype names applied to every workload (default: `default_dtypes`).
      repeats: timed rounds per workload (default `fnn.bench.workloads.default_repeats`:
        7, 3 with `quick`).
      quick: the quick grid (fewer workloads and steps, a smaller square probe).
      steps: per-workload steps per unit, overriding the workload's (and quick's).
      deadline: a `time.monotonic()` value after which no new case starts.
      progress: called with one line per case.
      aa: the impl entered twice in every workload, as itself and as `aa_name(aa)` (the
        A/A self-test: its `aa_ratio` is the table's noise floor); None for no twin.
      seed: the seed of each workload's random order of impls per round.

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
    repeats = default_repeats(quick) if repeats is None else repeats
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
                records.append(BenchRecord(**machine, workload=name, dtype=dtype, impl="*",
                                           status="skipped", note="out of time"))  # fmt: skip
                continue
            with _x64(dtype):
                records += run_workload(
                    workload,
                    dtype,
                    impls,
                    repeats=repeats,
                    square=square,
                    machine=machine,
                    progress=progress,
                    aa=aa,
                    seed=seed,
                )
    return records


def _x64(dtype: str):
    """64-bit types for a float64 case, scoped to it (the caller's setting elsewhere)."""
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()

"""A bench record: `BenchRecord`, one implementation of one case, every field with its
meaning (`field_list` renders them); the timed record (`timed_record`), the mismatch flag
against `GRAD_TOLERANCE`, the A/A twin's name, and the progress line."""

from __future__ import annotations

import dataclasses
import statistics
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from fnn.bench.impls import REFERENCE, REFERENCE_NOTE, Impl
from fnn.bench.measure import (
    hlo_conv_count,
    hlo_counts,
    median_iqr,
    memory_figures,
    peak_bytes_in_use,
    rel_grad_err,
)
from fnn.check.report import DEFAULT_RTOL
from fnn.errors import DataError, NotFoundError

# The gradient tolerance on `rel_grad_err`: the checker's (`fnn.check.report.DEFAULT_RTOL`),
# and the half-precision dtypes'.
GRAD_TOLERANCE = {**DEFAULT_RTOL, "bfloat16": 5e-2, "float16": 5e-2}
TIMED = ("ok", "mismatch")  # the statuses of a timed record


def _field(doc: str, *, csv: bool = True, optional: bool = False, required: bool = False) -> Any:
    """A record field, None unless set (`required`: set on every record): `doc` its
    meaning; `csv` whether results.csv has its column; `optional`, carried by a timed
    record only when set."""
    metadata = {"doc": doc, "csv": csv, "optional": optional}
    if required:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=None, metadata=metadata)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchRecord(Mapping):
    """One implementation of one case (a workload or yours, in one dtype): where it ran,
    what ran, and, when it was timed, what was measured. A record reads as the mapping
    results.json holds (`record["step_ms_median"]`, `dict(record)`) and by attribute
    (`record.step_ms_median`); `to_dict` and `from_dict` convert.

    A timed record (`status` "ok" or "mismatch") carries every field but `aa_ratio`, which
    only the A/A twin's has; a record that did not run ("skipped", "error") carries the
    fields it has. `fnn.bench.records.field_list()` lists the fields, in the order
    results.json holds them, each with its meaning.
    """

    platform: str | None = _field('JAX\'s platform: "cpu", "gpu" or "tpu".')
    device_kind: str | None = _field('The device, e.g. "cpu" or "NVIDIA H200".')
    device_count: int | None = _field("The devices JAX sees.", csv=False)
    cpu_model: str | None = _field("The host CPU's model name.")
    cpu_cores: int | None = _field("The host's CPU cores (`os.cpu_count()`).")
    jax_version: str | None = _field("JAX's version.")
    python: str | None = _field("Python's version.", csv=False)
    workload: str = _field(
        "The case: a built-in workload's name, or your network's or layer's.", required=True
    )
    description: str | None = _field("The case in one line.", csv=False)
    dtype: str = _field("The params' and floating inputs' dtype.", required=True)
    batch: int | None = _field("Examples per step.")
    params: int | None = _field("Parameters: weights and biases (and normalisation scales).")
    weights: int | None = _field(
        "A built-in workload's dense and conv weights, the P of 6·B·P (biases excluded); None "
        "for yours.",
        csv=False,
    )
    steps_per_call: int | None = _field(
        "Training steps in one timed unit (`compare_layer`: forward-and-backward calls)."
    )
    repeats: int | None = _field("Timed rounds.")
    flops_source: str | None = _field(
        'How the FLOPs were counted: "6·B·P" (forward 2, backward 4 FLOPs per weight and '
        'example: the built-in workloads), "XLA cost analysis" (yours), or why unknown.'
    )
    impl: str = _field(
        'The implementation: "manual", "autodiff", "manual_scan", "autodiff_scan", '
        '"custom_vjp", "numpy", a peer, yours; `<impl>_aa` its A/A twin.',
        required=True,
    )
    status: str = _field(
        '"ok"; "mismatch" (timed, but `rel_grad_err` exceeds `GRAD_TOLERANCE` of the dtype: '
        'flagged, never the fastest); "skipped" (its library missing, or out of time); '
        '"error" (it failed to build or run; why, in `note`).',
        required=True,
    )
    kind: str | None = _field(
        'How a unit runs: "dispatched" (a Python call per step), "scan" (the steps in one '
        '`lax.scan` call), "numpy" (a Python loop), "peer".'
    )
    step_ms_median: float | None = _field(
        "Time per step in ms: the median over rounds of a timed unit over its steps. Each "
        "round times every implementation of the case once, in a random order drawn from "
        "`rotation_seed`, each timed unit right after an untimed call of the same unit (what "
        "the unit before left behind falls on that call), closed by `block_until_ready`."
    )
    step_ms_iqr: float | None = _field("The interquartile range of the per-round step times.")
    step_ms_min: float | None = _field("The best round's step time.")
    total_ms: float | None = _field("A unit's time: `step_ms_median × steps_per_call`.")
    ratio_vs_autodiff: float | None = _field(
        "The median over rounds of this unit's time over the reference's in the same round."
    )
    ratio_reference: str | None = _field(
        f'The reference of the ratio: "autodiff" ({REFERENCE_NOTE}); None where it did not run.'
    )
    compile_s: float | None = _field("`lower` + `compile` of the jitted function, timed alone.")
    flops_per_s: float | None = _field("The FLOPs of a step over the median step time.")
    temp_bytes: int | None = _field("Temporary bytes, from `compiled.memory_analysis()`.")
    argument_bytes: int | None = _field("Argument bytes, from `compiled.memory_analysis()`.")
    output_bytes: int | None = _field("Output bytes, from `compiled.memory_analysis()`.")
    peak_bytes_in_use: int | None = _field(
        "On GPU, the device's process-wide peak bytes in use so far (`memory_stats()`)."
    )
    residual_arrays: int | None = _field(
        "The arrays the backward keeps from the forward, the arguments excluded (JAX's "
        "saved-residuals analysis of the loss: through the custom_vjp bridge for the "
        "hand-written backward, of the plain forward for autodiff)."
    )
    residual_bytes: int | None = _field("Their bytes.")
    hlo_gemms: int | None = _field("GEMMs in the compiled HLO (dots and GEMM custom calls).")
    hlo_fusions: int | None = _field("Fusions in the compiled HLO.")
    hlo_ops: int | None = _field("Instructions in the compiled HLO, fused ones included.")
    hlo_convs: int | None = _field("Convolutions in the compiled HLO.")
    rel_grad_err: float | None = _field(
        "`max over leaves of max|g − g_autodiff| / max|g_autodiff|` at the initial "
        "parameters, in the case's dtype."
    )
    step_ms_samples: tuple[float, ...] | None = _field(
        "Each round's step time, ms, in round order.", csv=False
    )
    note: str | None = _field("Anything a reader should know: why it did not run, a mismatch.")
    peak_flops_per_s: float | None = _field(
        "The machine's matmul peak: the best round's rate of a matmul of the case's largest "
        "GEMM and of a square one, in every library present, timed in the same run."
    )
    peak_shape: str | None = _field('The peak matmul\'s shape, "MxKxN".')
    peak_library: str | None = _field('The library that reached the peak: "jax", "numpy", "torch".')
    peak_fraction: float | None = _field("`flops_per_s` over `peak_flops_per_s`.")
    floor_ratio: float | None = _field(
        "Its inverse: the median step time over the FLOP floor `FLOPs ÷ peak`."
    )
    rotation_seed: int | None = _field("The seed of each round's random order.")
    positions: tuple[int, ...] | None = _field(
        "This implementation's place in each round's order.", csv=False
    )
    aa_ratio: float | None = _field(
        "The A/A twin's only: the median over rounds of its time over its original's, the "
        "noise floor of the case's ratios.",
        optional=True,
    )

    def _carries(self, field: dataclasses.Field) -> bool:
        value = getattr(self, field.name)
        if self.status in TIMED and not field.metadata["optional"]:
            return True
        return value is not None

    def __getitem__(self, key: str) -> Any:
        field = _FIELDS.get(key) if isinstance(key, str) else None
        if field is None or not self._carries(field):
            raise NotFoundError(key)  # a KeyError, as a Mapping raises
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in _FIELDS.values() if self._carries(f))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def to_dict(self) -> dict[str, Any]:
        """The record as results.json holds it: the fields it carries, in order, the
        sequences as lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.items()}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> BenchRecord:
        """A record from a mapping of its fields, e.g. one of results.json's (those of
        older files may lack some: they are None); a DataError (a ValueError) naming any
        key that is not a field."""
        unknown = [key for key in record if key not in _FIELDS]
        if unknown:
            raise DataError(f"not fields of a bench record: {', '.join(map(str, unknown))}")
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in record.items()
        }
        return cls(**fields)


_FIELDS = {f.name: f for f in dataclasses.fields(BenchRecord)}
CSV_FIELDS = tuple(name for name, f in _FIELDS.items() if f.metadata["csv"])


def field_list() -> str:
    """The fields of a record and their meanings, as a markdown list (one line each)."""
    return "\n".join(f"- `{name}`: {f.metadata['doc']}" for name, f in _FIELDS.items())


BenchRecord.__doc__ = (
    BenchRecord.__doc__ or ""
) + f"\n    The fields:\n\n{textwrap.indent(field_list(), '    ')}\n"


def flag_mismatch(record: BenchRecord) -> BenchRecord:
    """The record, marked where its gradient is off by more than its dtype's
    `GRAD_TOLERANCE` (float32's for a dtype it lacks): `status` "mismatch", the reason in
    `note` (it is still timed, but it does not compute the same thing, and is never
    reported as the fastest)."""
    err = record.rel_grad_err
    tol = GRAD_TOLERANCE.get(record.dtype, GRAD_TOLERANCE["float32"])
    if record.status != "ok" or err is None or err <= tol:
        return record
    note = f"gradient differs from autodiff's: rel_grad_err {err:.2e} > {tol:g}; "
    return dataclasses.replace(
        record, status="mismatch", note=(note + (record.note or "")).rstrip("; ")
    )


def aa_name(impl: str) -> str:
    """The name of `impl`'s A/A twin: the same compiled unit, timed as another impl."""
    return f"{impl}_aa"


def _peak_fields(flops_per_s, peak, shape, library) -> dict[str, Any]:
    """The peak's fields of a record whose rate is `flops_per_s`."""
    return {
        "peak_flops_per_s": peak or None,
        "peak_shape": shape,
        "peak_library": library,
        "peak_fraction": flops_per_s / peak if flops_per_s and peak else None,
        "floor_ratio": peak / flops_per_s if flops_per_s and peak else None,
    }


def timed_record(
    base: Mapping[str, Any],
    impl: Impl,
    times: Mapping[str, Sequence[float]],
    *,
    steps: int,
    flops_per_step: float | None,
    reference: Any,
    peak: tuple[float, str, str],
    seed: int,
    positions: Sequence[int],
    twin_of: str | None = None,
) -> BenchRecord:
    """One "ok" record (`flag_mismatch` then checks its gradient): `base` (the machine's
    and the case's fields) and what `impl` and its unit `times` (seconds, by impl, a
    round each) say; `peak` is `(rate, shape, library)`, `seed` and `positions` the
    rounds' order, `twin_of` the original of an A/A twin."""
    per_step = [t / steps * 1e3 for t in times[impl.name]]
    median, iqr = median_iqr(per_step)
    ref_name = REFERENCE.get(impl.name, "autodiff")
    ratio = _median_ratio(times, impl.name, ref_name) if ref_name in times else None
    compiled = impl.compiled
    hlo = compiled.as_text() if compiled is not None else None
    flops_per_s = None if flops_per_step is None else flops_per_step / (median / 1e3)
    memory: dict[str, Any] = memory_figures(compiled)  # fields by name, as the record's
    return BenchRecord(
        **base,
        impl=impl.name,
        status="ok",
        kind=impl.kind,
        step_ms_median=median,
        step_ms_iqr=iqr,
        step_ms_min=min(per_step),
        total_ms=median * steps,
        ratio_vs_autodiff=ratio,
        ratio_reference=ref_name if ratio is not None else None,
        compile_s=impl.compile_s,
        flops_per_s=flops_per_s,
        **memory,
        peak_bytes_in_use=peak_bytes_in_use() if compiled is not None else None,
        residual_arrays=impl.residuals[0] if impl.residuals else None,
        residual_bytes=impl.residuals[1] if impl.residuals else None,
        **(hlo_counts(hlo) if hlo is not None else _NO_HLO),
        hlo_convs=hlo_conv_count(hlo) if hlo is not None else None,
        rel_grad_err=(
            rel_grad_err(impl.grads(), reference)
            if impl.grads is not None and reference is not None
            else None
        ),
        step_ms_samples=tuple(per_step),
        note=impl.note if twin_of is None else _twin_note(twin_of),
        **_peak_fields(flops_per_s, *peak),
        rotation_seed=seed,
        positions=tuple(positions),
        aa_ratio=None if twin_of is None else _median_ratio(times, impl.name, twin_of),
    )


def _median_ratio(times: Mapping[str, Sequence[float]], name: str, reference: str) -> float:
    """The median over rounds of `name`'s time over `reference`'s in the same round."""
    pairs = [a / b for a, b in zip(times[name], times[reference], strict=True)]
    return float(statistics.median(pairs))


def _twin_note(original: str) -> str:
    return f"A/A twin of {original}: the same compiled unit, timed apart"


_NO_HLO = dict.fromkeys(("hlo_gemms", "hlo_fusions", "hlo_ops"))


def progress_line(r: BenchRecord) -> str:
    """A timed record in one line."""
    ratio = f"{r.ratio_vs_autodiff:.3f}" if r.ratio_vs_autodiff is not None else "  -  "
    if r.ratio_reference not in (None, "autodiff"):
        ratio += f" vs {r.ratio_reference}"
    temp = "-" if r.temp_bytes is None else f"{r.temp_bytes / 2**20:.2f} MiB"
    peak = "  -  " if r.peak_fraction is None else f"{r.peak_fraction * 100:5.1f}"
    err = "" if r.rel_grad_err is None else f"  err {r.rel_grad_err:.1e}"
    return (
        f"  {r.workload:<18} {r.dtype:<9} {r.impl:<14} "
        f"{r.step_ms_median:10.4f} ms/step ±{r.step_ms_iqr:.4f}  ratio {ratio}  "
        f"{peak}% peak  temp {temp}{err}"
    )

"""Benchmarks of backpropagation implementations: fnn's hand-written backward against
`jax.grad`, fused scans, the custom_vjp bridge, the tutorial's numpy and the peers
(Equinox, Flax NNX, PyTorch), on the built-in workloads or on your own network or layer.

    records = fnn.bench.compare(net, loss, x, y)         # your network: training steps
    records += fnn.bench.compare_layer(layer, (64,), batch=256)  # one layer's backward
    records += fnn.bench.run_benchmarks(["mlp_b256"])    # the built-in grid (`fnn bench`)
    fnn.bench.report(records, "bench-out")               # results.json/.csv, report.md, charts

Each returns a list of `BenchRecord`s, one per implementation of a case; what each field
means is listed in `BenchRecord`'s docstring (`fnn.bench.records.field_list()` renders
it). `summary` shows a network layer by layer: shapes, params, FLOPs and the residuals
each backward keeps.

The harness's parts are modules of their own, each importing only from those before it
(and `measure` from none): `workloads` (what runs, the dtypes, the timed rounds),
`problems` (a workload made concrete, its reference gradients), `measure` (timing,
memory, HLO, residuals, the machine), `impls` (`Impl` and fnn's implementations),
`reference` (the tutorial's numpy), `peers` (Equinox, Flax NNX, PyTorch), `records` (the
record, the mismatch flag), `grid` (running the grid), `report` (files and charts), `vjp`
and `yours` (your own network or layer).
"""

from fnn.bench.grid import run_benchmarks
from fnn.bench.records import BenchRecord
from fnn.bench.report import read_results
from fnn.bench.summary import LayerRow, Summary, summary
from fnn.bench.workloads import Workload
from fnn.bench.yours import compare, compare_layer, report

__all__ = [
    "BenchRecord",
    "LayerRow",
    "Summary",
    "Workload",
    "compare",
    "compare_layer",
    "read_results",
    "report",
    "run_benchmarks",
    "summary",
]


# What `fnn.bench` exported before 0.2, now importable from the module that defines it: still
# resolved here for one release, with a DeprecationWarning (docs/changes.md).
_OLD_NAMES = frozenset(
    {
        "CPU_WORKLOADS",
        "CSV_FIELDS",
        "DTYPES",
        "GPU_WORKLOADS",
        "GRAD_TOLERANCE",
        "IMPLS",
        "Impl",
        "JAX_IMPLS",
        "PEER_BUILDERS",
        "PEER_IMPLS",
        "PEER_MODULES",
        "PER_EXAMPLE_IMPLS",
        "Problem",
        "QUICK_STEPS",
        "QUICK_WORKLOADS",
        "REFERENCE",
        "Skip",
        "VJPProblem",
        "VJP_IMPLS",
        "WORKLOADS",
        "bridge_objective",
        "build_custom_impl",
        "build_impl",
        "build_jax_impl",
        "build_numpy_impl",
        "build_per_example_impl",
        "build_vjp_impl",
        "choose_all",
        "count_residuals",
        "cpu_model",
        "default_dtypes",
        "dispatch_unit",
        "format_report",
        "gradients",
        "hlo_conv_count",
        "hlo_counts",
        "machine_info",
        "make_problem",
        "make_vjp_problem",
        "matmul_unit",
        "matmul_units",
        "measure_impls",
        "median_iqr",
        "memory_figures",
        "numpy_forward_backward",
        "peak_bytes_in_use",
        "peak_probes",
        "rel_grad_err",
        "repeat_calls",
        "repeat_step",
        "run_problem",
        "run_workload",
        "scaled",
        "square_peak_size",
        "time_rotation",
        "timed_compile",
        "user_problem",
        "write_charts",
        "write_csv",
        "write_json",
        "write_results",
    }
)
_HOMES = ("grid", "impls", "measure", "problems", "records", "reference", "report",
          "workloads", "vjp", "yours", "peers")  # fmt: skip


def __getattr__(name: str):
    """An old `fnn.bench.NAME` (before 0.2) resolves from the module that defines it, with a
    DeprecationWarning naming where it lives now."""
    import importlib
    import warnings

    if name in _OLD_NAMES:
        for home in _HOMES:
            module = importlib.import_module(f"fnn.bench.{home}")
            if name in vars(module):
                warnings.warn(
                    f"fnn.bench.{name} is deprecated and goes in the next release: use "
                    f"fnn.bench.{home}.{name}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                return vars(module)[name]
    raise AttributeError(f"module 'fnn.bench' has no attribute {name!r}")

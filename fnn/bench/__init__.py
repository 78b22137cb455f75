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

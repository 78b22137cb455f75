"""Benchmarks of backpropagation implementations: manual, autodiff, fused scans, numpy, peers.

A *workload* is an MLP, a loss, a batch and a number of steps; an *implementation* trains
it with plain SGD. For each (workload, dtype, implementation) the harness records:

- `step_ms_median`, `step_ms_iqr`: time per training step, over `repeats` timed units
  taken in turn with every other implementation of the workload, each round in a
  random order drawn from `rotation_seed` (each impl's place per round in `positions`),
  each timed unit right after an untimed call of the same unit (what the unit before it
  left behind, a library's thread pool still spinning, falls on that call), each unit
  closed by `block_until_ready`. A unit is
  `steps_per_call` steps: that many Python calls for a dispatched step (`manual`,
  `autodiff`, `custom_vjp`, peers), one call of a `lax.scan` over that many steps for the
  fused ones (`manual_scan`, `autodiff_scan`), a Python loop for `numpy`;
- `ratio_vs_autodiff`: the median over rounds of this unit's time over the reference's
  time in the same round (`autodiff`, or `autodiff_scan` for `manual_scan`);
- `compile_s`: `lower` + `compile` of the jitted function, timed alone;
- `flops_per_s`: `6 · batch · weights` per step (forward 2, backward 4 FLOPs per weight
  and example) over the median step; `peak_flops_per_s`: the best rate of a plain matmul
  measured in the same run (a square one and the workload's largest GEMM; the best
  round, since a peak is what the hardware can do);
  `peak_fraction` is their ratio and `floor_ratio` its inverse (median step time over the
  FLOP floor `6·B·P ÷ peak`); `step_ms_min` is the best round's step time;
- `temp_bytes`, `argument_bytes`, `output_bytes` from `compiled.memory_analysis()`, and
  on GPU `peak_bytes_in_use` from `device.memory_stats()` (the process-wide peak so far);
- `residual_arrays`, `residual_bytes`: the arrays the backward keeps from the forward,
  other than the arguments (JAX's saved-residuals analysis of the loss: through the
  custom_vjp bridge for the manual backward, of the plain forward for autodiff);
- `hlo_gemms`, `hlo_convs`, `hlo_fusions`, `hlo_ops`: counts in the compiled HLO text;
- `rel_grad_err`: `max over leaves of max|g − g_autodiff| / max|g_autodiff|` at the
  initial parameters, in the workload's dtype; `status` is "mismatch" (timed, flagged,
  never the fastest) where it exceeds `GRAD_TOLERANCE` of the dtype, else "ok" ("error"
  and "skipped" for impls that failed or could not run);
- the A/A self-test: the grid enters one impl (`manual` by default) twice, the second
  time as `manual_aa`, the same compiled unit timed as another impl; its `aa_ratio`, the
  median over rounds of its time over the original's, is the table's noise floor.

`run_benchmarks` returns the records (plain dicts); `write_results` writes
`results.json`, `results.csv`, `report.md` and the PNG charts.

The modules, each importing only from those before it (and `measure` from none):
`workloads` (what runs, the grids, `choose_all`), `problems` (a workload made concrete,
its reference gradients), `measure` (timing, memory, HLO, residuals, the machine),
`impls` (`Impl` and fnn's implementations), `reference` (the tutorial's numpy), `peers`
(Equinox, Flax NNX, PyTorch), `records` (a timed impl's record, the mismatch flag), `grid`
(running the grid), `report` (files and charts).
"""

from fnn.bench.grid import (
    build_impl,
    measure_impls,
    peak_probes,
    run_benchmarks,
    run_problem,
    run_workload,
)
from fnn.bench.impls import (
    IMPLS,
    JAX_IMPLS,
    PEER_IMPLS,
    PEER_MODULES,
    PER_EXAMPLE_IMPLS,
    REFERENCE,
    Impl,
    Skip,
    build_custom_impl,
    build_jax_impl,
    build_per_example_impl,
    dispatch_unit,
    repeat_step,
    timed_compile,
)
from fnn.bench.measure import (
    count_residuals,
    cpu_model,
    hlo_conv_count,
    hlo_counts,
    machine_info,
    matmul_unit,
    matmul_units,
    median_iqr,
    memory_figures,
    peak_bytes_in_use,
    rel_grad_err,
    repeat_calls,
    square_peak_size,
    time_rotation,
)
from fnn.bench.peers import PEER_BUILDERS
from fnn.bench.problems import Problem, bridge_objective, gradients, make_problem, user_problem
from fnn.bench.records import GRAD_TOLERANCE
from fnn.bench.reference import build_numpy_impl, numpy_forward_backward
from fnn.bench.report import (
    CSV_FIELDS,
    format_report,
    write_charts,
    write_csv,
    write_json,
    write_results,
)
from fnn.bench.summary import LayerRow, Summary, summary
from fnn.bench.vjp import VJP_IMPLS, VJPProblem, build_vjp_impl, make_vjp_problem
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
from fnn.bench.yours import compare, compare_layer, report

__all__ = [
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
    "Workload",
    "bridge_objective",
    "build_custom_impl",
    "build_impl",
    "build_jax_impl",
    "build_numpy_impl",
    "build_per_example_impl",
    "build_vjp_impl",
    "choose_all",
    "compare",
    "compare_layer",
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
    "summary",
    "Summary",
    "LayerRow",
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
    "report",
    "run_benchmarks",
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
]

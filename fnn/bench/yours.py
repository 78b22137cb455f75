"""Benchmark your own network or layer: `compare` (training steps, manual against
autodiff and any implementation of yours), `compare_layer` (one layer's forward and
backward against `jax.vjp`), and `report` (the files `fnn bench` writes).

    records = fnn.bench.compare(net, loss, x, y)             # manual, autodiff, scans, bridge
    records += fnn.bench.compare_layer(prelu(), (64,), batch=256,
                                       impls=["manual", "autodiff", ("mask", prelu_mask())])
    fnn.bench.report(records, "bench-mine")                  # JSON, CSV, markdown, charts

Both return the records `fnn bench` writes (`fnn.bench.BenchRecord`), measured the same
way: implementations timed in rounds, each round in a seeded random order, each
timed call right after an untimed one, then the matmul peak in rounds of its own. A record
whose gradient differs from autodiff's by more than `GRAD_TOLERANCE` of its dtype is
still timed, but its `status` is "mismatch" and the report flags it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from fnn.bench.grid import build_all, measure_impls, peak_probes, run_problem
from fnn.bench.impls import JAX_IMPLS
from fnn.bench.measure import machine_info, square_peak_size
from fnn.bench.problems import user_problem
from fnn.bench.records import BenchRecord
from fnn.bench.report import write_results
from fnn.bench.vjp import VJP_IMPLS, build_vjp_impl, make_vjp_problem
from fnn.bench.workloads import default_repeats
from fnn.core import Ctx, Layer, Loss, SettingError, choose

Impls = Sequence[str | tuple[str, Any]] | Mapping[str, Any]


def _impl_list(impls: Impls, builtin: Sequence[str]) -> list[str | tuple[str, Any]]:
    """`impls` as a list of built-in names and `(name, yours)` pairs; a SettingError for
    an unknown built-in name or a name given twice."""
    items = list(impls.items()) if isinstance(impls, Mapping) else list(impls)
    out: list[str | tuple[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        name, yours = (item, None) if isinstance(item, str) else item
        if yours is None:
            choose("impl", name, dict.fromkeys(builtin), setting="impls")
            out.append(name)
        else:
            out.append((name, yours))
        if name in seen:
            raise SettingError(f"impl {name!r} is given twice", settings=("impls",))
        seen.add(name)
    return out


def compare(
    net: Layer,
    loss: Loss,
    x: Any,
    y: Any,
    *,
    impls: Impls = JAX_IMPLS,
    optimizer: optax.GradientTransformation | None = None,
    steps: int | None = None,
    repeats: int | None = None,
    dtype: Any = None,
    name: str | None = None,
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
    aa: str | None = None,
) -> list[BenchRecord]:
    """Times training steps of `net` and `loss` on the batch `(x, y)`, implementation
    against implementation, and returns `fnn bench`'s records.

    Arguments:
      net, loss: your network and loss (any fnn Layer and Loss).
      x, y: one batch, `(batch, ...)`; every step trains on it.
      impls: built-in names ("manual": the hand-written backward; "autodiff": `jax.grad`;
        "manual_scan", "autodiff_scan": `steps` steps fused in one `lax.scan`;
        "custom_vjp": `jax.grad` through the custom_vjp bridge), and yours, as `(name,
        builder)` pairs or a `{name: builder}` dict (None for a built-in): `builder(
        problem)` returns an fnn Layer taking the same params (a variant of your network)
        or `grad_fn(params, x, y) -> (loss, grads)` (see `fnn.bench.impls.
        build_custom_impl`).
      optimizer: the optax optimiser every implementation applies (default SGD, 0.01).
      steps: training steps per timed unit (default 10).
      repeats: timed rounds (default 7, 3 with `quick`).
      dtype: the params' and floating inputs' dtype (default: x's, float32 for ids).
      name: the name in the records (default: the network's).
      quick: fewer rounds and a smaller matmul peak probe.
      progress: called with one line per implementation (default: silent).
      aa: an impl to time twice under two names, the second as `<impl>_aa` (the A/A
        self-test: its record's `aa_ratio` is the noise of the comparison).

    Returns:
      One `BenchRecord` per implementation, its `workload` the name; `flops_per_s` and
      `peak_fraction` come from XLA's cost analysis of the autodiff gradient (None, and
      said in `flops_source`, where it gives none), `rel_grad_err` is against autodiff at
      the initial params. The peak is the best matmul rate in the same rounds of JAX,
      numpy and PyTorch (PyTorch only if this process has imported it: a torch impl of
      yours, or you; `fnn bench`'s grid imports it where installed).

    Raises:
      SettingError: an unknown impl name, or a network, loss and batch that do not fit.
    """
    impls = _impl_list(impls, JAX_IMPLS)
    problem = user_problem(net, loss, x, y, optimizer=optimizer, steps=steps, dtype=dtype,
                           name=name)  # fmt: skip
    return run_problem(
        problem,
        impls,
        repeats=repeats or default_repeats(quick),
        square=square_peak_size(jax.devices()[0].platform, quick),
        machine=machine_info(),
        progress=progress or (lambda line: None),
        import_torch=False,  # seconds to import: only if a torch impl or you did
        aa=aa,
    )


def compare_layer(
    layer: Layer,
    in_shape: Sequence[int],
    *,
    batch: int,
    dtype: Any = "float32",
    ctx: Ctx | Callable[[Any], Ctx] | None = None,
    impls: Impls = ("manual", "autodiff"),
    calls: int = 20,
    repeats: int | None = None,
    make_input: Callable | None = None,
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
    aa: str | None = None,
) -> list[BenchRecord]:
    """Times one layer's forward and backward, hand-written against `jax.vjp` of its
    forward (and any variant of yours), on `(batch, *in_shape)` inputs, and returns
    `fnn bench`'s records (one "step" is one forward and backward).

    Arguments:
      layer: the layer (an fnn Layer with a backward).
      in_shape, batch: the input shape without, and the size of, the batch axis.
      dtype: the params' and input's dtype.
      ctx: the `fnn.Ctx` for a random or stateful layer, or `ctx(params) -> Ctx`.
      impls: "manual" (its hand-written backward), "autodiff" (`jax.vjp` of its forward),
        "custom_vjp" (`jax.vjp` through the bridge), and `(name, layer)` pairs or
        `{name: layer}` entries: other layers computing the same function with the same
        params, e.g. a backward that keeps other residuals.
      calls: forward-and-backward calls per timed unit.
      repeats, make_input, quick, progress, aa: as in `compare` and `fnn.check_layer`.

    Returns:
      One record per implementation, as `compare`'s; `residual_arrays` and
      `residual_bytes` are what each backward keeps from its forward, and
      `rel_grad_err` the largest relative difference of `(dparams, dx)` from `jax.vjp`'s.

    Raises:
      SettingError: not an fnn Layer, inputs it does not take, an unknown impl name.
    """
    impls = _impl_list(impls, VJP_IMPLS)
    problem = make_vjp_problem(layer, tuple(in_shape), batch=batch, dtype=dtype, ctx=ctx,
                               calls=calls, make_input=make_input)  # fmt: skip
    repeats = repeats or default_repeats(quick)
    base = {
        **machine_info(),
        "workload": layer.name,
        "description": f"{layer.name}: one forward and backward of (batch, "
        f"{', '.join(map(str, in_shape))}) inputs",
        "dtype": problem.dtype.name,
        "batch": batch,
        "params": int(sum(np.size(leaf) for leaf in jax.tree.leaves(problem.params))),
        "weights": None,
        "steps_per_call": calls,
        "repeats": repeats,
        "flops_source": problem.flops_source,
    }
    say = progress or (lambda line: None)
    built, records = build_all(impls, problem, base, build_vjp_impl, say, tolerate_errors=False)
    autodiff = built["autodiff"] if "autodiff" in built else build_vjp_impl("autodiff", problem)
    assert autodiff.grads is not None  # a layer's implementation gives its gradients
    reference = autodiff.grads()
    unit_flops = None if problem.flops is None else problem.flops * calls
    square = square_peak_size(jax.devices()[0].platform, quick=True)
    return records + measure_impls(
        base,
        built,
        reference,
        steps=calls,
        flops_per_step=problem.flops,
        probes=peak_probes(None, unit_flops, problem.dtype, square, import_torch=False),
        repeats=repeats,
        progress=progress or (lambda line: None),
        aa=aa,
    )


def report(
    records: Sequence[Mapping[str, Any]], out_dir: str | Path, *, title: str = "fnn bench"
) -> list[Path]:
    """Writes `results.json`, `results.csv`, `report.md` and the charts (`time.png`,
    `ratio.png`, `peak.png`) for `records` under `out_dir`; returns the paths."""
    return write_results(records, out_dir, title=title)

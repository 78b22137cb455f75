"""Measurements, independent of the workloads: timing units in a rotation and their
median/IQR, the matmul units that measure the peak, compiled memory and the device's peak
bytes, the residuals reverse mode keeps, HLO instruction counts, the relative gradient
error, and where the run happened."""

from __future__ import annotations

import io
import math
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# ---------------------------------------------------------------------------------------
# Timing


def repeat_calls(fn: Callable, args: Sequence[Any], calls: int) -> Callable:
    """A unit `unit(state) -> state` making `calls` calls of `fn(*args)`, blocked until the
    last result is ready; the state passes through untouched."""

    def unit(state):
        out = None
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        return state

    return unit


def matmul_unit(m: int, k: int, n: int, dtype, calls: int) -> tuple[Callable, float]:
    """A unit of `calls` jitted (m, k)·(k, n) matmuls in JAX, and the FLOPs it does."""
    rng = np.random.default_rng(7)
    a = jnp.asarray(rng.standard_normal((m, k), np.float32), dtype)
    b = jnp.asarray(rng.standard_normal((k, n), np.float32), dtype)
    f = jax.jit(lambda a, b: a @ b).lower(a, b).compile()
    return repeat_calls(f, (a, b), calls), 2.0 * m * k * n * calls


def matmul_units(
    m: int, k: int, n: int, dtype, calls: int, *, import_torch: bool = True
) -> dict[str, tuple[Callable, float]]:
    """The same (m, k)·(k, n) matmul unit in every library present that can run it on this
    device, by library: "jax" always; "numpy" (its BLAS) on a CPU run in float32 and
    float64; "torch" where PyTorch is installed (on CUDA when JAX runs on a GPU) — with
    `import_torch=False`, only where this process has already imported it (the import
    takes seconds). The machine's matmul peak is the best of them, whoever reaches it."""
    units = {"jax": matmul_unit(m, k, n, dtype, calls)}
    name = jnp.dtype(dtype).name
    flops = 2.0 * m * k * n * calls
    on_cpu = jax.devices()[0].platform == "cpu"
    rng = np.random.default_rng(7)
    if on_cpu and name in ("float32", "float64"):
        a = rng.standard_normal((m, k)).astype(name)
        b = rng.standard_normal((k, n)).astype(name)
        units["numpy"] = (repeat_calls(np.matmul, (a, b), calls), flops)
    torch = _torch() if import_torch else sys.modules.get("torch")
    if torch is not None and hasattr(torch, name):
        device = "cpu" if on_cpu else ("cuda" if torch.cuda.is_available() else None)
        if device is not None:
            a = torch.randn(m, k, device=device, dtype=getattr(torch, name))
            b = torch.randn(k, n, device=device, dtype=getattr(torch, name))
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

            def unit(state, a=a, b=b):
                for _ in range(calls):
                    torch.mm(a, b)
                sync()
                return state

            units["torch"] = (unit, flops)
    return units


def _torch():
    """PyTorch if it is installed, else None (imported only when asked for)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch


def time_rounds(
    units: dict[str, Callable], states: dict[str, Any], repeats: int, *, seed: int = 0
) -> tuple[dict[str, list[float]], list[list[str]]]:
    """Times every unit once per round for `repeats` rounds: `(times, orders)`, seconds
    per unit per round and each round's order.

    Fair to whichever unit comes first or follows another library's:

    - the order is a fresh random permutation each round, drawn from `seed` (recorded in
      `orders`), so no unit always follows the same one;
    - each unit runs once, untimed, right before its timed call. What the unit before it
      left behind (numpy's BLAS or PyTorch's OpenMP threads still spinning after a call,
      caches it evicted) falls on that warm call, not on the timed one:
      `benchmarks/order_bias.py` measures the step 1.1-1.2 x slower right after a numpy
      or PyTorch matmul, and within the noise after the warm call.
    """
    rng = random.Random(seed)
    names = list(units)
    times: dict[str, list[float]] = {name: [] for name in names}
    orders = []
    for _ in range(repeats):
        order = names.copy()
        rng.shuffle(order)
        orders.append(order)
        for name in order:
            states[name] = units[name](states[name])  # warm: absorbs what came before
            start = time.perf_counter()
            states[name] = units[name](states[name])
            times[name].append(time.perf_counter() - start)
    return times, orders


def time_rotation(
    units: dict[str, Callable], states: dict[str, Any], repeats: int, *, seed: int = 0
) -> dict[str, list[float]]:
    """`time_rounds`' times alone: seconds per unit per round, each round in a seeded
    random order, each timed call right after an untimed one of the same unit."""
    return time_rounds(units, states, repeats, seed=seed)[0]


def median_iqr(values: Sequence[float]) -> tuple[float, float]:
    """(median, interquartile range) of `values`."""
    q1, q2, q3 = np.percentile(np.asarray(values, np.float64), [25, 50, 75])
    return float(q2), float(q3 - q1)


# ---------------------------------------------------------------------------------------
# Memory and residuals

MEMORY_FIELDS = {
    "temp_bytes": "temp_size_in_bytes",
    "argument_bytes": "argument_size_in_bytes",
    "output_bytes": "output_size_in_bytes",
}


def memory_figures(compiled) -> dict[str, int | None]:
    """temp, argument and output bytes from `compiled.memory_analysis()`; None for each
    when there is no executable (`compiled` None) or the backend does not say."""
    try:
        analysis = None if compiled is None else compiled.memory_analysis()
    except Exception:  # some backends do not implement it
        analysis = None
    if analysis is None:
        return dict.fromkeys(MEMORY_FIELDS)
    return {k: int(getattr(analysis, v)) for k, v in MEMORY_FIELDS.items()}


def peak_bytes_in_use() -> int | None:
    """The device's process-wide peak bytes in use so far (GPU/TPU), else None."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    return None if not stats else stats.get("peak_bytes_in_use")


def count_residuals(fn: Callable, *args, inputs: tuple[int, ...] = ()) -> tuple[int, int]:
    """(arrays, bytes) that reverse mode keeps from the forward of `fn(*args)`, arguments,
    constants and literals excluded, by JAX's saved-residuals analysis; the arguments at
    the positions `inputs` count when kept (a layer's input x, not its params)."""
    counted = tuple(f"from the argument a[{i}]" for i in inputs)
    fn = (lambda f: lambda *a: f(*a))(fn)  # arguments named a[0], a[1], ... in the analysis
    try:
        from jax._src.ad_checkpoint import saved_residuals

        found = saved_residuals(fn, *args)
        # (an abstract value or a ShapeDtypeStruct: a shape and a dtype, why it is kept)
        items: list[tuple[Any, str]] = [(aval, why) for aval, why in found]
    except (ImportError, AttributeError):  # the public printer, parsed
        from jax.ad_checkpoint import print_saved_residuals

        buffer = io.StringIO()
        with redirect_stdout(buffer):
            print_saved_residuals(fn, *args)
        items = []
        for line in buffer.getvalue().splitlines():
            shape, _, why = line.partition(" ")
            match = re.match(r"(\w+)\[([\d,]*)\]", shape)
            if match:
                dims = tuple(int(d) for d in match.group(2).split(",") if d)
                items.append((jax.ShapeDtypeStruct(dims, match.group(1)), why))
    kept = [aval for aval, why in items
            if not why.startswith("from ") or why in counted
            or why.startswith(tuple(f"{c}[" for c in counted))]  # fmt: skip
    nbytes = sum(math.prod(a.shape) * jnp.dtype(a.dtype).itemsize for a in kept)
    return len(kept), int(nbytes)


def count_vjp_residuals(
    fn: Callable, dy: Any, *args, inputs: tuple[int, ...] = ()
) -> tuple[int, int]:
    """`count_residuals` of `jax.vjp(fn, *args)` pulled back from the cotangent `dy`: the
    objective is `sum(fn(*args) * dy)`, `dy` a constant (`jnp.vdot` would reshape it and
    count the reshaped copy as kept); the arguments at `inputs` count when kept."""
    return count_residuals(lambda *a: jnp.sum(fn(*a) * dy), *args, inputs=inputs)


def count_kept(fn: Callable, *args) -> tuple[int, int]:
    """(arrays, bytes) of the residual pytree `fn(*args)` returns (what a hand-written
    backward keeps), each array counted once, the arguments themselves and empty arrays
    excluded, as `count_residuals` counts what reverse mode keeps. Traced, not run."""
    kept: dict[int, Any] = {}

    def trace(*args):
        inputs = {id(leaf) for leaf in jax.tree.leaves(args)}
        for leaf in jax.tree.leaves(fn(*args)):
            if id(leaf) not in inputs and math.prod(jnp.shape(leaf)) > 0:
                kept[id(leaf)] = jax.ShapeDtypeStruct(jnp.shape(leaf), leaf.dtype)
        return ()

    jax.eval_shape(trace, *args)
    nbytes = sum(math.prod(a.shape) * jnp.dtype(a.dtype).itemsize for a in kept.values())
    return len(kept), int(nbytes)


# ---------------------------------------------------------------------------------------
# The compiled HLO and the gradient

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%[\w.\-]+ = .*$", flags=re.M)
_CUDNN_CONV = re.compile(r"custom-call\(.*conv(Forward|BackwardInput|BackwardFilter)")


def _instructions(hlo_text: str) -> list[str]:
    """The instruction lines of a compiled module's text, fused computations included."""
    return _INSTRUCTION.findall(hlo_text)


def hlo_counts(hlo_text: str) -> dict[str, int]:
    """GEMMs (dots, and GEMM custom calls as on GPU), fusions and all instructions in a
    compiled module's text, fused computations included."""
    instructions = _instructions(hlo_text)
    dots = sum(1 for line in instructions if re.search(r"\bdot\(", line))
    gemm_calls = sum(
        1
        for line in instructions
        if "custom-call(" in line and re.search(r"gemm|matmul", line, flags=re.I)
    )
    fusions = sum(1 for line in instructions if re.search(r"\bfusion\(", line))
    return {"hlo_gemms": dots + gemm_calls, "hlo_fusions": fusions, "hlo_ops": len(instructions)}


def hlo_conv_count(hlo_text: str) -> int:
    """Convolutions in a compiled module's text: XLA's, and cuDNN's custom calls on GPU."""
    return sum(
        1
        for line in _instructions(hlo_text)
        if re.search(r"\bconvolution\(", line) or _CUDNN_CONV.search(line)
    )


def rel_grad_err(grads, reference) -> float:
    """max over leaves of max|g − ref| / max|ref| (norm-wise; 0 where both are zero)."""
    worst = 0.0
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True):
        if np.asarray(r).dtype == jax.dtypes.float0:  # an integer input: no derivative
            continue
        g = np.asarray(g, np.float64)
        r = np.asarray(r, np.float64)
        scale = np.max(np.abs(r)) if r.size else 0.0
        diff = np.max(np.abs(g - r)) if r.size else 0.0
        worst = max(worst, float(diff / scale) if scale > 0 else float(diff))
    return worst


# ---------------------------------------------------------------------------------------
# The machine


def machine_info() -> dict[str, Any]:
    """Fields describing where the run happened, copied into every record."""
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": getattr(device, "device_kind", device.platform),
        "device_count": jax.device_count(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo or `platform`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def square_peak_size(platform_name: str, quick: bool) -> int:
    """The side of the square matmul peak probe."""
    if platform_name == "cpu":
        return 1024 if quick else 2048
    return 4096 if quick else 8192

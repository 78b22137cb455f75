"""The GPU benchmark grid of fnn, in at most about five minutes on one H100 or H200.

Run from the repository root with nothing installed but jax (CUDA), optax, matplotlib
and, optionally, equinox, flax and torch:

    PYTHONPATH=. python benchmarks/gpu_grid.py            # writes under $OUT
    PYTHONPATH=. python benchmarks/gpu_grid.py --tiny     # a seconds-long check, any device

Cases run in order of importance and the results are rewritten after each one, so a run
cut short still leaves everything measured so far: results-<device>.json/.csv,
report-<device>.md and time/ratio/peak-<device>.png, the device's name in every file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

# Let torch and JAX share the GPU, and make peak_bytes_in_use the run's real peak.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

from fnn import bench  # noqa: E402

# (workload, dtype) in order of importance: the goals first.
GPU_CASES = (
    ("mlp_b256", "float32"),  # dispatched vs fused scan (goal: scan ≥ 3× faster per step)
    ("wide_8192x3", "bfloat16"),  # manual ≥ 90% of the bf16 matmul peak
    ("deep_relu_4096", "float32"),  # temp memory: relu vs sigmoid, manual vs autodiff
    ("deep_sigmoid_4096", "float32"),
    ("deep_tanh_4096", "float32"),
    ("deep_relu_4096", "bfloat16"),
    ("mlp_b4096", "float32"),
    ("tutorial", "float32"),
    ("cnn_mnist_b1024", "float32"),  # conv net: manual vs autodiff, dispatched and in a scan
    ("transformer_512", "bfloat16"),  # attention: hand-written backward vs jax.grad
    ("deep_sigmoid_4096", "bfloat16"),
    ("deep_tanh_4096", "bfloat16"),
    ("wide_8192x3", "float32"),
    ("mlp_b256", "bfloat16"),
    ("mlp_b4096", "bfloat16"),
    ("transformer_512", "float32"),
)
GPU_STEPS = {"tutorial": 2_000, "mlp_b256": 200, "mlp_b4096": 50}
TINY_CASES = (("tiny", "float32"), ("tutorial", "float32"))
TINY_STEPS = {"tiny": 4, "tutorial": 200}


def device_slug() -> str:
    """The device's name for file names, e.g. 'nvidia-h200' or 'cpu'."""
    kind = getattr(jax.devices()[0], "device_kind", "") or jax.devices()[0].platform
    return re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-") or "device"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="two tiny cases, any device")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-results")))
    parser.add_argument("--budget", type=float, default=270.0, help="seconds before no new case")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--impls", default=",".join(bench.IMPLS))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    deadline = start + args.budget
    cases, steps = (TINY_CASES, TINY_STEPS) if args.tiny else (GPU_CASES, GPU_STEPS)
    impls = [name for name in args.impls.split(",") if name]
    slug = device_slug()
    print(f"device {jax.devices()[0]} ({slug}), jax {jax.__version__}", flush=True)
    records = []
    for workload, dtype in cases:
        left = deadline - time.monotonic()
        records += bench.run_benchmarks(
            [workload],
            impls,
            [dtype],
            repeats=args.repeats,
            quick=args.tiny,
            steps=steps,
            deadline=deadline if left > 0 else time.monotonic() - 1,
            progress=lambda line: print(line, flush=True),
        )
        bench.write_results(records, args.out, suffix=f"-{slug}", title=f"fnn bench on {slug}")
    print(f"wrote {args.out} in {time.monotonic() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU benchmark grid of fnn, in at most about five minutes on one H100 or H200.

Run from the repository root with nothing installed but jax (CUDA), optax, matplotlib
and, optionally, equinox, flax and torch:

    PYTHONPATH=. python benchmarks/gpu_grid.py            # writes under $OUT
    PYTHONPATH=. python benchmarks/gpu_grid.py --tiny     # a seconds-long check, any device
    PYTHONPATH=. python benchmarks/gpu_grid.py --gpt      # the GPT section alone (below)
    PYTHONPATH=. python benchmarks/gpu_grid.py --gpt --tiny   # its dry run, < 1 min on a CPU

The GPT section (`--gpt`, benchmarks/gpt_race.py's race; not yet run on a GPU, a few
minutes expected, most of it compiling): GPT-2 124M's shape (vocab 50257, context 1024,
width 768, 12 heads, 12 blocks; batch `--gpt-batch`, default 8; T 1024) in bfloat16 (params
and activations; the fused head and the loss in float32): fnn's manual backward (fused
head, attention blocks of 128, recompute gelu; `manual_again` its A/A twin; `manual_b256`
blocks of 256) against jax.grad, jax.grad with jax.checkpoint on each block, and PyTorch with
scaled_dot_product_attention (eager and torch.compile) where torch has CUDA. Tokens/s, % of
the bfloat16 peak (8192³ matmuls, many calls a unit, median of the rounds), compiled temp
memory; writes gpt-<device>.json and .png under `--out`.

Cases run in order of importance and the results are rewritten after each one, so a run
cut short still leaves everything measured so far: results-<device>.json/.csv,
report-<device>.md and time/ratio/peak-<device>.png, the device's name in every file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

# Let torch and JAX share the GPU, and make peak_bytes_in_use the run's real peak.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

from fnn.bench.grid import run_benchmarks  # noqa: E402
from fnn.bench.impls import IMPLS  # noqa: E402
from fnn.bench.report import write_results  # noqa: E402

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
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--gpt", action="store_true", help="the GPT section only (gpt_race.py)")
    parser.add_argument("--gpt-batch", type=int, default=8, help="the GPT section's batch")
    return parser.parse_args(argv)


def gpt_section(args: argparse.Namespace, slug: str) -> int:
    """GPT-2 124M's shape in bfloat16 (`--tiny`: a toy GPT, on any device, < 1 min)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import gpt_race

    tiny = args.tiny
    shape = gpt_race.Shape(
        vocab=512 if tiny else 50257, context=64 if tiny else 1024, width=64 if tiny else 768,
        heads=4 if tiny else 12, blocks=2 if tiny else 12, batch=2 if tiny else args.gpt_batch,
        T=64 if tiny else 1024, dtype="bfloat16",
    )  # fmt: skip
    torch_device = "cpu"
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = gpt_race.Settings(
        recompute="gelu", block_size=16 if tiny else 128, try_block_sizes=() if tiny else (256,),
        rounds=2 if tiny else 7, unit_s=0.02 if tiny else 0.3, peak_size=256 if tiny else 8192,
        torch_device=torch_device,
    )  # fmt: skip
    names = ["manual", "manual_again", *(f"manual_b{b}" for b in settings.try_block_sizes),
             "autodiff", "autodiff_remat", "torch_eager"]  # fmt: skip
    if not tiny and torch_device == "cuda":
        names.append("torch_compile")
    elif torch_device != "cuda" and not tiny:
        names.remove("torch_eager")  # torch on the host CPU is no peer of a GPU step
    result = gpt_race.race(shape, settings, names, progress=lambda s: print(s, flush=True))
    notes = [f"device {jax.devices()[0]}; torch on {torch_device}"]
    run = gpt_race.record(result, args, notes)
    run["device"] = str(getattr(jax.devices()[0], "device_kind", jax.devices()[0].platform))
    print(gpt_race.table(result), flush=True)
    print(json.dumps(result["goals"], indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"gpt-{slug}.json"
    out.write_text(json.dumps(run, indent=1) + "\n")
    gpt_race.plot_race(run, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}", flush=True)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.gpt:
        return gpt_section(args, device_slug())
    start = time.monotonic()
    deadline = start + args.budget
    cases, steps = (TINY_CASES, TINY_STEPS) if args.tiny else (GPU_CASES, GPU_STEPS)
    impls = [name for name in args.impls.split(",") if name]
    slug = device_slug()
    print(f"device {jax.devices()[0]} ({slug}), jax {jax.__version__}", flush=True)
    records = []
    for workload, dtype in cases:
        left = deadline - time.monotonic()
        records += run_benchmarks(
            [workload],
            impls,
            [dtype],
            repeats=args.repeats,
            quick=args.tiny,
            steps=steps,
            deadline=deadline if left > 0 else time.monotonic() - 1,
            progress=lambda line: print(line, flush=True),
        )
        write_results(records, args.out, suffix=f"-{slug}", title=f"fnn bench on {slug}")
    print(f"wrote {args.out} in {time.monotonic() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

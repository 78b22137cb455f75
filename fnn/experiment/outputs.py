"""A run's outputs in its directory: `metrics.json` (config, history, final scores, the
gradient check, the device) and `curves.png`; the checkpoint is `fnn.experiment.run`'s."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from fnn.check import CheckResult
from fnn.experiment.recipes import recipe_fields
from fnn.experiment.run import Run, check_sample
from fnn.plot import plot_gradients, plot_history
from fnn.tasks import metric_name
from fnn.train import FitResult
from fnn.train.distributed import is_main_process
from fnn.version import __version__

METRICS = "metrics.json"
CURVES = "curves.png"
GRADIENTS = "gradients.png"


def device_info() -> dict[str, Any]:
    """The device the run used: kind, platform, count, and the host's processor."""
    device = jax.devices()[0]
    return {
        "kind": device.device_kind,
        "platform": device.platform,
        "count": jax.device_count(),
        "processor": platform.processor() or platform.machine(),
    }


def metrics_record(
    run: Run,
    result: FitResult,
    *,
    wall_s: float,
    check: CheckResult | None = None,
    status: str = "completed",
    error: str | None = None,
    mesh: Any = None,
    overridden: Sequence[str] = (),
) -> dict[str, Any]:
    """The metrics.json content of a run (JSON-able); with the data-parallel `mesh` the
    run trained on, a `data_parallel` entry (devices, processes). `recipe` records the
    data set's recipe and which of its fields `overridden` replaced (flags)."""
    task = run.data.task
    metric = metric_name(task)
    history = result.history
    record: dict[str, Any] = {
        "dataset": run.config.dataset,
        "task": task,
        "grad_mode": run.config.grad,
        "loss": run.loss.name,
        "network": run.net.name,
        "num_params": int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(run.params))),
        "num_train": int(run.data.x_train.shape[0]),
        "num_test": int(run.data.x_test.shape[0]),
        "epochs": result.epoch,
        "status": status,
        f"test_{metric}": history[f"test_{metric}"][-1] if history.get(f"test_{metric}") else None,
        "test_loss": history["test_loss"][-1] if history.get("test_loss") else None,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "wall_s": wall_s,
        "device": device_info(),
        "versions": {"fnn": __version__, "jax": jax.__version__, "optax": optax.__version__},
        "config": run.config.to_dict(),
        "history": history,
    }
    fields = recipe_fields(run.config.dataset)
    record["recipe"] = {
        "dataset": run.config.dataset,
        "fields": {k: run.config.to_dict()[k] for k in fields},
        "overridden": sorted(set(overridden) & set(fields)),
    }
    if check is not None:
        record["gradient_check"] = {
            "max_rel_err": check.max_rel_err,
            "passed": check.passed,
            "examples": list(check_sample(run)[0].shape),
            "dtype": check.dtype,
        }
    if error is not None:
        record["error"] = error
    if mesh is not None:
        record["data_parallel"] = {
            "devices": int(mesh.size),
            "processes": len({d.process_index for d in mesh.devices.flat}),
            "axis": "data",
        }
    return record


def write_outputs(run: Run, result: FitResult, out_dir: str | Path, **record_kwargs) -> dict:
    """Writes `out_dir/metrics.json` and `out_dir/curves.png` (and `gradients.png` for a
    run that tracked its gradient flow); returns the metrics."""
    out_dir = Path(out_dir)
    record = metrics_record(run, result, **record_kwargs)
    if not is_main_process():  # several processes: process 0 alone writes
        return record
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS).write_text(json.dumps(record, indent=2) + "\n")
    c = run.config
    hidden = "-".join(map(str, c.hidden))
    model = "cnn" if c.model == "cnn" else f"hidden {hidden}"
    model += " batch_norm" if c.batch_norm else ""
    model += f" dropout {c.dropout:g}" if c.dropout else ""
    title = (
        f"{c.dataset}: {model} {c.activation}, {c.grad} gradients, "
        f"{c.optimizer} η={c.lr:g}, batch {c.batch_size}"
    )
    if result.history.get("train_loss"):
        plot_history(result.history, out_dir / CURVES, title=_shorten(title, 90))
    if c.track_gradients and result.history.get("train_loss"):
        grad = "the hand-written backward" + (
            " (tracked in autodiff mode)" if c.grad != "manual" else ""
        )
        plot_gradients(
            result.history, out_dir / GRADIENTS, title=f"{c.dataset}: gradient flow through {grad}"
        )
    return record


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"

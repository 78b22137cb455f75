"""A configured training run end to end: the library side of `fnn train`.

    config = TrainConfig(dataset="digits", epochs=30)
    run = prepare(config)                          # data, network, loss, optimiser, params
    check = verify_gradients(run)                  # manual backward vs jax.grad, float64
    result = train(run, out_dir, checkpoint_every=10)   # fit + checkpoints
    metrics = write_outputs(run, result, out_dir, wall_s=...)  # metrics.json, curves.png

`resume(out_dir)` rebuilds a run from the checkpoint in `out_dir`. Every output of a run
lives in one directory: `checkpoint.npz`, `metrics.json`, `curves.png`.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn import activations as _activations
from fnn.check import CheckResult, check_model
from fnn.conv import cnn
from fnn.core import Ctx, Layer, Loss, choose, init_state
from fnn.grad import GRAD_MODES
from fnn.losses import LOSSES, get_loss
from fnn.network import mlp
from fnn.optim import OPTIMIZERS, SCHEDULES, make_optimizer
from fnn.tasks import DEFAULT_LOSS, LOSSES_FOR_TASK, metric_name
from fnn.train import FitResult, fit

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
CURVES = "curves.png"
CHECK_EXAMPLES = 32  # examples in the pre-training gradient check
MODELS = ("mlp", "cnn")
IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist")  # the data sets --model cnn takes


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (what a checkpoint stores as `config`).

    The defaults train digits to ≥ 0.97 test accuracy in a few seconds on a 2-core CPU.
    `loss=None` picks the task's default (`fnn.tasks.DEFAULT_LOSS`).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    csv: str | None = None
    target_column: str = "-1"
    test_fraction: float = 0.2
    model: str = "mlp"
    hidden: tuple[int, ...] = (256, 128)
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0
    loss: str | None = None
    grad: str = "manual"
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "constant"
    clip_norm: float | None = None
    epochs: int = 30
    batch_size: int = 32
    patience: int | None = None
    seed: int = 0
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from `to_dict`'s output; unknown keys are a ValueError."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(names)}")
        values = dict(values)
        if "hidden" in values:
            values["hidden"] = tuple(int(h) for h in values["hidden"])
        return cls(**values)

    def validate(self) -> None:
        """Raises ValueError naming the valid choices for any bad field."""
        choose("grad mode", self.grad, dict.fromkeys(GRAD_MODES))
        choose("optimizer", self.optimizer, dict.fromkeys(OPTIMIZERS))
        choose("schedule", self.schedule, dict.fromkeys(SCHEDULES))
        choose("activation", self.activation, _activations.ACTIVATIONS)
        choose("model", self.model, dict.fromkeys(MODELS))
        if self.loss is not None:
            choose("loss", self.loss, LOSSES)
        choose("dtype", self.dtype, dict.fromkeys(("float32", "float64")))
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {list(self.hidden)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout rate must be in [0, 1), got {self.dropout}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")


class Run(NamedTuple):
    """A prepared run: what `train` needs, built from a config (and a checkpoint)."""

    config: TrainConfig
    data: Any  # fnn.data.Dataset
    net: Layer
    loss: Loss
    optimizer: optax.GradientTransformation
    params: Any
    opt_state: Any
    key: jax.Array  # the data-order key: epoch e shuffles with fold_in(key, e)
    start_epoch: int
    history: dict[str, list[float]] | None
    state: Any = ()  # running statistics (batch_norm), fnn.init_state(net, params)


def loss_name(config: TrainConfig, task: str) -> str:
    """The configured loss, or the task's default; a ValueError when it does not fit."""
    name = config.loss or DEFAULT_LOSS[task]
    if name not in LOSSES_FOR_TASK[task]:
        raise ValueError(
            f"loss {name!r} does not fit the {task} data set {config.dataset!r}; "
            f"use one of: {', '.join(LOSSES_FOR_TASK[task])}"
        )
    return name


def build_network(config: TrainConfig, data: Any, loss: str) -> Layer:
    """The network of `config.model`, with a last dense layer of the data set's output
    width; a sigmoid output only for `binary_cross_entropy` (it takes probabilities; the
    other losses take raw outputs, i.e. logits).

    "mlp": `hidden` widths with `activation`. "cnn" (image data sets, `(h, w, 1)` inputs):
    `fnn.conv.cnn`, conv2d(16, 3) and conv2d(32, 3, stride 2) with `activation`, flatten,
    dense(64); `hidden` is not used. `batch_norm` and `dropout` as `mlp` and `cnn` take
    them.
    """
    extras = dict(batch_norm=config.batch_norm, dropout=config.dropout)
    output = "sigmoid" if loss == "binary_cross_entropy" else None
    if config.model == "cnn":
        if len(data.feature_shape) != 3:
            raise ValueError(
                f"--model cnn needs an image data set ({', '.join(IMAGE_DATASETS)}); "
                f"{config.dataset} has flat features of shape {tuple(data.feature_shape)}"
            )
        return cnn(
            data.output_width, activation=config.activation, output_activation=output, **extras
        )
    return mlp(
        [*config.hidden, data.output_width],
        config.activation,
        output_activation=output,
        **extras,
    )


def _check_dtype_enabled(dtype: str) -> None:
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype float64 needs 64-bit types: call jax.config.update('jax_enable_x64', "
            "True) first (fnn train --dtype float64 does)"
        )


def load_data(config: TrainConfig):
    """The configured data set (`fnn.data.load_dataset`; raises `fnn.data.DataError`)."""
    from fnn.data import load_dataset

    target: str | int = config.target_column
    if isinstance(target, str) and target.lstrip("-").isdigit():
        target = int(target)
    return load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        csv_path=config.csv,
        target_column=target,
        test_fraction=config.test_fraction,
        seed=config.seed,
        dtype=config.dtype,
        flatten=config.model != "cnn",  # images stay (height, width, 1) for the cnn
    )


def prepare(config: TrainConfig, *, data: Any = None) -> Run:
    """Loads the data (unless given), builds the network, loss and optimiser, and
    initialises params and optimiser state from `config.seed`.

    Raises:
      ValueError (DataError included): a bad config, data set, loss, or batch size.
    """
    config.validate()
    _check_dtype_enabled(config.dtype)
    data = load_data(config) if data is None else data
    n = data.x_train.shape[0]
    if config.batch_size > n:
        raise ValueError(
            f"batch size {config.batch_size} is larger than the {n} training examples of "
            f"{config.dataset}; use --batch-size {n} or less"
        )
    loss = loss_name(config, data.task)
    net = build_network(config, data, loss)
    steps = config.epochs * (n // config.batch_size)
    optimizer = make_optimizer(
        config.optimizer,
        config.lr,
        schedule=config.schedule,
        total_steps=steps,
        clip_norm=config.clip_norm,
    )
    init_key, data_key = jax.random.split(jax.random.PRNGKey(config.seed))
    # One compiled init rather than one compile per eager op (much faster to start).
    init = jax.jit(net.init, static_argnums=(1, 2))
    _, params = init(init_key, tuple(data.x_train.shape[1:]), jnp.dtype(config.dtype))
    opt_state = optimizer.init(params)
    state = init_state(net, params)
    return Run(
        config, data, net, get_loss(loss), optimizer, params, opt_state, data_key, 0, None, state
    )


def resume(out_dir: str | Path, *, epochs: int | None = None) -> Run:
    """Rebuilds the run saved in `out_dir/checkpoint.npz`, to continue up to `epochs`
    epochs in total (default: the saved config's `epochs`, the total it was started for).

    The config comes from the checkpoint, with `epochs` replaced. The learning-rate
    schedule is sized for the new total: with the constant schedule (the default), or
    when the total is unchanged (an interrupted run), the resumed run is exactly the
    uninterrupted one; a decaying schedule stretched to a longer total is not.

    Raises:
      fnn.checkpoint.CheckpointError: a missing, corrupt or mismatching checkpoint.
      ValueError: `epochs` below the epochs already done.
    """
    from fnn.checkpoint import load_checkpoint, read_metadata

    path = Path(out_dir) / CHECKPOINT
    config = TrainConfig.from_dict(read_metadata(path)["config"])
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    run = prepare(config)
    saved = load_checkpoint(
        path, params_like=run.params, opt_state_like=run.opt_state, state_like=run.state
    )
    if config.epochs < saved.epoch:
        raise ValueError(
            f"the checkpoint in {out_dir} has {saved.epoch} epochs done; --epochs "
            f"{config.epochs} asks for fewer"
        )
    return run._replace(
        params=saved.params,
        opt_state=saved.opt_state,
        key=saved.key,
        start_epoch=saved.epoch,
        history=saved.history,
        state=saved.state,
    )


def verify_gradients(run: Run, *, examples: int = CHECK_EXAMPLES) -> CheckResult:
    """Checks the network's hand-written gradients against `jax.grad` (float64) on the
    first `examples` training examples, at the initial params of the run's seed; a
    network with dropout or batch_norm is checked in training mode (one fixed dropout
    mask, batch statistics)."""
    x = np.asarray(run.data.x_train[:examples])
    y = np.asarray(run.data.y_train[:examples])
    # The same functions, each compiled once instead of op by op: same values, faster.
    net, loss = run.net, run.loss
    net = net._replace(
        init=jax.jit(net.init, static_argnums=(1, 2)),
        forward=jax.jit(net.forward),
        backward=jax.jit(net.backward),
    )
    loss = Loss(jax.jit(loss.forward), jax.jit(loss.backward), loss.name)
    ctx = None
    if net.takes_ctx:
        dropout_key = jax.random.PRNGKey(run.config.seed + 1)
        ctx = lambda params: Ctx(True, dropout_key, init_state(net, params))  # noqa: E731
    return check_model(net, loss, x, y, key=run.config.seed, dtype="float64", ctx=ctx)


def save(run: Run, state: FitResult, out_dir: str | Path) -> Path | None:
    """Writes `out_dir/checkpoint.npz` for `state` (atomically); in a multi-process run,
    process 0 alone writes (the params are replicated) and the others return None."""
    from fnn.checkpoint import save_checkpoint
    from fnn.parallel import is_main_process, local_copy

    if not is_main_process():
        return None
    state = state._replace(
        params=local_copy(state.params),
        opt_state=local_copy(state.opt_state),
        state=local_copy(state.state),
    )

    return save_checkpoint(
        Path(out_dir) / CHECKPOINT,
        params=state.params,
        opt_state=state.opt_state,
        epoch=state.epoch,
        key=run.key,
        config=run.config.to_dict(),
        history=state.history,
        state=state.state,
    )


def fit_run(run: Run, **overrides: Any) -> FitResult:
    """`fnn.train.fit` on a prepared run, in memory (no files): the run's network, loss,
    optimiser, params, data splits, key and config (epochs, batch size, grad mode,
    patience, resume state). `overrides` replace or add `fit` keyword arguments, e.g.
    `mode="autodiff"`, `progress=False`, `eval_train=False`."""
    data = run.data
    kwargs: dict[str, Any] = dict(
        key=run.key,
        epochs=run.config.epochs,
        batch_size=run.config.batch_size,
        mode=run.config.grad,
        task=data.task,
        opt_state=run.opt_state,
        start_epoch=run.start_epoch,
        history=run.history,
        patience=run.config.patience,
        state=run.state,
    )
    kwargs.update(overrides)
    train, test = (data.x_train, data.y_train), (data.x_test, data.y_test)
    return fit(run.net, run.loss, run.optimizer, run.params, train, test, **kwargs)


def train(
    run: Run,
    out_dir: str | Path,
    *,
    checkpoint_every: int = 10,
    progress: bool = True,
    mesh: Any = None,
) -> FitResult:
    """Fits the run up to `run.config.epochs`, checkpointing to `out_dir` every
    `checkpoint_every` epochs and at the end.

    With `mesh` (`fnn.parallel.make_data_mesh`), training is data-parallel over its
    devices (see `fnn.train.fit`); in a multi-process run only process 0 writes.

    On divergence (`fnn.train.NonFiniteLossError`) the last good state (the epoch before
    the non-finite loss) is checkpointed and the error re-raised: the checkpoint in
    `out_dir` is always one with a finite loss.
    """
    from fnn.train import NonFiniteLossError

    every = max(int(checkpoint_every), 0)

    def on_epoch(state: FitResult) -> None:
        if every and state.epoch % every == 0 and state.epoch < run.config.epochs:
            save(run, state, out_dir)

    try:
        result = fit_run(run, progress=progress, callback=on_epoch, mesh=mesh)
    except NonFiniteLossError as error:
        if error.last_good.epoch > 0:
            save(run, error.last_good, out_dir)
        raise
    save(run, result, out_dir)
    return result


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
) -> dict[str, Any]:
    """The metrics.json content of a run (JSON-able); with the data-parallel `mesh` the
    run trained on, a `data_parallel` entry (devices, processes)."""
    from fnn import __version__

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
    if check is not None:
        record["gradient_check"] = {
            "max_rel_err": check.max_rel_err,
            "passed": check.passed,
            "examples": CHECK_EXAMPLES,
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
    """Writes `out_dir/metrics.json` and `out_dir/curves.png`; returns the metrics."""
    from fnn.parallel import is_main_process
    from fnn.plot import plot_history

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
    return record


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"

"""A configured training run in memory: prepare it (data, network, loss, optimiser,
initial state) or rebuild it from a checkpoint, check its gradients, fit it, save it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn.check import CheckResult, check_model
from fnn.core import Ctx, Layer, Loss, SettingError, init_state, one_shot_jit
from fnn.data import Dataset, load_dataset
from fnn.data.text import VOCAB
from fnn.errors import renamed_settings
from fnn.experiment.config import TrainConfig, build_loss, build_network, loss_name
from fnn.train import (
    EarlyStopping,
    FitResult,
    NonFiniteLossError,
    TrainState,
    check_batch_size,
    fit,
)
from fnn.train.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from fnn.train.distributed import is_main_process
from fnn.train.optim import make_optimizer
from fnn.train.parallel import local_copy

CHECKPOINT = "checkpoint.npz"
# The library's parameter names that differ from the config fields that set them: the
# settings of an error coming back from a library call are renamed to the fields
# (`fnn.errors.renamed_settings`), so that a front end finds its own spelling of them.
DATA_FIELDS = {"name": "dataset", "csv_path": "csv", "text_path": "text"}
NETWORK_FIELDS = {"features": "hidden", "rate": "dropout", "dropout_rate": "dropout",
                  "block_size": "attention_block"}  # fmt: skip
OPTIMIZER_FIELDS = {"name": "optimizer", "learning_rate": "lr"}
DIVERGED_FIELDS = ("lr", "clip_norm", "dtype")  # what may fix a diverging loss
CHECK_EXAMPLES = 32  # examples in the pre-training gradient check
CHECK_WINDOWS = (4, 32)  # a language model's check: 4 windows of (up to) 32 tokens


class Run(NamedTuple):
    """A prepared run: what `train` needs, built from a config (and a checkpoint)."""

    config: TrainConfig
    data: Dataset
    net: Layer
    loss: Loss
    optimizer: optax.GradientTransformation
    train_state: TrainState  # params, optimiser state, running statistics
    key: jax.Array  # the data-order key: epoch e shuffles with fold_in(key, e)
    start_epoch: int = 0
    history: dict[str, list[float]] | None = None

    @property
    def params(self) -> Any:
        return self.train_state.params

    @property
    def opt_state(self) -> Any:
        return self.train_state.opt_state


def load_data(config: TrainConfig) -> Dataset:
    """The configured data set (`fnn.data.load_dataset`; raises `fnn.data.DataError`)."""
    target: str | int = config.target_column
    if isinstance(target, str) and target.lstrip("-").isdigit():
        target = int(target)
    with renamed_settings(DATA_FIELDS):
        return load_dataset(
            config.dataset,
            data_dir=config.data_dir,
            csv_path=config.csv,
            target_column=target,
            test_fraction=config.test_fraction,
            seed=config.seed,
            dtype=config.dtype,
            flatten=config.model != "cnn",  # images stay (height, width, 1) for the cnn
            text_path=config.text,
            context=config.context,
        )


def prepare(config: TrainConfig, *, data: Dataset | None = None) -> Run:
    """Loads the data (unless given), builds the network, loss and optimiser, and
    initialises params and optimiser state from `config.seed`.

    Raises:
      SettingError (a ValueError; DataError is one): a bad config, data set, loss, or
        batch size, naming the config fields that fix it; float64 without 64-bit types
        (fnn does not switch them on for the caller's process: the caller does).
    """
    config.validate()
    # JAX's Config holds its options as dynamic attributes, which its stubs do not list
    if config.dtype == "float64" and not jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        # fnn does not switch 64-bit types on behind the caller's back (it is the whole
        # process's setting): the caller does, or scopes it with jax.enable_x64(True)
        raise SettingError(
            "dtype float64 needs 64-bit types: call jax.config.update('jax_enable_x64', "
            "True) first, or prepare and train inside `with jax.enable_x64(True):`",
            settings=("dtype",),
        )
    data = load_data(config) if data is None else data
    check_batch_size(config.batch_size, data.num_train)
    loss = loss_name(config, data.task)
    with renamed_settings(NETWORK_FIELDS):
        net = build_network(config, data.feature_shape, data.output_width, loss)
    with renamed_settings(OPTIMIZER_FIELDS):
        optimizer = make_optimizer(
            config.optimizer,
            config.lr,
            schedule=config.schedule,
            total_steps=config.epochs * (data.num_train // config.batch_size),
            clip_norm=config.clip_norm,
        )
    shape, dtype = tuple(data.feature_shape), jnp.dtype(config.dtype)

    def start(seed):
        init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
        _, params = net.init(init_key, shape, dtype)
        return TrainState.create(net, params, optimizer), data_key

    # The keys, params and optimiser state in one program compiled for one run (eagerly,
    # each operation would compile its own: 14-17 programs): a faster start, the same bits
    train_state, data_key = one_shot_jit(start)(config.seed)
    return Run(config, data, net, build_loss(loss), optimizer, train_state, data_key)


def resume(out_dir: str | Path, *, epochs: int | None = None) -> Run:
    """Rebuilds the run saved in `out_dir/checkpoint.npz`, to continue up to `epochs`
    epochs in total (default: the saved config's `epochs`, the total it was started for).

    The config comes from the checkpoint, with `epochs` replaced. The learning-rate
    schedule is sized for the new total: with the constant schedule (the default), or
    when the total is unchanged (an interrupted run), the resumed run is exactly the
    uninterrupted one; a decaying schedule stretched to a longer total is not.

    Raises:
      fnn.train.checkpoint.CheckpointError: a missing, corrupt or mismatching checkpoint.
      SettingError: `epochs` below the epochs already done.
    """
    path = Path(out_dir) / CHECKPOINT
    config = TrainConfig.from_dict(read_metadata(path)["config"])
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    run = prepare(config)
    ts = run.train_state
    saved = load_checkpoint(
        path, params_like=ts.params, opt_state_like=ts.opt_state, state_like=ts.state
    )
    if config.epochs < saved.epoch:
        raise SettingError(
            f"the checkpoint in {out_dir} has {saved.epoch} epochs done; epochs="
            f"{config.epochs} asks for fewer",
            settings=("epochs",),
        )
    return run._replace(
        train_state=TrainState(saved.params, saved.opt_state, saved.state),
        key=saved.key,
        start_epoch=saved.epoch,
        history=saved.history,
    )


def verify_gradients(run: Run, *, examples: int = CHECK_EXAMPLES) -> CheckResult:
    """Checks the network's hand-written gradients against `jax.grad` (float64) on the
    first `examples` training examples, at params in general position drawn from the
    run's seed (`fnn.check_model`); a network with dropout or batch_norm is checked in
    training mode (one fixed dropout mask, batch statistics)."""
    x, y = check_sample(run, examples)
    ctx = None
    if run.net.takes_ctx:
        dropout_key = jax.random.PRNGKey(run.config.seed + 1)
        ctx = lambda params: Ctx(True, dropout_key, init_state(run.net, params))  # noqa: E731
    return check_model(run.net, run.loss, x, y, key=run.config.seed, dtype="float64", ctx=ctx)


def check_sample(run: Run, examples: int = CHECK_EXAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """The training examples the gradient check runs on: the first `examples`; for a
    language model, the first `CHECK_WINDOWS` windows and tokens (a causal model's
    gradient on a prefix is as much a test of its backward, at a fraction of the cost)."""
    if run.data.task == "language_model":
        windows, tokens = CHECK_WINDOWS
        return run.data.x_train[:windows, :tokens], run.data.y_train[:windows, :tokens]
    return np.asarray(run.data.x_train[:examples]), np.asarray(run.data.y_train[:examples])


def fit_run(run: Run, **overrides: Any) -> FitResult:
    """`fnn.train.fit` on a prepared run, in memory (no files): the run's network, loss,
    optimiser, params, data splits, key and config (epochs, batch size, grad mode,
    patience, resume state). `overrides` replace or add `fit` keyword arguments, e.g.
    `mode="autodiff"`, `progress=False`, `eval_train=False`."""
    data, ts, patience = run.data, run.train_state, run.config.patience
    kwargs: dict[str, Any] = dict(
        key=run.key,
        epochs=run.config.epochs,
        batch_size=run.config.batch_size,
        mode=run.config.grad,
        task=data.task,
        early_stopping=None if patience is None else EarlyStopping(patience),
        resume=None if run.history is None else FitResult(ts, run.history, run.start_epoch),
        track_gradients=run.config.track_gradients,
        # a language model's train loss is the epoch's step losses; a second pass over
        # every train window to score them again would cost as much as the epoch itself
        eval_train=data.task != "language_model",
    )
    kwargs.update(overrides)
    train, test = (data.x_train, data.y_train), (data.x_test, data.y_test)
    return fit(run.net, run.loss, run.optimizer, ts, train, test, **kwargs)


def save(run: Run, result: FitResult, out_dir: str | Path) -> Path | None:
    """Writes `out_dir/checkpoint.npz` for `result` (atomically); in a multi-process run,
    process 0 alone writes (the params are replicated) and the others return None."""
    if not is_main_process():
        return None
    ts = local_copy(result.state)
    return save_checkpoint(
        Path(out_dir) / CHECKPOINT,
        params=ts.params,
        opt_state=ts.opt_state,
        epoch=result.epoch,
        key=run.key,
        config=run.config.to_dict(),
        history=result.history,
        state=ts.state,
    )


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

    With `mesh` (`fnn.train.parallel.make_data_mesh`), training is data-parallel over its
    devices (see `fnn.train.fit`); in a multi-process run only process 0 writes.

    On divergence (`fnn.train.NonFiniteLossError`) the last good state (the epoch before
    the non-finite loss) is checkpointed and the error re-raised, naming the config
    fields that may fix it (`lr`, `clip_norm`, `dtype`): the checkpoint in `out_dir` is
    always one with a finite loss.
    """
    every = max(int(checkpoint_every), 0)

    def on_epoch(result: FitResult) -> None:
        if every and result.epoch % every == 0 and result.epoch < run.config.epochs:
            save(run, result, out_dir)

    try:
        result = fit_run(run, progress=progress, callback=on_epoch, mesh=mesh)
    except NonFiniteLossError as error:
        if error.last_good.epoch > 0:
            save(run, error.last_good, out_dir)
        error.settings = DIVERGED_FIELDS
        raise
    save(run, result, out_dir)
    return result


class Model(NamedTuple):
    """A trained network read back from a run's checkpoint, without its data."""

    config: TrainConfig
    net: Layer
    params: Any
    epoch: int


def load_model(out_dir: str | Path) -> Model:
    """The config, network and trained params saved in `out_dir/checkpoint.npz`, without
    loading the data set (what sampling from a language model needs).

    Raises:
      fnn.train.checkpoint.CheckpointError: a missing, corrupt or mismatching checkpoint.
    """
    path = Path(out_dir) / CHECKPOINT
    config = TrainConfig.from_dict(read_metadata(path)["config"])
    if config.model != "gpt":
        raise SettingError(
            f"the checkpoint in {out_dir} holds the {config.model} model trained on "
            f"{config.dataset}, not a language model (fnn train --dataset text --model gpt)",
            settings=("checkpoint",),
        )
    task = "language_model"
    net = build_network(config, (config.context,), VOCAB, loss_name(config, task))
    dtype = jnp.dtype(config.dtype)
    params_like = jax.eval_shape(lambda k: net.init(k, (config.context,), dtype)[1],
                                 jax.random.PRNGKey(0))  # fmt: skip
    # only the optimiser state's structure is needed: any schedule length gives the same one
    optimizer = make_optimizer(config.optimizer, config.lr, schedule=config.schedule,
                               total_steps=1000, clip_norm=config.clip_norm)  # fmt: skip
    saved = load_checkpoint(
        path, params_like=params_like, opt_state_like=jax.eval_shape(optimizer.init, params_like)
    )
    return Model(config, net, saved.params, saved.epoch)

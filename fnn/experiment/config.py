"""A training run's configuration, `TrainConfig`, and what it builds: the loss and the
network for a data set."""

from __future__ import annotations

import dataclasses
from typing import Any

from fnn.core import Layer, Loss, SettingError, choose
from fnn.data import DATASETS, DTYPES, IMAGE_DATASETS
from fnn.data.text import VOCAB
from fnn.experiment.recipes import recipe
from fnn.grad import GRAD_MODES
from fnn.layers import ACTIVATIONS, cnn, mlp
from fnn.lm import RECOMPUTE, gpt
from fnn.lm.head import lm_cross_entropy
from fnn.losses import LOSSES
from fnn.tasks import DEFAULT_LOSS, LOSSES_FOR_TASK
from fnn.train.optim import OPTIMIZERS, SCHEDULES

MODELS = ("mlp", "cnn", "gpt")
# The losses a run can name: fnn.losses' and the language models' fused head.
RUN_LOSSES = {**LOSSES, "lm_cross_entropy": lm_cross_entropy}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (what a checkpoint stores as `config`).

    The defaults are the digits recipe (`for_dataset` starts from any data set's);
    `loss=None` picks the task's default (`fnn.tasks.DEFAULT_LOSS`). The field names are
    the names a `fnn.core.SettingError` gives in its `settings`.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    csv: str | None = None
    text: str | None = None
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
    track_gradients: bool = False
    # the gpt model (text data set): context T, width D, heads, blocks L, attention in
    # blocks of this many positions (None: the plain layer), what the backward recomputes
    context: int = 128
    width: int = 128
    heads: int = 4
    blocks: int = 4
    attention_block: int | None = None
    recompute: str = "gelu"

    @classmethod
    def for_dataset(cls, dataset: str = "digits", **overrides: Any) -> TrainConfig:
        """The config `fnn train --dataset NAME` starts from: the data set's recipe
        (`fnn.experiment.recipes`: network, loss, optimiser, learning rate, epochs, batch
        size), with `overrides` on top."""
        return cls(dataset=dataset, **{**recipe(dataset), **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from `to_dict`'s output; unknown keys are a SettingError (a ValueError)."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise SettingError(f"unknown config keys {unknown}; known: {sorted(names)}")
        values = dict(values)
        if "hidden" in values:
            values["hidden"] = tuple(int(h) for h in values["hidden"])
        return cls(**values)

    def validate(self) -> None:
        """Raises a SettingError naming the field and the valid choices for a bad field."""
        for kind, value, table in (
            ("data set", self.dataset, DATASETS),
            ("grad mode", self.grad, GRAD_MODES),
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("schedule", self.schedule, SCHEDULES),
            ("activation", self.activation, ACTIVATIONS),
            ("model", self.model, MODELS),
            ("dtype", self.dtype, DTYPES),
            ("recompute", self.recompute, RECOMPUTE),
            *([("loss", self.loss, RUN_LOSSES)] if self.loss is not None else []),
        ):
            setting = {"data set": "dataset", "grad mode": "grad"}.get(kind, kind)
            choose(kind, value, dict.fromkeys(table), setting=setting)
        for ok, setting, message in (
            (self.hidden and min(self.hidden) >= 1, "hidden", "hidden widths must be positive"),
            (0 <= self.dropout < 1, "dropout", "dropout rate must be in [0, 1)"),
            (self.epochs >= 1, "epochs", "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size", "batch size must be >= 1"),
            (self.lr > 0, "lr", "learning rate must be > 0"),
            (0 <= self.seed < 2**31, "seed", "seed must be in [0, 2**31)"),
            *(
                (getattr(self, f) >= 1, f, f"{f} must be a positive int")
                for f in ("context", "width", "heads", "blocks")
            ),
            (
                self.attention_block is None or self.attention_block >= 1,
                "attention_block",
                "attention_block must be a positive int",
            ),
            (
                self.width % self.heads == 0,
                "heads",
                f"width {self.width} must be divisible by heads",
            ),
        ):
            if not ok:
                value = getattr(self, setting)
                raise SettingError(
                    f"{message}, got {list(value) if setting == 'hidden' else value}",
                    settings=(setting,),
                )
        for field, dataset in (("csv", "csv"), ("target_column", "csv"), ("text", "text")):
            default = TrainConfig.__dataclass_fields__[field].default
            if getattr(self, field) != default and self.dataset != dataset:
                raise SettingError(
                    f"{field} is for the {dataset} data set; got data set {self.dataset!r} "
                    f"(choose dataset {dataset!r})",
                    settings=(field, "dataset"),
                )
        if (self.model == "gpt") != (self.dataset == "text"):
            raise SettingError(
                "the gpt model trains on the text data set, and the text data set needs "
                f"the gpt model; got model {self.model!r} with data set {self.dataset!r}",
                settings=("model", "dataset"),
            )


def loss_name(config: TrainConfig, task: str) -> str:
    """The configured loss, or the task's default; a SettingError when it does not fit."""
    name = config.loss or DEFAULT_LOSS[task]
    if name not in LOSSES_FOR_TASK[task]:
        raise SettingError(
            f"loss {name!r} does not fit the {task} data set {config.dataset!r}; "
            f"use one of: {', '.join(LOSSES_FOR_TASK[task])}",
            settings=("loss",),
        )
    return name


def build_network(
    config: TrainConfig, feature_shape: tuple[int, ...], outputs: int, loss: str
) -> Layer:
    """The network of `config.model` for examples of `feature_shape`, with a last dense
    layer of width `outputs`; a sigmoid output only for `binary_cross_entropy` (it takes
    probabilities; the other losses take raw outputs, i.e. logits).

    "gpt" (the text data set): `fnn.gpt` with the config's context, width, heads,
    blocks, attention_block and recompute, over byte ids, its head fused with the loss
    under lm_cross_entropy. "mlp": `hidden` widths with `activation`. "cnn" (image data
    sets, `(h, w, 1)` inputs):
    `fnn.cnn`, conv2d(16, 3) and conv2d(32, 3, stride 2) with `activation`, flatten,
    dense(64); `hidden` is not used. `batch_norm` and `dropout` as `mlp` and `cnn` take
    them.
    """
    if config.model == "gpt":
        return gpt(
            VOCAB, config.context, config.width, config.heads, config.blocks,
            dropout_rate=config.dropout, block_size=config.attention_block,
            recompute=config.recompute,
            head="fused" if loss == "lm_cross_entropy" else "logits",
        )  # fmt: skip
    output = "sigmoid" if loss == "binary_cross_entropy" else None
    if config.model == "cnn":
        if len(feature_shape) != 3:
            raise SettingError(
                f"the cnn model needs an image data set ({', '.join(IMAGE_DATASETS)}); "
                f"{config.dataset} has flat features of shape {tuple(feature_shape)}",
                settings=("model", "dataset"),
            )
        return cnn(
            outputs,
            activation=config.activation,
            output_activation=output,
            batch_norm=config.batch_norm,
            dropout=config.dropout,
        )
    return mlp(
        [*config.hidden, outputs],
        config.activation,
        output_activation=output,
        batch_norm=config.batch_norm,
        dropout=config.dropout,
    )


def build_loss(name: str) -> Loss:
    """The loss named `name` (one of `RUN_LOSSES`), with its default settings."""
    return choose("loss", name, RUN_LOSSES, setting="loss")()

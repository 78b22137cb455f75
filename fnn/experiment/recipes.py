"""Each data set's default network and training recipe: what `fnn train --dataset NAME`
uses unless a flag overrides it. The quality table in docs/results/training.md is made
with exactly these (`python benchmarks/sklearn_compare.py`), scikit-learn's MLP beside
them on the same splits."""

from __future__ import annotations

from typing import Any

# Fields of `TrainConfig`; a recipe sets all of these, so that the data set alone decides
# the run (the rest: seed, dtype, grad mode, ... keep TrainConfig's defaults).
RECIPE_FIELDS = ("model", "hidden", "activation", "loss", "optimizer", "lr", "schedule",
                 "epochs", "batch_size")  # fmt: skip

GPT_FIELDS = ("context", "width", "heads", "blocks", "test_fraction")  # the text recipe sets too


def recipe_fields(dataset: str) -> tuple[str, ...]:
    """The fields the recipe of `dataset` sets: `RECIPE_FIELDS`, and `GPT_FIELDS` for a
    gpt recipe."""
    return RECIPE_FIELDS + (GPT_FIELDS if recipe(dataset)["model"] == "gpt" else ())


_BASE = dict(model="mlp", activation="relu", loss=None, optimizer="adam", schedule="constant")

RECIPES: dict[str, dict[str, Any]] = {
    "digits": {**_BASE, "hidden": (256, 128), "lr": 1e-3, "epochs": 30, "batch_size": 32},
    "breast_cancer": {
        **_BASE, "hidden": (5, 4), "activation": "sigmoid", "lr": 3e-3, "epochs": 60,
        "batch_size": 32,
    },
    "iris": {**_BASE, "hidden": (16,), "lr": 1e-2, "epochs": 100, "batch_size": 16},
    "wine": {**_BASE, "hidden": (64,), "lr": 3e-3, "epochs": 50, "batch_size": 16},
    "diabetes": {
        **_BASE, "hidden": (16,), "activation": "tanh", "optimizer": "adamw", "lr": 1e-3,
        "epochs": 100, "batch_size": 32,
    },
    "tutorial": {  # the tutorial's 100→5→4→1 sigmoid network and gradient descent
        **_BASE, "hidden": (5, 4), "activation": "sigmoid", "optimizer": "sgd", "lr": 0.1,
        "epochs": 100, "batch_size": 32,
    },
    "mnist": {**_BASE, "hidden": (256, 128), "lr": 1e-3, "epochs": 10, "batch_size": 128},
    "fashion_mnist": {
        **_BASE, "hidden": (256, 128), "lr": 1e-3, "epochs": 15, "batch_size": 128,
    },
    "csv": {**_BASE, "hidden": (64,), "lr": 1e-3, "epochs": 50, "batch_size": 32},
    "text": {  # a byte-level GPT; hidden and activation are not used by the gpt model
        **_BASE, "model": "gpt", "hidden": (256, 128), "optimizer": "adamw", "lr": 3e-3,
        "schedule": "warmup_cosine", "epochs": 2, "batch_size": 32, "context": 128,
        "width": 128, "heads": 4, "blocks": 4, "test_fraction": 0.1,
    },
}  # fmt: skip


def recipe(dataset: str) -> dict[str, Any]:
    """The recipe of `dataset` (a copy); the digits one for a name it does not know (the
    config's validation names the valid data sets)."""
    return dict(RECIPES.get(dataset, RECIPES["digits"]))


def describe(dataset: str) -> str:
    """One line: the recipe's network and training."""
    r = recipe(dataset)
    if r["model"] == "gpt":
        net = (f"gpt context {r['context']} width {r['width']} heads {r['heads']} "
               f"blocks {r['blocks']}")  # fmt: skip
        return (f"{net}, {r['optimizer']} lr {r['lr']:g} ({r['schedule']}), batch "
                f"{r['batch_size']}, {r['epochs']} epochs")  # fmt: skip
    net = "cnn" if r["model"] == "cnn" else "-".join(map(str, r["hidden"])) + f" {r['activation']}"
    loss = f", {r['loss']}" if r["loss"] else ""
    return (
        f"{net}{loss}, {r['optimizer']} lr {r['lr']:g}, batch {r['batch_size']}, "
        f"{r['epochs']} epochs"
    )

"""Optimisers and learning-rate schedules by name, all optax.

`make_optimizer("adam", 1e-3, schedule="cosine", total_steps=1000)` returns an optax
`GradientTransformation` whose state records the current learning rate
(`optax.inject_hyperparams`), so a training loop can name it when the loss diverges
(`current_learning_rate(opt_state)`).

| optimiser | update                                                    |
|-----------|-----------------------------------------------------------|
| sgd       | θ ← θ − η·g (the tutorial's gradient descent)             |
| momentum  | v ← μ·v + g;  θ ← θ − η·v  (heavy ball, μ = 0.9)           |
| adam      | Adam (β₁ = 0.9, β₂ = 0.999, ε = 1e-8)                      |
| adamw     | Adam with decoupled weight decay (θ ← θ − η·λ·θ, λ = 1e-4) |

| schedule      | η at step t of T                                         |
|---------------|----------------------------------------------------------|
| constant      | η                                                        |
| cosine        | η·½(1 + cos(π·t/T))                                      |
| exponential   | η·0.01^(t/T): a hundredfold decay over the run           |
| warmup_cosine | linear 0 → η over the first 5% of T, then cosine to 0    |
"""

from __future__ import annotations

from collections.abc import Callable

import optax

from fnn.core import choose
from fnn.errors import SettingError

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "exponential", "warmup_cosine")


def make_schedule(
    name: str, learning_rate: float, *, total_steps: int, warmup_fraction: float = 0.05
) -> optax.Schedule:
    """A learning-rate schedule `step -> η` by name (see the module's table).

    Arguments:
      name: one of `SCHEDULES`.
      learning_rate: the peak (initial) learning rate η, > 0.
      total_steps: T, the number of optimiser steps of the whole run (epochs × batches).
      warmup_fraction: the share of T spent warming up (warmup_cosine only).
    """
    if not learning_rate > 0:
        raise SettingError(
            f"learning rate must be > 0, got {learning_rate}", settings=("learning_rate",)
        )
    total_steps = max(int(total_steps), 1)
    builders: dict[str, Callable[[], optax.Schedule]] = {
        "constant": lambda: optax.constant_schedule(learning_rate),
        "cosine": lambda: optax.cosine_decay_schedule(learning_rate, total_steps),
        "exponential": lambda: optax.exponential_decay(
            learning_rate, transition_steps=total_steps, decay_rate=0.01
        ),
        "warmup_cosine": lambda: optax.warmup_cosine_decay_schedule(
            0.0,
            learning_rate,
            warmup_steps=max(int(warmup_fraction * total_steps), 1),
            decay_steps=total_steps,
        ),
    }
    return choose("schedule", name, builders)()


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    schedule: str = "constant",
    total_steps: int = 1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    clip_norm: float | None = None,
) -> optax.GradientTransformation:
    """An optax optimiser by name, with its learning rate following `schedule`.

    Arguments:
      name: one of `OPTIMIZERS`.
      learning_rate: the (peak) learning rate η.
      schedule: one of `SCHEDULES`; `total_steps` is the run's number of steps.
      momentum: μ for "momentum".
      weight_decay: λ for "adamw".
      clip_norm: if given, gradients are first rescaled to global norm ≤ clip_norm
        (`optax.clip_by_global_norm`), a remedy for a diverging loss.

    The learning rate is injected (`optax.inject_hyperparams`), so the state holds its
    current value; `current_learning_rate(opt_state)` reads it.
    """
    lr = make_schedule(schedule, learning_rate, total_steps=total_steps)
    builders: dict[str, Callable[[], optax.GradientTransformation]] = {
        "sgd": lambda: optax.inject_hyperparams(optax.sgd)(learning_rate=lr),
        "momentum": lambda: optax.inject_hyperparams(optax.sgd)(
            learning_rate=lr, momentum=momentum
        ),
        "adam": lambda: optax.inject_hyperparams(optax.adam)(learning_rate=lr),
        "adamw": lambda: optax.inject_hyperparams(optax.adamw)(
            learning_rate=lr, weight_decay=weight_decay
        ),
    }
    optimizer = choose("optimizer", name, builders)()
    if clip_norm is not None:
        if not clip_norm > 0:
            raise SettingError(f"clip_norm must be > 0, got {clip_norm}", settings=("clip_norm",))
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
    return optimizer


def current_learning_rate(opt_state) -> float | None:
    """The learning rate recorded in an injected optimiser state, or None if there is none.

    For a schedule this is the rate of the step about to be taken.
    """
    if isinstance(getattr(opt_state, "hyperparams", None), dict):
        value = opt_state.hyperparams.get("learning_rate")
        return None if value is None else float(value)
    if isinstance(opt_state, tuple | list):  # optax.chain's state is a tuple of states
        for inner in opt_state:
            value = current_learning_rate(inner)
            if value is not None:
                return value
    return None

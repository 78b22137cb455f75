"""Weight initialisers: `init(key, shape, dtype) -> array`, as in `jax.nn.initializers`.

For a dense weight of shape `(in, out)`, `fan_in = in` and `fan_out = out`:

| name            | distribution                         | variance            |
|-----------------|--------------------------------------|---------------------|
| glorot_uniform  | U(-a, a), a = sqrt(6 / (in + out))   | 2 / (in + out)      |
| glorot_normal   | truncated normal                     | 2 / (in + out)      |
| he_uniform      | U(-a, a), a = sqrt(6 / in)           | 2 / in              |
| he_normal       | truncated normal                     | 2 / in              |
| lecun_uniform   | U(-a, a), a = sqrt(3 / in)           | 1 / in              |
| lecun_normal    | truncated normal                     | 1 / in              |
| uniform(scale)  | U(0, 1) × scale (the tutorial's `rand(...) * 0.01`) |      |
| zeros           | 0                                    |                     |

The variance-scaling ones are JAX's own (`jax.nn.initializers`), re-exported so that there
is one definition of each.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from fnn.core import choose

Initializer = Callable[..., jax.Array]

glorot_uniform = jax.nn.initializers.glorot_uniform
glorot_normal = jax.nn.initializers.glorot_normal
he_uniform = jax.nn.initializers.he_uniform
he_normal = jax.nn.initializers.he_normal
lecun_uniform = jax.nn.initializers.lecun_uniform
lecun_normal = jax.nn.initializers.lecun_normal


def uniform(scale: float = 0.01) -> Initializer:
    """U(0, 1) × `scale`: the tutorial's `np.random.rand(n_in, n_out) * 0.01`."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype) * jnp.asarray(scale, dtype)

    return init


def zeros() -> Initializer:
    """All zeros (the tutorial's biases)."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.zeros(shape, dtype)

    return init


INITIALIZERS: dict[str, Callable[[], Initializer]] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "lecun_normal": lecun_normal,
    "uniform": uniform,
    "zeros": zeros,
}


def get_initializer(init: str | Initializer) -> Initializer:
    """An initialiser by name (with its default hyperparameters), or `init` itself."""
    if callable(init):
        return init
    return choose("initializer", init, INITIALIZERS)()

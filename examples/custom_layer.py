"""Write your own layer with a hand-written backward, and verify it with one call.

The layer: PReLU, a ReLU whose negative slope is learnt per feature,
`y = x` where x > 0, else `a ⊙ x`, with params `{"a": (features,)}`.

    python examples/custom_layer.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import fnn


def prelu(initial_slope: float = 0.25) -> fnn.Layer:
    """Parametric ReLU over the last axis. x: (batch, ..., features)."""

    def init(key, in_shape, dtype=jnp.float32):
        del key
        return tuple(in_shape), {"a": jnp.full((in_shape[-1],), initial_slope, dtype)}

    def forward(params, x):
        y = jnp.where(x > 0, x, params["a"] * x)
        return y, x  # residuals: the input (the slope's gradient needs x itself)

    def backward(params, x, dy):
        negative = x <= 0
        batch_axes = tuple(range(x.ndim - 1))
        da = jnp.sum(jnp.where(negative, dy * x, 0), axis=batch_axes)  # dL/da = Σ dy ⊙ x ⊙ [x ≤ 0]
        dx = jnp.where(negative, params["a"] * dy, dy)  # dL/dx = dy ⊙ (1 if x > 0 else a)
        return {"a": da}, dx

    return fnn.Layer(init, forward, backward, "prelu")


def prelu_with_a_bug() -> fnn.Layer:
    """The same layer with a classic mistake: the slope gradient forgets the factor x."""
    good = prelu()

    def backward(params, x, dy):
        grads, dx = good.backward(params, x, dy)
        batch_axes = tuple(range(x.ndim - 1))
        return {"a": jnp.sum(jnp.where(x <= 0, dy, 0), axis=batch_axes)}, dx  # wrong: no ⊙ x

    return good._replace(backward=backward, name="prelu (buggy)")


def main() -> None:
    # 1. Verify the layer alone: manual backward vs jax.vjp and finite differences, float64.
    print(fnn.check_layer(prelu(), in_shape=(6,)))
    # 2. The checker catches the bug.
    bad = fnn.check_layer(prelu_with_a_bug(), in_shape=(6,))
    print(bad)
    # 3. Use it in a network, and check the whole network, loss included.
    net = fnn.serial(fnn.dense(16), prelu(), fnn.dense(3))
    print(fnn.check_layer(net, in_shape=(4,)).passed)
    x = jax.random.normal(jax.random.PRNGKey(1), (32, 4))
    y = jax.random.randint(jax.random.PRNGKey(2), (32,), 0, 3)
    result = fnn.check_model(net, fnn.softmax_cross_entropy(), x, y)
    print(f"manual vs jax.grad on the whole model: max relative error {result.max_rel_err:.1e}")


if __name__ == "__main__":
    main()

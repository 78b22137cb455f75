"""Activation layers, each with a hand-written backward pass.

Every activation is a parameter-free `Layer` (params `()`), applied elementwise except
`softmax` and `log_softmax`, which act on the last axis. Where the derivative is a
function of the output (sigmoid, tanh, elu, softplus, softmax, log_softmax), the residual
is the output `y` and not the input: a network keeps `y` anyway as the next dense layer's
input, so the activation costs no extra memory. relu and leaky_relu need only the sign of
`y`, and keep it as one bit per element.

Notation in the comments: `dx = dy ⊙ f'(x)` is the tutorial's `dZ = dA ⊙ g'(Z)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

from fnn.core import Array, Layer, check_floating, choose
from fnn.errors import SettingError
from fnn.layers.parts import pack_mask, parameter_free_init, unpack_mask

__all__ = [
    "ACTIVATIONS", "elu", "gelu", "get_activation", "identity", "leaky_relu", "log_softmax",
    "relu", "sigmoid", "silu", "softmax", "softplus", "tanh",
]  # fmt: skip


def elementwise(
    name: str,
    fn: Callable[[Array], tuple[Array, object]],
    grad: Callable[[object, Array], Array],
) -> Layer:
    """A parameter-free layer from `fn(x) -> (y, residuals)` and `grad(residuals, dy) -> dx`,
    for an activation of your own: `fn` is the forward and what it keeps, `grad` the
    vector-Jacobian product from what was kept.

    `fn` must treat every example on its own (elementwise, or row-wise over the last
    axis): the backward is then also the per-example backward."""

    def forward(params, x):
        del params
        check_floating(name, x)
        return fn(x)

    def backward(params, residuals, dy):
        del params
        return (), grad(residuals, dy)

    return Layer(parameter_free_init(), forward, backward, name, per_example_backward=backward)


def identity() -> Layer:
    """y = x."""
    return elementwise("identity", lambda x: (x, ()), lambda _, dy: dy)  # dx = dy


def sigmoid() -> Layer:
    """y = σ(x) = 1 / (1 + e^-x); keeps y."""

    def fn(x):
        y = jax.nn.sigmoid(x)
        return y, y

    def grad(y, dy):
        return dy * y * (1 - y)  # dx = dy ⊙ σ(x)(1 − σ(x)) = dy ⊙ y(1 − y)

    return elementwise("sigmoid", fn, grad)


def tanh() -> Layer:
    """y = tanh(x); keeps y."""

    def fn(x):
        y = jnp.tanh(x)
        return y, y

    def grad(y, dy):
        return dy * (1 - y * y)  # dx = dy ⊙ (1 − tanh²(x)) = dy ⊙ (1 − y²)

    return elementwise("tanh", fn, grad)


def _positive_bits(y: Array) -> Array:
    """`y > 0`, one bit per element. Keeping it instead of `y` frees the pre-activation,
    which XLA would otherwise keep alive too (benchmarks/README.md, "the relu mask")."""
    return pack_mask(y > 0)


def relu() -> Layer:
    """y = max(x, 0); keeps the sign of y as 1 bit per element (y > 0 exactly where x > 0)."""

    def fn(x):
        y = jnp.maximum(x, 0)
        return y, _positive_bits(y)

    def grad(bits, dy):
        return jnp.where(unpack_mask(bits, dy), dy, 0)  # dx = dy ⊙ [x > 0] = dy ⊙ [y > 0]

    return elementwise("relu", fn, grad)


def leaky_relu(negative_slope: float = 0.01) -> Layer:
    """y = x for x > 0, else `negative_slope`·x; keeps [y > 0] as 1 bit per element.

    Requires negative_slope ≥ 0 (so that y > 0 exactly where x > 0).
    """
    if negative_slope < 0:
        raise SettingError(
            f"leaky_relu: negative_slope must be >= 0, got {negative_slope}",
            settings=("negative_slope",),
        )

    def fn(x):
        y = jnp.where(x > 0, x, negative_slope * x)
        return y, _positive_bits(y)

    def grad(bits, dy):
        positive = unpack_mask(bits, dy)
        return jnp.where(positive, dy, negative_slope * dy)  # dx = dy ⊙ (1 if y > 0 else slope)

    return elementwise(f"leaky_relu({negative_slope})", fn, grad)


def elu(alpha: float = 1.0) -> Layer:
    """y = x for x > 0, else α(eˣ − 1); keeps y. Requires α > 0."""
    if alpha <= 0:
        raise SettingError(f"elu: alpha must be > 0, got {alpha}", settings=("alpha",))

    def fn(x):
        y = jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0)))
        return y, y

    def grad(y, dy):
        return jnp.where(y > 0, dy, dy * (y + alpha))  # x ≤ 0: dy/dx = α·eˣ = y + α

    return elementwise(f"elu({alpha})", fn, grad)


def softplus() -> Layer:
    """y = log(1 + eˣ), computed stably; keeps y."""

    def fn(x):
        y = jnp.logaddexp(x, 0)
        return y, y

    def grad(y, dy):
        return dy * -jnp.expm1(-y)  # dy/dx = σ(x) = 1 − e^(−y), since e^y = 1 + eˣ

    return elementwise("softplus", fn, grad)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def gelu(approximate: bool = False) -> Layer:
    """y = x·Φ(x) (exact, with erf) or its tanh approximation; keeps x.

    The tanh form is `0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))`, as `jax.nn.gelu`.
    """

    if approximate:

        def fn(x):
            u = _SQRT_2_OVER_PI * (x + 0.044715 * x**3)
            return 0.5 * x * (1 + jnp.tanh(u)), x

        def grad(x, dy):
            u = _SQRT_2_OVER_PI * (x + 0.044715 * x**3)
            t = jnp.tanh(u)
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)  # du/dx
            return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)  # y' = ½(1+t) + ½x(1−t²)u'

        return elementwise("gelu(tanh)", fn, grad)
    else:

        def fn(x):
            return 0.5 * x * (1 + erf(x * _INV_SQRT_2)), x

        def grad(x, dy):
            cdf = 0.5 * (1 + erf(x * _INV_SQRT_2))  # Φ(x)
            pdf = _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)  # φ(x)
            return dy * (cdf + x * pdf)  # dx = dy ⊙ (Φ(x) + x·φ(x))

        return elementwise("gelu", fn, grad)


def silu() -> Layer:
    """y = x·σ(x) (also called swish); keeps x."""

    def fn(x):
        return x * jax.nn.sigmoid(x), x

    def grad(x, dy):
        s = jax.nn.sigmoid(x)
        return dy * s * (1 + x * (1 - s))  # dx = dy ⊙ σ(x)(1 + x(1 − σ(x)))

    return elementwise("silu", fn, grad)


def softmax() -> Layer:
    """y = softmax(x) over the last axis; keeps y."""

    def fn(x):
        y = jax.nn.softmax(x, axis=-1)
        return y, y

    def grad(y, dy):
        # dx_i = Σ_j dy_j ∂y_j/∂x_i = y_i (dy_i − Σ_j dy_j y_j)
        return y * (dy - jnp.sum(dy * y, axis=-1, keepdims=True))

    return elementwise("softmax", fn, grad)


def log_softmax() -> Layer:
    """y = x − logsumexp(x) over the last axis; keeps y."""

    def fn(x):
        y = jax.nn.log_softmax(x, axis=-1)
        return y, y

    def grad(y, dy):
        # dx_i = dy_i − softmax(x)_i Σ_j dy_j, with softmax(x) = e^y
        return dy - jnp.exp(y) * jnp.sum(dy, axis=-1, keepdims=True)

    return elementwise("log_softmax", fn, grad)


ACTIVATIONS: dict[str, Callable[[], Layer]] = {
    "identity": identity,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "softplus": softplus,
    "gelu": gelu,
    "gelu_tanh": lambda: gelu(approximate=True),
    "silu": silu,
    "softmax": softmax,
    "log_softmax": log_softmax,
}


def get_activation(activation: str | Layer) -> Layer:
    """An activation layer by name (default hyperparameters), or `activation` itself."""
    if isinstance(activation, Layer):
        return activation
    return choose("activation", activation, ACTIVATIONS)()

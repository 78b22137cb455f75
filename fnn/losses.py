"""Losses with hand-written gradients.

Each loss is a `Loss(forward, backward, name, predicts)`; `forward(pred, target) ->
(value, residuals)` returns a scalar, `backward(residuals, dvalue=1.0) -> dpred`. The
classification losses say what their predictions mean (`predicts`: class logits, binary
logits or probabilities); the regression losses predict values (None).

Averaging: the elementwise losses (`mean_squared_error`, `huber`, the binary
cross-entropies) average over every element of `pred`, so for a `(batch, 1)` output the
value is the mean over the batch, the tutorial's `J = Σ(...)/m`. `softmax_cross_entropy`
sums over the class axis and averages over the rest. The `1/N` of the mean appears in
`dpred`, so layers sum over the batch in their backward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fnn.core import Array, Loss, check_floating, check_in_range, choose
from fnn.errors import SettingError, ShapeError


def _check_pair(name, pred, target, same_shape=True):
    check_floating(name, pred)
    if same_shape and jnp.shape(pred) != jnp.shape(target):
        raise ShapeError(
            f"{name}: pred and target must have the same shape, got {jnp.shape(pred)} "
            f"and {jnp.shape(target)}"
        )


def _scale(dvalue, n):
    """dvalue / n: the derivative of a mean over n elements, times the upstream dvalue."""
    return dvalue / n


class ProbabilityResiduals(NamedTuple):
    """What binary_cross_entropy's backward needs."""

    p: Array  # shape of pred: the probabilities, clipped to [eps, 1 − eps]
    target: Array  # shape of pred: the targets t
    inside: Array  # shape of pred, bool: where the clip is not active (gradient flows)


class LogitResiduals(NamedTuple):
    """What a loss on logits keeps: the logits (or log-probabilities) and the targets."""

    z: Array  # shape of pred: logits (sigmoid_binary_cross_entropy) or log softmax(z)
    #           (softmax_cross_entropy)
    target: Array  # targets as given: floats shaped like pred, or integer labels


def mean_squared_error() -> Loss:
    """L = mean((pred − target)²) over all elements (no ½)."""
    name = "mean_squared_error"

    def forward(pred, target):
        _check_pair(name, pred, target)
        r = pred - target
        return jnp.mean(r * r), r

    def backward(r, dvalue=1.0):
        return _scale(dvalue, r.size) * 2 * r  # dL/dpred = 2(pred − target)/N

    return Loss(forward, backward, name)


def huber(delta: float = 1.0) -> Loss:
    """L = mean of ½r² for |r| ≤ δ, δ(|r| − ½δ) otherwise, with r = pred − target."""
    if delta <= 0:
        raise SettingError(f"huber: delta must be > 0, got {delta}", settings=("delta",))
    name = f"huber({delta})"

    def forward(pred, target):
        _check_pair(name, pred, target)
        r = pred - target
        a = jnp.abs(r)
        value = jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
        return jnp.mean(value), r

    def backward(r, dvalue=1.0):
        return _scale(dvalue, r.size) * jnp.clip(r, -delta, delta)  # dL/dr = clip(r, −δ, δ)/N

    return Loss(forward, backward, name)


def binary_cross_entropy(eps: float | None = None) -> Loss:
    """The tutorial's cost on probabilities: L = −mean[t·log p + (1 − t)·log(1 − p)].

    `pred` holds probabilities (after a sigmoid). To keep the logarithms finite, `p` is
    clipped to `[eps, 1 − eps]` first; `eps` defaults to the dtype's machine epsilon
    (1.2e-7 in float32, 2.2e-16 in float64). Where the clip is active the gradient is 0,
    as for `jnp.clip`. So a probability of exactly 0 or 1 (a saturated sigmoid) costs
    `−log eps` (15.9 in float32, not ∞) where the target disagrees, `−log(1 − eps) ≈ eps`
    where it agrees, and gets no gradient either way, although where it agrees the
    unclipped loss has the finite derivative `±1/N` (`1/(1 − p)` at t = 0, `−1/p` at t = 1).
    Prefer `sigmoid_binary_cross_entropy` on logits: it needs no clip.
    """
    name = "binary_cross_entropy"

    def forward(pred, target):
        _check_pair(name, pred, target)
        e = jnp.finfo(pred.dtype).eps if eps is None else eps
        p = jnp.clip(pred, e, 1 - e)
        value = -jnp.mean(target * jnp.log(p) + (1 - target) * jnp.log1p(-p))
        inside = (pred >= e) & (pred <= 1 - e)
        return value, ProbabilityResiduals(p, target, inside)

    def backward(residuals, dvalue=1.0):
        p, t, inside = residuals
        # dL/dp = −(t/p − (1 − t)/(1 − p))/N = (p − t)/(p(1 − p))/N
        return jnp.where(inside, _scale(dvalue, p.size) * (p - t) / (p * (1 - p)), 0)

    return Loss(forward, backward, name, predicts="binary_probabilities")


def sigmoid_binary_cross_entropy() -> Loss:
    """Binary cross-entropy on logits z, fused with the sigmoid, numerically stable.

    L = mean[softplus(z) − t·z] = −mean[t·log σ(z) + (1 − t)·log(1 − σ(z))], computed as
    `max(z, 0) − t·z + log(1 + e^−|z|)`. Its gradient is the tutorial's `dZ3 = A3 − Y`.
    """
    name = "sigmoid_binary_cross_entropy"

    def forward(logits, target):
        _check_pair(name, logits, target)
        z, t = logits, target
        value = jnp.mean(jnp.maximum(z, 0) - t * z + jnp.log1p(jnp.exp(-jnp.abs(z))))
        return value, LogitResiduals(z, t)

    def backward(residuals, dvalue=1.0):
        z, t = residuals
        return _scale(dvalue, z.size) * (jax.nn.sigmoid(z) - t)  # dL/dz = (σ(z) − t)/N = (A − Y)/m

    return Loss(forward, backward, name, predicts="binary_logits")


def softmax_cross_entropy() -> Loss:
    """Cross-entropy of softmax(logits) against labels or distributions, fused, stable.

    `logits: (batch, ..., classes)`. The target is either
    - integer labels `(batch, ...)` in `[0, classes)`: L = mean[logsumexp(z) − z_label],
      gradient `(softmax(z) − onehot(label))/B`;
    - one-hot or soft targets shaped like the logits: L = mean[−Σ_k t_k log softmax(z)_k],
      gradient `(softmax(z)·Σ_k t_k − t)/B` (`softmax(z) − t` when rows sum to 1).

    Labels outside `[0, classes)`: called eagerly (outside `jit`) this raises a ValueError
    listing the bad labels; under `jit` values cannot be checked, so the loss is NaN
    (the NaN guard of a training loop stops on it) and the gradient treats that example
    as having no target (its one-hot row is all zeros).
    """
    name = "softmax_cross_entropy"

    def forward(logits, target):
        check_floating(name, logits)
        logp = jax.nn.log_softmax(logits, axis=-1)  # z − logsumexp(z)
        batch = logp.size // logp.shape[-1]
        if jnp.issubdtype(target.dtype, jnp.integer):
            if target.shape != logits.shape[:-1]:
                raise ShapeError(
                    f"{name}: integer labels must have shape {logits.shape[:-1]} "
                    f"(logits without the class axis), got {target.shape}"
                )
            classes = logits.shape[-1]
            check_in_range(name, "labels", target, classes)
            valid = (target >= 0) & (target < classes)
            picked = jnp.take_along_axis(logp, target[..., None], axis=-1, mode="clip")[..., 0]
            value = -jnp.sum(jnp.where(valid, picked, jnp.nan)) / batch
            return value, LogitResiduals(logp, target)
        _check_pair(name, logits, target)
        value = -jnp.sum(target * logp) / batch
        return value, LogitResiduals(logp, target)

    def backward(residuals, dvalue=1.0):
        logp, target = residuals
        batch = logp.size // logp.shape[-1]
        scale = _scale(dvalue, batch)
        if jnp.issubdtype(target.dtype, jnp.integer):
            onehot = _onehot(target, logp.shape[-1], logp.dtype)
            # dL/dz = (softmax(z) − onehot(y))/B, softmax(z) = e^logp kept from forward
            return scale * (jnp.exp(logp) - onehot)
        total = jnp.sum(target, axis=-1, keepdims=True)
        return scale * (jnp.exp(logp) * total - target)  # dL/dz = (softmax(z)·Σt − t)/B

    return Loss(forward, backward, name, predicts="class_logits")


def _onehot(labels, classes, dtype):
    """onehot(labels): shape `labels.shape + (classes,)`; a label outside [0, classes)
    gives a row of zeros.

    Built by a scatter of ones into zeros, the way `jax.grad` transposes the loss's
    gather: it depends on the labels alone, so XLA schedules it beside the forward pass
    (written as a compare with `arange`, the whole step ran slower: benchmarks/README.md).
    """
    flat = labels.reshape(-1)
    rows = jnp.arange(flat.shape[0])
    columns = jnp.where((flat >= 0) & (flat < classes), flat, classes)  # out of range: dropped
    onehot = jnp.zeros((flat.shape[0], classes), dtype).at[rows, columns].add(1, mode="drop")
    return onehot.reshape((*labels.shape, classes))


LOSSES: dict[str, Callable[[], Loss]] = {
    "mean_squared_error": mean_squared_error,
    "mse": mean_squared_error,
    "huber": huber,
    "binary_cross_entropy": binary_cross_entropy,
    "sigmoid_binary_cross_entropy": sigmoid_binary_cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy,
}


def get_loss(loss: str | Loss) -> Loss:
    """A loss by name (default hyperparameters), or `loss` itself."""
    if isinstance(loss, Loss):
        return loss
    return choose("loss", loss, LOSSES)()

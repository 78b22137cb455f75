"""Dropout, a random layer with a hand-written backward pass.

In training (`ctx.train`), each element is kept with probability `1 − rate` and scaled
by `1/(1 − rate)` (inverted dropout, so evaluation needs no rescaling):

    keep ~ Bernoulli(1 − rate)          (drawn from ctx.key, shaped like x)
    y    = x ⊙ keep / (1 − rate)
    dx   = dy ⊙ keep / (1 − rate)       (the same mask: y is linear in x)

The mask is kept as 1 bit per element, as relu keeps its sign. In evaluation
(`ctx.train` False) dropout is the identity, `dx = dy`, and needs no key.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from fnn.core import EVALUATION, Array, Layer, check_floating
from fnn.errors import SettingError
from fnn.layers.parts import pack_mask, parameter_free_init, unpack_mask

__all__ = ["dropout"]


@functools.partial(jax.tree_util.register_dataclass, data_fields=["keep"], meta_fields=["train"])
@dataclasses.dataclass(frozen=True)
class DropoutResiduals:
    """What dropout's backward needs: the mode, and in training the mask."""

    keep: Array | None  # shape=(batch, ..., ⌈features/8⌉), uint8: 1 bit per kept element;
    #                     None in evaluation
    train: bool  # static: the forward's mode


def dropout(rate: float) -> Layer:
    """Inverted dropout: in training, zeroes each element with probability `rate` and
    scales the rest by `1/(1 − rate)`; in evaluation, the identity.

    Arguments:
      rate: the probability of dropping an element, in [0, 1).

    Takes a `fnn.Ctx`: training (`Ctx(train=True, key=key)`) needs a PRNG key; the same
    key gives the same mask. Params `()`; residuals: `DropoutResiduals`, the mask as
    1 bit per element (none in evaluation). Under data parallelism the mask is drawn for
    the global batch, so it does not depend on the number of devices.
    """
    if not isinstance(rate, int | float) or not 0 <= rate < 1:
        raise SettingError(
            f"dropout: rate must be a float in [0, 1), got {rate!r}", settings=("rate",)
        )
    name = f"dropout({rate})"

    def forward(params, x, ctx=EVALUATION):
        del params
        check_floating(name, x)
        if not ctx.train or rate == 0:
            return x, DropoutResiduals(None, train=False)  # evaluation (or no drop): y = x
        if ctx.key is None:
            raise SettingError(
                f"{name}: training mode needs a PRNG key: pass fnn.Ctx(train=True, key=key), "
                "or to a training step, step(train_state, batch, key)",
                settings=("ctx",),
            )
        keep = jax.random.bernoulli(ctx.key, 1 - rate, x.shape)
        scale = jnp.asarray(1 / (1 - rate), x.dtype)
        y = jnp.where(keep, x * scale, jnp.zeros((), x.dtype))  # y = x ⊙ keep/(1 − rate)
        return y, DropoutResiduals(pack_mask(keep), train=True)

    def backward(params, residuals, dy):
        del params
        if not residuals.train:
            return (), dy  # dx = dy
        keep = unpack_mask(residuals.keep, dy)
        scale = jnp.asarray(1 / (1 - rate), dy.dtype)
        return (), jnp.where(keep, dy * scale, jnp.zeros((), dy.dtype))  # dx = dy ⊙ keep/(1 − rate)

    return Layer(
        parameter_free_init(),
        forward,
        backward,
        name,
        takes_ctx=True,
        per_example_backward=backward,
    )

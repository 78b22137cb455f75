"""The two contracts of fnn, `Layer` and `Loss`, and the type aliases they use.

A layer is three pure functions over a parameter pytree::

    init(key, in_shape, dtype=jnp.float32) -> (out_shape, params)   # shapes without batch
    forward(params, x)                     -> (y, residuals)        # x: (batch, ...features)
    backward(params, residuals, dy)        -> (dparams, dx)         # shaped like params, x

`backward` is the vector-Jacobian product of `forward`, written by hand: for a cotangent
`dy` shaped like `y` it returns `(dy·∂y/∂params, dy·∂y/∂x)`, exactly what
`jax.vjp(lambda p, x: forward(p, x)[0], params, x)[1](dy)` returns. `residuals` is
whatever `backward` needs and nothing more.

A loss is two pure functions::

    forward(pred, target)       -> (value, residuals)   # value: a scalar, mean over the batch
    backward(residuals, dvalue) -> dpred                # shaped like pred

Random and stateful layers (`dropout`, `batch_norm`) take a third, keyword argument,
a `Ctx`, and say so with `takes_ctx=True`::

    forward(params, x, ctx=Ctx(train, key, state)) -> (y, residuals)

`ctx.train` (a Python bool) picks training or evaluation behaviour, `ctx.key` is the PRNG
key of this forward pass, `ctx.state` the layer's running statistics. State is a pytree
kept apart from params (optimisers never see it), structured like params (one entry per
layer of a `serial`, `()` where a layer has none). It is read by the forward and
updated by a separate pure function of the residuals::

    init_state(params)               -> state       # e.g. running mean 0, variance 1
    update_state(state, residuals)   -> state       # after a training-mode forward

so the backward contract is unchanged, both gradient modes update state the same way,
and a training step carries `(params, opt_state, state)`.

**Two ways to write a forward, one way to call it.** A deterministic layer writes
`forward(params, x)`, the shape of `jax.custom_vjp`'s forward rule and all that the
tutorial's layers (and a user's own, such as the README's `prelu`) need; a random or
stateful layer writes `forward(params, x, *, ctx)` and declares `takes_ctx=True`. Every
caller (combinators, gradients, the checker, training) goes through `fnn.forward(layer,
params, x, ctx)`, the one place that tells the two apart; `fnn.init_state` and
`fnn.update_state` do the same for state. Giving every forward a `ctx` instead (as
Equinox gives every layer `key=None`) would put an unused argument into every
deterministic layer, fnn's and users', and would break layers written to this contract.

The batch convention is batch-first and row-major: a dense layer computes `x @ W + b`
with `W: (in, out)`. Losses divide by the batch size (they average), so layers sum over
the batch in their backward: the tutorial's `dW = A·dZᵀ/m` is `dW = xᵀ·dy` with the `1/m`
already inside `dy`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from fnn.errors import DataError, DTypeError, SettingError, ShapeError

Array: TypeAlias = jax.Array
# A pytree: tuples, lists, dicts, None, NamedTuples and registered dataclasses, nested, with
# arrays at the leaves. Which classes are nodes is decided at run time by
# `jax.tree_util`'s registry, which no static type can follow, so a pytree is typed `Any`
# (as JAX itself does): the aliases below say what a value means, not what it holds.
PyTree: TypeAlias = Any
Params: TypeAlias = PyTree  # a layer's parameters; () for a parameter-free layer
Residuals: TypeAlias = PyTree  # what forward keeps for backward, and nothing more
State: TypeAlias = PyTree  # running statistics, structured like params; () for none
Shape: TypeAlias = tuple[int, ...]  # an array's shape, without the batch axis in a contract
PRNGKey: TypeAlias = jax.Array  # a key from jax.random.key or jax.random.PRNGKey
DType: TypeAlias = DTypeLike  # jnp.float32, np.dtype("float32"), "float32", ...


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["key", "state"], meta_fields=["train"]
)
@dataclasses.dataclass(frozen=True)
class Ctx:
    """What a random or stateful layer's forward needs besides params and x.

    A pytree whose leaves are the key and the state; `train` is static, so a `Ctx` can be
    passed into a jitted function and each mode compiles its own program.

    Attributes:
      train: training behaviour (dropout drops, batch_norm uses batch statistics) when
        True; evaluation behaviour (dropout is the identity, batch_norm uses its running
        statistics) when False, the default. A Python bool: each value compiles its own
        program.
      key: the PRNG key of this forward pass (dropout needs one in training); `serial`
        gives its i-th layer `jax.random.fold_in(key, i)`.
      state: the running statistics, structured like the network's params (from
        `fnn.init_state`); `()` where there are none.
    """

    train: bool = False
    key: PRNGKey | None = None
    state: State = ()


class Walk(NamedTuple):
    """How a combinator walks its layers: the one statement from which `fnn.combinator`
    derives the combinator's init, forward, backward, per-example backward and state, and
    from which `fnn.backward_trace`, `fnn.bench.summary`, per-example gradients and the
    gradient-flow probe see inside it.

    Attributes:
      layers: the layers it holds, each called exactly once by `forward` and by
        `backward`.
      forward: `forward(call, x) -> y`, with `call(i, x_i) -> y_i` running layer i's
        forward (its params, residuals, key and state are taken care of).
      backward: `backward(call, dy) -> dx`, with `call(i, dy_i) -> dx_i` running layer i's
        backward (its gradients are collected): the chain rule of `forward`, layers in
        reverse order of use.
      shapes: `shapes(call, in_shape) -> out_shape`, with `call(i, in_shape_i) ->
        out_shape_i` initialising layer i; None for a chain (each layer's output shape
        is the next one's input shape).
      holds: how the combinator's params (and its residuals and state) hold the layers':
        "tuple", one entry per layer, each layer i getting the key `fold_in(key, i)`
        (`serial`); or "inner", one layer whose params, residuals, state and key are the
        combinator's own (`residual`).
    """

    layers: tuple[Layer, ...]
    forward: Callable[[Callable[[int, Any], Any], Any], Any]
    backward: Callable[[Callable[[int, Any], Any], Any], Any]
    shapes: Callable[[Callable[[int, Shape], Shape], Shape], Shape] | None = None
    holds: str = "tuple"


class Layer(NamedTuple):
    """A differentiable building block with a hand-written backward pass.

    Attributes:
      init: `init(key, in_shape, dtype=jnp.float32) -> (out_shape, params)`. Shapes
        exclude the batch axis.
      forward: `forward(params, x) -> (y, residuals)`, `x` of shape `(batch, *in_shape)`.
      backward: `backward(params, residuals, dy) -> (dparams, dx)`, the vector-Jacobian
        product of `forward`; `dparams` has the structure of `params`, `dx` the shape of x.
      name: a short description used in error messages and check reports.
      takes_ctx: whether `forward` takes the keyword argument `ctx` (a `Ctx`): random
        and stateful layers, and combinators holding one.
      init_state: `init_state(params) -> state`, or None for a layer without state.
      update_state: `update_state(state, residuals) -> state`, the new running
        statistics after a training-mode forward that returned `residuals`; None for a
        layer without state.
      per_example_backward: `per_example_backward(params, residuals, dy) -> (dparams,
        dx)` where every leaf of `dparams` has a leading batch axis: example i's own
        gradient (the sum over i is `backward`'s). None where the layer does not provide
        one; `fnn.per_example_grads` needs it of every layer of a network.
      walk: for a combinator, how it walks its layers (a `Walk`); None for a leaf layer.
        Set by `fnn.combinator`, which derives every other field from it.

    These nine fields are the whole contract: a leaf layer sets the first four and the
    optional ones it has (keywords past `name`: `Layer(init, forward, backward, name,
    takes_ctx=True)`); a combinator is built by `fnn.combinator(walk, name)`, never field
    by field, so a capability added to fnn is derived in one place for fnn's
    combinators and a user's alike.
    """

    init: Callable[..., tuple[Shape, Params]]
    forward: Callable[..., tuple[Array, Residuals]]
    backward: Callable[[Params, Residuals, Array], tuple[Params, Array]]
    name: str = "layer"
    takes_ctx: bool = False
    init_state: Callable[[Params], State] | None = None
    update_state: Callable[[State, Residuals], State] | None = None
    per_example_backward: Callable[[Params, Residuals, Array], tuple[Params, Array]] | None = None
    walk: Walk | None = None

    @property
    def sublayers(self) -> tuple[Layer, ...]:
        """The layers a combinator holds (`walk.layers`); `()` for a leaf layer."""
        return () if self.walk is None else self.walk.layers


class Loss(NamedTuple):
    """A scalar objective with a hand-written gradient.

    Attributes:
      forward: `forward(pred, target) -> (value, residuals)`; `value` is a scalar, the
        mean over the batch (and over output elements where the loss says so).
      backward: `backward(residuals, dvalue=1.0) -> dpred`, shaped like `pred`.
      name: a short description used in error messages and check reports.
      predicts: what a prediction means, so that a label can be read from it without
        knowing the loss by name (`fnn.tasks`): "class_logits" (a logit per class; the
        label is the argmax), "binary_logits" (positive where > 0), "binary_probabilities"
        (positive where > 0.5), or None (values with no labels, as a regression's).
    """

    forward: Callable[[Array, Array], tuple[Array, Residuals]]
    backward: Callable[..., Array]
    name: str = "loss"
    predicts: str | None = None


EVALUATION = Ctx()  # the mode of a forward given no Ctx: evaluation, no key, no state


def forward(layer: Layer, params: Params, x: Array, ctx: Ctx | None = None):
    """Runs `layer.forward` -> `(y, residuals)`, passing `ctx` to a layer that takes one
    (default `EVALUATION`) and ignoring it otherwise: the one way every caller calls a
    layer."""
    if layer.takes_ctx:
        return layer.forward(params, x, ctx=EVALUATION if ctx is None else ctx)
    return layer.forward(params, x)


def apply(layer: Layer, params: Params, x: Array, ctx: Ctx | None = None) -> Array:
    """Runs `layer.forward` and returns only the output (no residuals).

    For a network with dropout or batch_norm, `ctx` picks the behaviour: the default is
    evaluation, which needs the running statistics of batch_norm:
    `fnn.apply(net, params, x, fnn.Ctx(state=state))`.
    """
    return forward(layer, params, x, ctx)[0]


def init_state(layer: Layer, params: Params) -> State:
    """The initial running statistics of `layer` for `params`; `()` for a layer without
    state."""
    return layer.init_state(params) if layer.init_state is not None else ()


def update_state(layer: Layer, state: State, residuals: Residuals) -> State:
    """The running statistics after a training-mode forward that returned `residuals`;
    `state` itself for a layer without state."""
    return layer.update_state(state, residuals) if layer.update_state is not None else state


def init(layer: Layer, key: PRNGKey, in_shape: Shape, dtype: DType = jnp.float32) -> Params:
    """Initialises `layer` for inputs of shape `(batch, *in_shape)` and returns its params.

    The init runs as one compiled program (`one_shot_jit`): the same bits as running it op
    by op, in a fraction of the time (an MLP's first init on a 2-core CPU: 0.3 s instead of
    about 2 s, every op compiling on its own). A user's init that cannot be traced (it
    reads the key's value, say) runs op by op instead.
    """
    in_shape = tuple(in_shape)
    try:
        return one_shot_jit(lambda k: layer.init(k, in_shape, dtype)[1])(key)
    except jax.errors.JAXTypeError:  # an init that needs concrete values: run it eagerly
        return layer.init(key, in_shape, dtype)[1]


def check_floating(name: str, x: Array) -> None:
    """Raises a `DTypeError` (a TypeError) naming `name` when `x` is not a floating-point
    array."""
    dtype = jnp.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise DTypeError(
            f"{name}: expected a floating-point input, got dtype {dtype}; "
            f"cast it first, e.g. x.astype(jnp.float32)"
        )


def expect(ok: bool, name: str, message: str) -> None:
    """Raises `ShapeError("{name}: {message}")` (a ValueError) unless `ok`: one line per
    shape check."""
    if not ok:
        raise ShapeError(f"{name}: {message}")


def check_in_range(name: str, what: str, values: ArrayLike, upper: int) -> None:
    """Raises a `DataError` (a ValueError) naming `name`, `what` and the offending values
    when integer `values` fall outside `[0, upper)`. Only when called eagerly: under `jit`
    the values are tracers and cannot be inspected, so this does nothing."""
    if isinstance(values, jax.core.Tracer):
        return
    values = np.asarray(values)
    bad = np.unique(values[(values < 0) | (values >= upper)])
    if bad.size:
        raise DataError(
            f"{name}: {what} must lie in [0, {upper}), got {bad[:10].tolist()}"
            + (" ..." if bad.size > 10 else "")
        )


def choose(kind: str, name: str, table: dict[str, Any], *, setting: str | None = None) -> Any:
    """Looks `name` up in `table`, or raises a SettingError listing the valid names (with
    `setting`, the caller's parameter that chose it)."""
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(sorted(table))
        raise SettingError(
            f"unknown {kind} {name!r}; valid {kind}s: {valid}",
            settings=() if setting is None else (setting,),
        ) from None


def as_array(x: Any) -> Array:
    """`jnp.asarray(x)`, with a numpy array copied to the device by `jax.device_put`:
    `jnp.asarray` of a numpy array compiles a small program for each new shape and dtype
    (about 15 ms on a 2-core CPU), `jax.device_put` none. The same array either way (the
    same canonical dtype, not weakly typed, uncommitted)."""
    return jax.device_put(x) if isinstance(x, np.ndarray) else jnp.asarray(x)


# A program that runs once (a check, an init) costs its compile. On the CPU it is compiled
# without XLA's backend optimisations and with the loop emitters instead of the fusion
# emitters: the same operations, in a fraction of the compile time (on a 2-core CPU, the
# digits gradient check of `fnn train` 0.59 s instead of 1.28 s; its init 0.37 s instead
# of 2.86 s, the same bits).
ONE_SHOT_CPU_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def one_shot_jit(fun: Callable, **jit_kwargs: Any) -> Callable:
    """`jax.jit(fun, **jit_kwargs)` for a program run once: with `ONE_SHOT_CPU_OPTIONS` on
    the CPU (a jaxlib that refuses them compiles it as usual, and a real error comes back
    from that plain compile)."""
    plain = jax.jit(fun, **jit_kwargs)
    if jax.default_backend() != "cpu":
        return plain
    fast = jax.jit(fun, compiler_options=ONE_SHOT_CPU_OPTIONS, **jit_kwargs)

    def run(*args, **kwargs):
        try:
            return fast(*args, **kwargs)
        except Exception:  # noqa: BLE001  (an option this jaxlib lacks; else plain re-raises)
            return plain(*args, **kwargs)

    return run

"""One layer's forward and backward (its vector-Jacobian product) as the thing timed:
by its hand-written backward (`manual`), by `jax.vjp` of its forward (`autodiff`), by
`jax.vjp` through the custom_vjp bridge (`custom_vjp`), or by another layer computing the
same function (a variant, e.g. one that keeps other residuals). `fnn.bench.compare_layer`
runs them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn.bench.impls import Impl, timed_compile
from fnn.bench.measure import count_kept, count_vjp_residuals, repeat_calls
from fnn.check.point import draw_params
from fnn.core import Ctx, Layer, SettingError, forward
from fnn.grad import as_custom_vjp

VJP_IMPLS = ("manual", "autodiff", "custom_vjp")


@dataclasses.dataclass
class VJPProblem:
    """A layer, its params, one input batch and one cotangent, in one dtype.

    Attributes:
      layer: the layer; `x: (batch, *in_shape)`, `dy` shaped like its output.
      params: params in general position (`fnn.check.point.draw_params`).
      ctx: the `fnn.Ctx` every forward gets (mode, key, state), or None.
      calls: forward-and-backward calls per timed unit.
      flops: XLA's FLOP count of one `jax.vjp` forward and backward, or None.
    """

    layer: Layer
    dtype: Any
    params: Any
    x: jax.Array
    dy: jax.Array
    ctx: Ctx | None
    calls: int
    flops: float | None
    flops_source: str


def make_vjp_problem(
    layer: Layer,
    in_shape: tuple[int, ...],
    *,
    batch: int,
    dtype: Any,
    ctx: Ctx | Callable[[Any], Ctx] | None,
    calls: int,
    key: int = 0,
    make_input: Callable | None = None,
) -> VJPProblem:
    """Draws the layer's params, an input and a cotangent; checks that they fit.

    Raises:
      SettingError: `layer` is no fnn Layer, or one without a backward, or its forward
        does not take `(batch, *in_shape)` inputs (the message says which).
    """
    if not isinstance(layer, Layer):
        raise SettingError(
            f"compare_layer takes an fnn Layer, got {type(layer).__name__}", settings=("layer",)
        )
    if not callable(layer.backward):
        raise SettingError(f"{layer.name} has no backward to compare", settings=("layer",))
    dt = jnp.dtype(dtype)
    rng = np.random.default_rng(key)
    try:
        shapes = jax.eval_shape(
            lambda k: layer.init(k, tuple(in_shape), dt)[1], jax.random.PRNGKey(key)
        )
        params = jax.tree.map(jnp.asarray, draw_params(shapes, rng))
        shape = (batch, *in_shape)
        if make_input is None:
            x = jnp.asarray(rng.standard_normal(shape), dt)
        else:
            x = jnp.asarray(make_input(jax.random.PRNGKey(key), shape, dt))
        ctx = ctx(params) if callable(ctx) else ctx
        y = jax.eval_shape(lambda p, x, c: forward(layer, p, x, c)[0], params, x, ctx)
    except (TypeError, ValueError) as error:
        notes = "; ".join(n for n in getattr(error, "__notes__", ()) if n.startswith("in layer"))
        raise SettingError(
            f"{layer.name} does not take inputs of shape (batch, *{tuple(in_shape)}) = "
            f"{(batch, *in_shape)}: {error}" + (f" ({notes})" if notes else ""),
            settings=("in_shape", "batch"),
        ) from error
    dy = jnp.asarray(rng.standard_normal(y.shape), y.dtype)
    flops, source = None, "FLOPs unknown: XLA's cost analysis gave none"
    try:
        analysis = jax.jit(autodiff_vjp(layer)).lower(params, x, dy, ctx).compile().cost_analysis()
        if isinstance(analysis, list | tuple):
            analysis = analysis[0] if analysis else None
        if analysis and analysis.get("flops"):
            flops, source = float(analysis["flops"]), "XLA cost analysis"
    except Exception as error:  # a backend without cost analysis
        source = f"FLOPs unknown: {type(error).__name__}"
    return VJPProblem(layer, dt, params, x, dy, ctx, calls, flops, source)


def manual_vjp(layer: Layer) -> Callable:
    """`fn(params, x, dy, ctx) -> (dparams, dx)`: the layer's forward, then its hand-written
    backward."""

    def fn(params, x, dy, ctx):
        _, residuals = forward(layer, params, x, ctx)
        return layer.backward(params, residuals, dy)  # (dparams, dx)

    return fn


def autodiff_vjp(layer: Layer) -> Callable:
    """`fn(params, x, dy, ctx) -> (dparams, dx)` by `jax.vjp` of the layer's forward."""

    def fn(params, x, dy, ctx):
        _, vjp = jax.vjp(lambda p, x: forward(layer, p, x, ctx)[0], params, x)
        return vjp(dy)

    return fn


def _bridge(layer: Layer) -> Callable:
    def fn(params, x, dy, ctx):
        _, vjp = jax.vjp(as_custom_vjp(layer, ctx), params, x)
        return vjp(dy)

    return fn


def _residuals(problem: VJPProblem, layer: Layer, manual: bool) -> tuple[int, int]:
    """What the backward keeps from the forward, arguments excluded: the layer's
    hand-written residuals, or what `jax.vjp` of its plain forward saves."""
    ctx, dy = problem.ctx, problem.dy
    if manual:
        return count_kept(lambda p, x: forward(layer, p, x, ctx)[1], problem.params, problem.x)
    f = lambda p, x: forward(layer, p, x, ctx)[0]  # noqa: E731
    return count_vjp_residuals(f, dy, problem.params, problem.x)


def build_vjp_impl(impl: str | tuple[str, Layer], problem: VJPProblem) -> Impl:
    """`manual`, `autodiff`, `custom_vjp`, or `(name, variant_layer)`: a unit is
    `problem.calls` calls of one compiled forward-and-backward; `grads` is its
    `(dparams, dx)`."""
    if isinstance(impl, str):
        name, layer = impl, problem.layer
        fn = {"manual": manual_vjp, "autodiff": autodiff_vjp, "custom_vjp": _bridge}[impl](layer)
        note = {"manual": "hand-written backward", "autodiff": "jax.vjp of the forward",
                "custom_vjp": "jax.vjp through the custom_vjp bridge"}[impl]  # fmt: skip
    else:
        name, layer = impl
        if not isinstance(layer, Layer):
            raise SettingError(
                f"impl {name!r}: expected an fnn Layer computing the same function, got "
                f"{type(layer).__name__}",
                settings=("impls",),
            )
        fn, note = manual_vjp(layer), f"{layer.name}, hand-written backward"
    args = (problem.params, problem.x, problem.dy, problem.ctx)
    compiled, compile_s = timed_compile(fn, *args)
    residuals = _residuals(problem, layer, manual=name != "autodiff")
    return Impl(
        name,
        repeat_calls(compiled, args, problem.calls),
        None,
        grads=lambda: compiled(*args),
        compiled=compiled,
        compile_s=compile_s,
        residuals=residuals,
        kind="dispatched",
        note=note,
    )

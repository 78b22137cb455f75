"""Verification of hand-written backward passes: `check_layer`, `check_loss`, `check_model`.

Each check compares a hand-written derivative with JAX's own, at a point in general
position:

- **against `jax.vjp`**: the layer's `backward(params, residuals, dy)` with
  `jax.vjp(forward)(dy)`, leaf by leaf;
- **against finite differences** (float64 only): along a random direction `v` of params
  and input, the directional derivative of the forward by central differences,
  `⟨dy, (f(θ + εv) − f(θ − εv))/2ε⟩` with ε = 1e-4, must equal `⟨v, backward(dy)⟩` to
  within 1e-5 (absolute and relative), the test `jax.test_util.check_grads` makes;
- **per example** (a layer that declares `per_example_backward`): its dparams, one per
  example (leading batch axis), against each example's own gradient, `jax.vmap` over i
  of `jax.vjp` of the forward on the batch of one `x[i:i+1]` at `dy[i:i+1]`, and its dx
  against the batch's `jax.vjp`, leaf by leaf with the same tolerance. The sum over
  examples alone would pass a per-example backward that is right on average and wrong
  for each example. In training mode with a key, a random layer draws its randomness
  for the whole batch, which a batch of one cannot reproduce; there example i's share
  is the batch's `jax.vjp` at `dy` zeroed outside example i, the same thing for examples
  independent given the randomness. (A layer whose forward couples examples, batch_norm
  in training, declares no per-example backward.)
- **at a tie point** (float64, with finite differences; `fnn.check.ties`): random
  continuous inputs never tie, so a max_pool backward that sends `dy` to EVERY tied
  maximum passes the checks above. The same layer is also checked at integer inputs
  from {-2, ..., 2}, where relu sees exact zeros and max_pool tied maxima. There any split
  of `dy` among tied entries that adds up to `dy` is right (JAX's `maximum` halves it,
  fnn's max_pool gives it to the first), so nothing is compared leaf by leaf: along
  directions `v_i = h(x_i)`, `h` a random function of the value with `h(0) = 0`, no tie
  breaks, the forward is differentiable, and `⟨backward(dy), v⟩` must equal the
  derivative `⟨dy, J·v⟩` by finite differences, in three directions. Every valid split
  passes; a backward that creates or loses gradient at a tie fails. A direction that
  crosses a kink anyway (one at a constant other than 0) is set aside; "n/a" for an
  input from `make_input` and for a whole network (`sublayers`), whose inner ties the
  input's direction does not keep.

All of it runs in ONE compiled program per check: the residuals come from `jax.vjp`'s
own forward, and every finite-difference point goes through one vmapped forward.

**The point.** Every floating param leaf is drawn at random, not taken from `init`
(`init` fixes only the shapes and dtypes): a leaf of two or more axes, such as a weight
`(in, out)` or a kernel `(kh, kw, in, out)`, from N(0, 1/fan_in) with fan_in the product
of all axes but the last; a leaf of one axis or none (biases, scales, slopes) from
U(0.5, 1.5), away from 0 and 1, so that a backward that confuses `scale` with `1/scale`,
or drops a bias term, shows. The input is `input_scale · N(0, 1)`, the cotangent
`dy ~ N(0, 1)`. `at_init=True` checks at the layer's initial params instead. Random and
stateful layers take their mode, key and state from `ctx`. The tie point keeps the
params, `dy` and `ctx` (a random layer: the same key, the same mask at every point) and
replaces only the input; its directions move the params too, along N(0, 1), so dparams
is checked there as well: the ties come from the input, and params shared by tied
entries move them together (`fnn.check.ties`).

Errors, per leaf (each parameter and the input): `abs = max|manual − ref|` and
`rel = abs / max(max|ref|, 1e-2 · G)` where G is the largest `max|ref|` over all leaves:
a norm-wise relative error, which does not blow up at entries near zero, nor on a leaf
whose true gradient is zero up to rounding (a dense bias right before `batch_norm`,
which the normalisation cancels). An item passes when every leaf's `rel ≤ rtol` (default
1e-10 in float64, 1e-4 in float32), the trees have the same structure and shapes, and
no other comparison (finite differences, per example, ties) failed.

Users check their own layer with one call::

    result = fnn.check_layer(my_layer, in_shape=(8,))
    assert result.passed, result
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn.check.point import draw_like, draw_params, inner, rngs, step
from fnn.check.report import (
    DEFAULT_RTOL,
    CheckResult,
    finite_difference_verdict,
    raised,
    result,
    structure,
)
from fnn.check.ties import draw_tie_point, not_applicable, shift, stack, tie_points, tie_verdict
from fnn.core import Ctx, Layer, Loss, as_array, choose, forward, one_shot_jit
from fnn.grad import value_and_grad

DTYPES = tuple(DEFAULT_RTOL)
FD_EPS = 1e-4  # the finite-difference step (jax.test_util.check_grads's)


def _x64(dtype: str):
    """A context that enables 64-bit types when `dtype` is float64."""
    return jax.enable_x64(dtype == "float64")


def _check_dtype(dtype: Any) -> str:
    dtype = str(jnp.dtype(dtype)) if not isinstance(dtype, str) else dtype
    choose("check dtype", dtype, dict.fromkeys(DTYPES))
    return dtype


def _label(grads):
    """Names the two halves of a layer's VJP for the report: params[...] and x."""
    dparams, dx = grads
    return {"params": dparams, "x": dx}


def check_layer(
    layer: Layer,
    in_shape: Sequence[int],
    *,
    batch: int = 4,
    dtype: str = "float64",
    key: int | jax.Array = 0,
    rtol: float | None = None,
    input_scale: float = 2.0,
    name: str | None = None,
    finite_differences: bool = True,
    make_input: Callable[[jax.Array, tuple[int, ...], Any], jax.Array] | None = None,
    ctx: Ctx | Callable[[Any], Ctx] | None = None,
    at_init: bool = False,
) -> CheckResult:
    """Checks `layer.backward` against `jax.vjp` of `layer.forward` and finite differences.

    Arguments:
      layer: any Layer, a whole network included.
      in_shape: the input shape without the batch axis.
      batch: the batch size of the random input.
      dtype: "float64" (the default; 64-bit types are enabled for the check only) or
        "float32".
      key: an int seed or a PRNG key for everything drawn (params, input, cotangent,
        finite-difference direction).
      rtol: the relative tolerance (default 1e-10 in float64, 1e-4 in float32).
      input_scale: the input is `input_scale × N(0, 1)`.
      name: the name in the report (default: `layer.name`).
      finite_differences: also check against finite differences and at the tie point
        (float64 only).
      make_input: `make_input(key, shape, dtype) -> x`, the input generator (default
        `input_scale × N(0, 1)`), e.g. integer token ids for an embedding:
        `lambda key, shape, dtype: jax.random.randint(key, shape, 0, vocab)`. For an
        integer input the layer's `dx` must be float0 zeros of the input's shape (what
        `jax.vjp` returns for integer arguments), and finite differences move only the
        params.
      ctx: for a random or stateful layer, the `fnn.Ctx` its forward gets (fixed during
        the check: the same key, the same state), or a function `ctx(params) -> Ctx`
        (e.g. running statistics from `fnn.init_state`). Default: evaluation, `Ctx()`.
      at_init: check at `layer.init(key)`'s params instead of params in general
        position (see the module docstring), for a layer whose params must satisfy a
        constraint that random draws break.
    """
    dtype = _check_dtype(dtype)
    name = name or layer.name
    with _x64(dtype):
        rng, jax_key = rngs(key)
        dt = jnp.dtype(dtype)
        in_shape = tuple(in_shape)
        init_key, input_key = jax.random.split(jax_key)
        per_example = None if layer.per_example_backward else "n/a (no per_example_backward)"
        try:
            if at_init:
                params = layer.init(init_key, in_shape, dt)[1]
            else:
                shapes = jax.eval_shape(lambda k: layer.init(k, in_shape, dt)[1], init_key)
                params = draw_params(shapes, rng)
            x: np.ndarray | jax.Array
            if make_input is None:
                x = (input_scale * rng.standard_normal((batch, *in_shape))).astype(dt)
            else:
                x = jnp.asarray(make_input(input_key, (batch, *in_shape), dt))
            ctx = ctx(params) if callable(ctx) else ctx
            y = jax.eval_shape(lambda p, x, c: forward(layer, p, x, c)[0], params, x, ctx)
            dy = rng.standard_normal(y.shape).astype(y.dtype)
            parts = _parts(layer, ctx, per_example is None)
            try:  # the shapes first: a wrong structure compiles nothing
                shapes = jax.eval_shape(parts, params, x, dy, ctx)
            except (TypeError, ValueError) as error:
                if per_example is not None:
                    raise
                per_example = f"failed: {_raised(error)}"  # the batch backward may be right
                parts = _parts(layer, ctx, False)
                shapes = jax.eval_shape(parts, params, x, dy, ctx)
        except (TypeError, ValueError) as error:  # e.g. a missing key, a misshapen backward
            return raised(name, dtype, rtol, error)
        problem = structure(*(_label(s) for s in shapes[:2]))
        if per_example is None and (pe_problem := structure(*(_label(s) for s in shapes[2]))):
            per_example, parts = f"failed: {pe_problem}", _parts(layer, ctx, False)
        fd = finite_differences and dtype == "float64" and not problem
        v = draw_like((params, x), rng)
        ties = _verdict(finite_differences, dtype, problem)
        ties = not_applicable(layer, make_input is not None) if ties == "passed" else ties
        # ties == "": the tie check runs; else its verdict already (skipped, n/a, not run)
        points = [shift((params, x), v, FD_EPS), shift((params, x), v, -FD_EPS)] if fd else []
        x_tie = tie_directions = None
        if not ties:  # drawn after everything else: the main point is as it always was
            x_tie, tie_directions = draw_tie_point(params, x.shape, dt, rng)
            points += tie_points(params, x_tie, tie_directions)

        @one_shot_jit  # ONE compiled program per check: compiles are what a check costs
        def program(params, x, dy, ctx, x_tie, points):
            out = {"main": parts(params, x, dy, ctx)}
            if x_tie is not None:  # the backward at the tie point, for the same dy
                out["tie"] = layer.backward(params, forward(layer, params, x_tie, ctx)[1], dy)
            if points:  # every finite-difference point in one vmapped forward
                f = lambda p, x: forward(layer, p, x, ctx)[0]  # noqa: E731
                out["outputs"] = jax.vmap(f)(*points)
            return out

        out = jax.device_get(program(params, x, dy, ctx, x_tie, stack(points) if points else ()))
        manual, reference = out["main"][:2]
        verdict = _verdict(finite_differences, dtype, problem)
        if fd:
            jv = (out["outputs"][0] - out["outputs"][1]) / (2 * FD_EPS)  # J·v, central
            verdict = finite_difference_verdict(inner(v, manual), inner(dy, jv))
        pe = per_example if per_example is not None else tuple(_label(t) for t in out["main"][2])
        if not ties and tie_directions is not None:  # (drawn above, where `ties` was "")
            ties = tie_verdict(out["tie"], tie_directions, dy, out["outputs"][2 if fd else 0 :])
        return result(
            name,
            dtype,
            rtol,
            _label(manual),
            _label(reference),
            verdict,
            per_example=pe,
            ties=ties,
        )


def _raised(error: Exception) -> str:
    return f"raised {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _parts(layer: Layer, ctx: Any, per_example: bool) -> Callable:
    """`parts(params, x, dy, ctx) -> (manual, reference[, per_example])`: the layer's
    backward and `jax.vjp` of its forward at one point for one cotangent (the residuals
    from the vjp's own forward: one forward for both), and with `per_example` the pair
    `(per_example_backward, its reference)` of the module docstring."""
    batch_random = ctx is not None and ctx.train and ctx.key is not None
    pe_backward = layer.per_example_backward or layer.backward  # (the latter never runs)

    def parts(params, x, dy, ctx):
        f = lambda p, x: forward(layer, p, x, ctx)  # noqa: E731
        _, vjp, residuals = jax.vjp(f, params, x, has_aux=True)
        manual = layer.backward(params, residuals, dy)
        reference = vjp(dy)
        if not per_example:
            return manual, reference
        if not jax.tree.leaves(params):  # no params: the per-example dx is all there is
            reference_pe = (params, reference[1])
        elif batch_random:
            rows = jnp.eye(dy.shape[0], dtype=dy.dtype)  # row i: example i's indicator
            rows = rows.reshape(rows.shape + (1,) * (dy.ndim - 1))
            dparams = jax.vmap(lambda d: vjp(d)[0])(rows * dy[None])  # dy ⊙ [example = i]
            reference_pe = (dparams, reference[1])
        else:

            def one(xi, dyi):  # example i alone: a batch of one
                _, vjp_i = jax.vjp(lambda p: forward(layer, p, xi[None], ctx)[0], params)
                return vjp_i(dyi[None])[0]

            reference_pe = (jax.vmap(one)(x, dy), reference[1])
        same = pe_backward is layer.backward  # a parameter-free layer's: nothing to add
        manual_pe = manual if same else pe_backward(params, residuals, dy)
        return manual, reference, (manual_pe, reference_pe)

    return parts


def _verdict(finite_differences: bool, dtype: str, problem: str) -> str:
    if not finite_differences:
        return "skipped (disabled)"
    if dtype != "float64":
        return "skipped (float64 only)"
    return "not run (the gradient's structure is wrong)" if problem else "passed"


def check_loss(
    loss: Loss,
    pred: Any,
    target: Any,
    *,
    dtype: str = "float64",
    key: int = 0,
    rtol: float | None = None,
    name: str | None = None,
    finite_differences: bool = True,
) -> CheckResult:
    """Checks `loss.backward` against `jax.grad` of `loss.forward` (in `pred`) and, in
    float64, against finite differences along a random direction.

    `pred` is an array or a pytree of arrays (e.g. a `fnn.HeadInput`): an array
    (or nested lists of numbers) is cast to `dtype` whole, a tree's floating leaves are
    cast to `dtype` and its other leaves stay; the gradient is compared leaf by leaf and
    the direction of the finite differences runs through the whole tree. Floating
    `target` is cast to `dtype`; integer targets (labels) stay.
    """
    dtype = _check_dtype(dtype)
    name = name or loss.name
    with _x64(dtype):
        rng = np.random.default_rng(key)
        pred = _cast_pred(pred, jnp.dtype(dtype))
        target = as_array(target)
        if jnp.issubdtype(target.dtype, jnp.floating):
            target = target.astype(jnp.dtype(dtype))
        fd = finite_differences and dtype == "float64"
        v = draw_like(pred, rng)

        @one_shot_jit
        def program(pred, target, v):
            value, residuals = loss.forward(pred, target)
            manual = loss.backward(residuals, jnp.ones_like(value))
            reference = jax.grad(lambda p: loss.forward(p, target)[0])(pred)
            if not fd:
                return manual, reference, None
            f = lambda p: loss.forward(p, target)[0]  # noqa: E731
            jv = (f(step(pred, v, FD_EPS)) - f(step(pred, v, -FD_EPS))) / (2 * FD_EPS)
            return manual, reference, jv  # J·v by central differences

        try:
            manual, reference, jv = jax.device_get(program(pred, target, v))
        except (TypeError, ValueError) as error:
            return raised(name, dtype, rtol, error)
        verdict = _verdict(finite_differences, dtype, "")
        if jv is not None and not structure(manual, reference):
            verdict = finite_difference_verdict(inner(v, manual), float(jv))
        return result(name, dtype, rtol, {"pred": manual}, {"pred": reference}, verdict)


def _cast_pred(pred: Any, dtype: Any) -> Any:
    """An array (or nested lists of numbers) cast to `dtype` whole; a pytree of arrays with
    its floating leaves cast to `dtype` and its other leaves as they are."""
    leaves, treedef = jax.tree.flatten(pred)
    if jax.tree_util.treedef_is_leaf(treedef) or all(np.isscalar(leaf) for leaf in leaves):
        return jnp.asarray(pred, dtype)

    def one(leaf):
        leaf = as_array(leaf)
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree.map(one, pred)


def check_model(
    net: Layer,
    loss: Loss,
    x: Any,
    y: Any,
    *,
    key: int | jax.Array = 0,
    dtype: str = "float64",
    rtol: float | None = None,
    name: str | None = None,
    ctx: Ctx | Callable[[Any], Ctx] | None = None,
    at_init: bool = False,
) -> CheckResult:
    """Checks `value_and_grad(net, loss, "manual")` against the "autodiff" mode on data.

    This is the check a training run makes before it starts: the gradient of the whole
    objective, network and loss together, on real inputs `x` and targets `y`, at params
    in general position (`at_init=True`: at `net.init(key)`'s). `ctx` is as in
    `check_layer` (e.g. `lambda params: fnn.Ctx(True, key, fnn.init_state(net, params))`
    for a network with dropout and batch_norm, in training mode).
    """
    dtype = _check_dtype(dtype)
    with _x64(dtype):
        rng, jax_key = rngs(key)
        x = as_array(x)
        if not jnp.issubdtype(x.dtype, jnp.integer):  # token ids stay integers
            x = x.astype(jnp.dtype(dtype))
        y = as_array(y)
        if jnp.issubdtype(y.dtype, jnp.floating):
            y = y.astype(jnp.dtype(dtype))
        in_shape, dt = tuple(x.shape[1:]), jnp.dtype(dtype)
        if at_init:
            params = net.init(jax_key, in_shape, dt)[1]
        else:
            params = draw_params(
                jax.eval_shape(lambda k: net.init(k, in_shape, dt)[1], jax_key), rng
            )
        ctx = ctx(params) if callable(ctx) else ctx
        manual_fn = value_and_grad(net, loss, "manual")
        autodiff_fn = value_and_grad(net, loss, "autodiff")

        @one_shot_jit
        def program(params, x, y, ctx):
            return manual_fn(params, x, y, ctx)[1], autodiff_fn(params, x, y, ctx)[1]

        manual, reference = jax.device_get(program(params, x, y, ctx))
        fd = "skipped (whole-model check compares the two modes)"
        return result(
            name or f"{net.name} + {loss.name}",
            dtype,
            rtol,
            {"params": manual},
            {"params": reference},
            fd,
        )

"""Verification of hand-written backward passes: `check_layer`, `check_loss`, `check_model`.

Each check compares a hand-written derivative with JAX's own, at a point in general
position:

- **against `jax.vjp`**: the layer's `backward(params, residuals, dy)` with
  `jax.vjp(forward)(dy)`, leaf by leaf;
- **against finite differences** (float64 only): along a random direction `v` of params
  and input, the directional derivative of the forward by central differences,
  `⟨dy, (f(θ + εv) − f(θ − εv))/2ε⟩` with ε = 1e-4, must equal `⟨v, backward(dy)⟩` to
  within 1e-5 (absolute and relative), the test `jax.test_util.check_grads` makes.

Both run in ONE compiled program per check.

**The point.** Every floating param leaf is drawn at random, not taken from `init`
(`init` fixes only the shapes and dtypes): a leaf of two or more axes, such as a weight
`(in, out)` or a kernel `(kh, kw, in, out)`, from N(0, 1/fan_in) with fan_in the product
of all axes but the last; a leaf of one axis or none (biases, scales, slopes) from
U(0.5, 1.5), away from 0 and 1, so that a backward that confuses `scale` with `1/scale`,
or drops a bias term, shows. The input is `input_scale · N(0, 1)`, the cotangent
`dy ~ N(0, 1)`. `at_init=True` checks at the layer's initial params instead. Random and
stateful layers take their mode, key and state from `ctx`.

Errors, per leaf (each parameter and the input): `abs = max|manual − ref|` and
`rel = abs / max(max|ref|, 1e-2 · G)` where G is the largest `max|ref|` over all leaves:
a norm-wise relative error, which does not blow up at entries near zero, nor on a leaf
whose true gradient is zero up to rounding (a dense bias right before `batch_norm`,
which the normalisation cancels). An item passes when every leaf's `rel ≤ rtol` (default
1e-10 in float64, 1e-4 in float32), the trees have the same structure and shapes, and,
in float64, the finite-difference check passes.

Users check their own layer with one call::

    result = fnn.check_layer(my_layer, in_shape=(8,))
    assert result.passed, result
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn.core import Ctx, Layer, Loss, choose, forward
from fnn.grad import value_and_grad

DEFAULT_RTOL = {"float64": 1e-10, "float32": 1e-4}
DTYPES = tuple(DEFAULT_RTOL)
LEAF_SCALE_FLOOR = 1e-2  # a leaf's error is relative to at least 1e-2 × the largest leaf
FD_EPS = 1e-4  # the finite-difference step (jax.test_util.check_grads's)
FD_TOL = 1e-5  # its absolute and relative tolerance in float64 (check_grads's)


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
      name: what was checked.
      dtype: "float64" or "float32".
      max_abs_err, max_rel_err: the largest errors over all leaves.
      rtol: the relative tolerance applied.
      passed: whether every leaf is within `rtol` and finite differences agree.
      leaves: per leaf path (e.g. "params[0]['W']", "x"): {"abs": ..., "rel": ...}.
      finite_differences: "passed", "skipped (...)" or "failed: <message>".
      error: a structural problem (a missing or misshapen gradient), else "".
    """

    name: str
    dtype: str
    max_abs_err: float
    max_rel_err: float
    rtol: float
    passed: bool
    leaves: dict[str, dict[str, float]]
    finite_differences: str
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        text = (
            f"{self.name} [{self.dtype}]: {verdict}, max abs err {self.max_abs_err:.2e}, "
            f"max rel err {self.max_rel_err:.2e} (rtol {self.rtol:g}), "
            f"finite differences {self.finite_differences}"
        )
        worst = [
            f"{leaf} rel {e['rel']:.2e}" for leaf, e in self.leaves.items() if e["rel"] > self.rtol
        ]
        if worst:
            text += "; over tolerance: " + ", ".join(worst)
        return text + (f"; {self.error}" if self.error else "")


# ----------------------------------------------------------------------------- the point


def _x64(dtype: str):
    """A context that enables 64-bit types when `dtype` is float64."""
    return jax.enable_x64(dtype == "float64")


def _check_dtype(dtype: Any) -> str:
    dtype = str(jnp.dtype(dtype)) if not isinstance(dtype, str) else dtype
    choose("check dtype", dtype, dict.fromkeys(DTYPES))
    return dtype


def _rngs(key: int | jax.Array) -> tuple[np.random.Generator, jax.Array]:
    """A numpy generator (params, inputs, cotangents, directions) and a PRNG key (`init`
    with `at_init`, `make_input`) from one seed or key."""
    if isinstance(key, int):
        return np.random.default_rng(key), jax.random.PRNGKey(key)
    data = np.asarray(
        jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    )
    return np.random.default_rng(data.astype(np.uint64).ravel().tolist()), key


def draw_params(shapes: Any, rng: np.random.Generator) -> Any:
    """Params in general position, shaped like `shapes` (arrays or `ShapeDtypeStruct`s):
    N(0, 1/fan_in) for leaves of two or more axes, U(0.5, 1.5) for the others; integer
    leaves are zeros."""

    def one(leaf):
        shape, dtype = tuple(leaf.shape), np.dtype(leaf.dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            return np.zeros(shape, dtype)
        if len(shape) >= 2:
            fan_in = math.prod(shape[:-1])
            return (rng.standard_normal(shape) / math.sqrt(max(fan_in, 1))).astype(dtype)
        return rng.uniform(0.5, 1.5, shape).astype(dtype)

    return jax.tree.map(one, shapes)


def _like(tree: Any, rng: np.random.Generator) -> Any:
    """N(0, 1) draws shaped like every floating leaf of `tree` (zeros of float0 for the
    others: no direction for integers)."""

    def one(leaf):
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            return np.zeros(np.shape(leaf), jax.dtypes.float0)
        return rng.standard_normal(np.shape(leaf)).astype(leaf.dtype)

    return jax.tree.map(one, tree)


def _step(tree: Any, direction: Any, eps: float) -> Any:
    """`tree + eps·direction` on floating leaves; integer leaves as they are."""

    def one(a, d):
        if d.dtype == jax.dtypes.float0:
            return a
        return a + jnp.asarray(eps, a.dtype) * d

    return jax.tree.map(one, tree, direction)


def _inner(a: Any, b: Any) -> float:
    """Σ over floating leaves of ⟨a, b⟩, in float64 on the host."""
    total = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if np.asarray(x).dtype == jax.dtypes.float0 or np.asarray(y).dtype == jax.dtypes.float0:
            continue
        total += float(np.vdot(np.asarray(x, np.float64), np.asarray(y, np.float64)))
    return total


# ----------------------------------------------------------------------------- comparing


def _leaf_label(path) -> str:
    """A leaf's path as the report names it: `params[0]['W']`, `x`."""
    return re.sub(r"^\['(\w+)'\]", r"\1", jax.tree_util.keystr(path))


def _is_real(x) -> bool:
    return x.dtype != jax.dtypes.float0 and np.size(x) > 0


def _compare(manual, reference) -> tuple[dict[str, dict[str, float]], str]:
    """Per-leaf errors between two pytrees; a structural problem is returned as text."""
    m_leaves, m_def = jax.tree_util.tree_flatten_with_path(manual)
    r_leaves, r_def = jax.tree_util.tree_flatten_with_path(reference)
    if m_def != r_def:
        return {}, f"gradient tree structure {m_def} differs from the expected {r_def}"
    errors = {}
    overall = max(
        (float(np.max(np.abs(np.asarray(r, np.float64)))) for _, r in r_leaves if _is_real(r)),
        default=0.0,
    )
    for (path, m), (_, r) in zip(m_leaves, r_leaves, strict=True):
        label = _leaf_label(path)
        if r.dtype == jax.dtypes.float0:  # the input was integer: no derivative exists
            if m.dtype != jax.dtypes.float0 or m.shape != r.shape:
                return errors, (
                    f"{label}: expected a float0 zero cotangent of shape {r.shape} for an "
                    f"integer input, got dtype {m.dtype} shape {m.shape}"
                )
            continue
        if m.shape != r.shape:
            return errors, f"{label}: gradient shape {m.shape}, expected {r.shape}"
        m, r = np.asarray(m), np.asarray(r)
        if m.size == 0:
            errors[label] = {"abs": 0.0, "rel": 0.0}
            continue
        diff = np.abs(m.astype(np.float64) - r.astype(np.float64))
        abs_err = float(np.max(diff))
        scale = max(float(np.max(np.abs(r.astype(np.float64)))), LEAF_SCALE_FLOOR * overall)
        rel_err = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else math.inf)
        if not np.isfinite(abs_err):
            abs_err = rel_err = math.inf
        errors[label] = {"abs": abs_err, "rel": rel_err}
    return errors, ""


def _structure(manual, reference) -> str:
    """A structural difference between two trees of shapes (`jax.eval_shape`), or ""."""
    m_leaves, m_def = jax.tree_util.tree_flatten_with_path(manual)
    r_leaves, r_def = jax.tree_util.tree_flatten_with_path(reference)
    if m_def != r_def:
        return f"gradient tree structure {m_def} differs from the expected {r_def}"
    for (path, m), (_, r) in zip(m_leaves, r_leaves, strict=True):
        label = _leaf_label(path)
        if r.dtype == jax.dtypes.float0 and (m.dtype != jax.dtypes.float0 or m.shape != r.shape):
            return (
                f"{label}: expected a float0 zero cotangent of shape {r.shape} for an "
                f"integer input, got dtype {m.dtype} shape {m.shape}"
            )
        if m.shape != r.shape:
            return f"{label}: gradient shape {m.shape}, expected {r.shape}"
    return ""


def _finite_differences(analytic: float, numeric: float) -> str:
    """The verdict of the directional check `⟨v, backward(dy)⟩` against differences."""
    if abs(analytic - numeric) <= FD_TOL + FD_TOL * abs(numeric) and math.isfinite(analytic):
        return "passed"
    return (
        f"failed: along a random direction the hand-written backward gives {analytic:.6e}, "
        f"central differences {numeric:.6e}"
    )


def _result(name, dtype, rtol, manual, reference, fd) -> CheckResult:
    rtol = DEFAULT_RTOL[dtype] if rtol is None else rtol
    leaves, error = _compare(manual, reference)
    max_abs = max((e["abs"] for e in leaves.values()), default=0.0)
    max_rel = max((e["rel"] for e in leaves.values()), default=0.0)
    if error:
        max_abs = max_rel = math.inf
    passed = not error and max_rel <= rtol and not fd.startswith("failed")
    return CheckResult(name, dtype, max_abs, max_rel, rtol, passed, leaves, fd, error)


def _raised(name, dtype, rtol, error) -> CheckResult:
    """A failed result for a backward (or forward) that raised instead of returning."""
    message = str(error).split("\n")[0]
    rtol = DEFAULT_RTOL[dtype] if rtol is None else rtol
    error = f"raised {type(error).__name__}: {message}"
    return CheckResult(name, dtype, math.inf, math.inf, rtol, False, {}, "not run", error)


def _label(grads):
    """Names the two halves of a layer's VJP for the report: params[...] and x."""
    dparams, dx = grads
    return {"params": dparams, "x": dx}


# ----------------------------------------------------------------------------- checks


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
      finite_differences: also check against finite differences (float64 only).
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
        rng, jax_key = _rngs(key)
        dt = jnp.dtype(dtype)
        in_shape = tuple(in_shape)
        init_key, input_key = jax.random.split(jax_key)
        try:
            if at_init:
                params = layer.init(init_key, in_shape, dt)[1]
            else:
                shapes = jax.eval_shape(lambda k: layer.init(k, in_shape, dt)[1], init_key)
                params = draw_params(shapes, rng)
            if make_input is None:
                x = (input_scale * rng.standard_normal((batch, *in_shape))).astype(dt)
            else:
                x = jnp.asarray(make_input(input_key, (batch, *in_shape), dt))
            ctx = ctx(params) if callable(ctx) else ctx

            def both(params, x, dy, ctx):
                _, residuals = forward(layer, params, x, ctx)
                manual = layer.backward(params, residuals, dy)
                _, vjp = jax.vjp(lambda p, x: forward(layer, p, x, ctx)[0], params, x)
                return manual, vjp(dy)

            y = jax.eval_shape(lambda p, x, c: forward(layer, p, x, c)[0], params, x, ctx)
            dy = rng.standard_normal(y.shape).astype(y.dtype)
            shapes = jax.eval_shape(both, params, x, dy, ctx)  # a wrong structure: no compile
        except (TypeError, ValueError) as error:  # e.g. a missing key, a misshapen backward
            return _raised(name, dtype, rtol, error)
        problem = _structure(*(_label(s) for s in shapes))
        fd = finite_differences and dtype == "float64" and not problem
        v = _like((params, x), rng)

        @jax.jit  # ONE compiled program per check: compiles are what a check costs
        def program(params, x, dy, ctx, v):
            manual, reference = both(params, x, dy, ctx)
            if not fd:
                return manual, reference, None
            f = lambda p, x: forward(layer, p, x, ctx)[0]  # noqa: E731
            jv = (f(*_step((params, x), v, FD_EPS)) - f(*_step((params, x), v, -FD_EPS))) / (
                2 * FD_EPS
            )  # J·v by central differences
            return manual, reference, jv

        manual, reference, jv = jax.device_get(program(params, x, dy, ctx, v))
        verdict = _verdict(finite_differences, dtype, problem)
        if jv is not None:
            verdict = _finite_differences(_inner(v, manual), _inner(dy, jv))
        return _result(name, dtype, rtol, _label(manual), _label(reference), verdict)


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

    `pred` and floating `target` are cast to `dtype`; integer targets (labels) stay.
    """
    dtype = _check_dtype(dtype)
    name = name or loss.name
    with _x64(dtype):
        rng = np.random.default_rng(key)
        pred = jnp.asarray(pred, jnp.dtype(dtype))
        target = jnp.asarray(target)
        if jnp.issubdtype(target.dtype, jnp.floating):
            target = target.astype(jnp.dtype(dtype))
        fd = finite_differences and dtype == "float64"
        v = _like(pred, rng)

        @jax.jit
        def program(pred, target, v):
            value, residuals = loss.forward(pred, target)
            manual = loss.backward(residuals, jnp.ones_like(value))
            reference = jax.grad(lambda p: loss.forward(p, target)[0])(pred)
            if not fd:
                return manual, reference, None
            f = lambda p: loss.forward(p, target)[0]  # noqa: E731
            return manual, reference, (f(pred + FD_EPS * v) - f(pred - FD_EPS * v)) / (2 * FD_EPS)

        try:
            manual, reference, jv = jax.device_get(program(pred, target, v))
        except (TypeError, ValueError) as error:
            return _raised(name, dtype, rtol, error)
        verdict = _verdict(finite_differences, dtype, "")
        if jv is not None and np.shape(manual) == np.shape(pred):
            verdict = _finite_differences(_inner(v, manual), float(jv))
        return _result(name, dtype, rtol, {"pred": manual}, {"pred": reference}, verdict)


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
        rng, jax_key = _rngs(key)
        x = jnp.asarray(x, jnp.dtype(dtype))
        y = jnp.asarray(y)
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

        @jax.jit
        def program(params, x, y, ctx):
            return manual_fn(params, x, y, ctx)[1], autodiff_fn(params, x, y, ctx)[1]

        manual, reference = jax.device_get(program(params, x, y, ctx))
        fd = "skipped (whole-model check compares the two modes)"
        return _result(
            name or f"{net.name} + {loss.name}",
            dtype,
            rtol,
            {"params": manual},
            {"params": reference},
            fd,
        )

"""Verification of hand-written backward passes.

Each check compares a hand-written derivative with JAX's own:

- **against `jax.vjp`**: the layer's `backward(params, residuals, dy)` with
  `jax.vjp(forward)(dy)` on random params, inputs and cotangents, leaf by leaf;
- **against finite differences**: `jax.test_util.check_grads` on the custom_vjp bridge
  (so the derivative it differences against is the hand-written one), float64 only.

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
import jax.test_util
import numpy as np

from fnn import activations as A
from fnn import conv as C
from fnn import initializers, losses
from fnn.attention import multi_head_attention
from fnn.core import Ctx, Layer, Loss, choose, forward, init_state
from fnn.dropout import dropout
from fnn.embedding import embedding, positional_embedding
from fnn.grad import as_custom_vjp, loss_as_custom_vjp, value_and_grad
from fnn.layers import dense
from fnn.network import mlp, residual, serial
from fnn.normalization import batch_norm, layer_norm

DEFAULT_RTOL = {"float64": 1e-10, "float32": 1e-4}
DTYPES = tuple(DEFAULT_RTOL)


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


def _x64(dtype: str):
    """A context that enables 64-bit types when `dtype` is float64."""
    return jax.enable_x64(dtype == "float64")


def _as_key(key) -> jax.Array:
    return jax.random.PRNGKey(key) if isinstance(key, int) else key


LEAF_SCALE_FLOOR = 1e-2  # a leaf's error is relative to at least 1e-2 × the largest leaf


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
        label = re.sub(r"^\['(\w+)'\]", r"\1", jax.tree_util.keystr(path))  # params['W']
        if r.dtype == jax.dtypes.float0:  # the input was integer: no derivative exists
            if m.dtype != jax.dtypes.float0 or m.shape != r.shape:
                return errors, (
                    f"{label}: expected a float0 zero cotangent of shape {r.shape} for an "
                    f"integer input, got dtype {m.dtype} shape {m.shape}"
                )
            continue
        m, r = np.asarray(m), np.asarray(r)
        if m.shape != r.shape:
            return errors, f"{label}: gradient shape {m.shape}, expected {r.shape}"
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


def _finite_differences(f: Callable, args: tuple, dtype: str) -> str:
    if dtype != "float64":
        return "skipped (float64 only)"
    try:
        jax.test_util.check_grads(f, args, order=1, modes=("rev",))
    except AssertionError as error:
        first = next((line for line in str(error).splitlines() if line.strip()), "")
        return f"failed: {first.strip()}"
    except (TypeError, ValueError) as error:  # a backward JAX refuses (wrong structure)
        return f"failed: raised {type(error).__name__}"
    return "passed"


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


def _check_dtype(dtype: str) -> str:
    dtype = str(jnp.dtype(dtype)) if not isinstance(dtype, str) else dtype
    choose("check dtype", dtype, dict.fromkeys(DTYPES))
    return dtype


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
) -> CheckResult:
    """Checks `layer.backward` against `jax.vjp` of `layer.forward` and finite differences.

    Arguments:
      layer: any Layer, a whole network included.
      in_shape: the input shape without the batch axis.
      batch: the batch size of the random input.
      dtype: "float64" (the default; 64-bit types are enabled for the check only) or
        "float32".
      key: a PRNG key or an int seed for the params, the input and the cotangent.
      rtol: the relative tolerance (default 1e-10 in float64, 1e-4 in float32).
      input_scale: the input is `input_scale × N(0, 1)`.
      name: the name in the report (default: `layer.name`).
      finite_differences: also run `jax.test_util.check_grads` (float64 only).
      make_input: `make_input(key, shape, dtype) -> x`, the input generator (default
        `input_scale × N(0, 1)`), e.g. integer token ids for an embedding:
        `lambda key, shape, dtype: jax.random.randint(key, shape, 0, vocab)`. For an
        integer input the layer's `dx` must be float0 zeros of the input's shape (what
        `jax.vjp` returns for integer arguments), and finite differences perturb only
        the params.
      ctx: for a random or stateful layer, the `fnn.Ctx` its forward gets (fixed during
        the check: the same key, the same state), or a function `ctx(params) -> Ctx`
        (e.g. running statistics from `fnn.init_state`). Default: evaluation, `Ctx()`.
    """
    dtype = _check_dtype(dtype)
    with _x64(dtype):
        k_init, k_x, k_dy = jax.random.split(_as_key(key), 3)
        _, params = layer.init(k_init, tuple(in_shape), jnp.dtype(dtype))
        if make_input is None:
            x = input_scale * jax.random.normal(k_x, (batch, *in_shape), jnp.dtype(dtype))
        else:
            x = jnp.asarray(make_input(k_x, (batch, *in_shape), jnp.dtype(dtype)))
        if callable(ctx):
            ctx = ctx(params)

        def run(params, x, ctx):
            return forward(layer, params, x, ctx)

        try:
            y_shape = jax.eval_shape(lambda p, x, c: run(p, x, c)[0], params, x, ctx)
        except (TypeError, ValueError) as error:  # e.g. a missing key or state
            return _raised(name or layer.name, dtype, rtol, error)
        dy = jax.random.normal(k_dy, y_shape.shape, y_shape.dtype)

        @jax.jit  # one compiled program per item: much faster than op-by-op dispatch
        def both(params, x, dy, ctx):
            _, residuals = run(params, x, ctx)
            manual = layer.backward(params, residuals, dy)
            _, vjp = jax.vjp(lambda p, x: run(p, x, ctx)[0], params, x)
            return manual, vjp(dy)

        try:
            manual, reference = both(params, x, dy, ctx)
        except (TypeError, ValueError) as error:  # e.g. a backward with a wrong shape
            return _raised(name or layer.name, dtype, rtol, error)
        fd = "skipped (disabled)"
        if finite_differences:
            bridge = jax.jit(as_custom_vjp(layer, ctx))
            if jnp.issubdtype(x.dtype, jnp.inexact):
                fd = _finite_differences(bridge, (params, x), dtype)
            else:  # integer inputs have no derivative: difference the params alone
                fd = _finite_differences(lambda p: bridge(p, x), (params,), dtype)
        return _result(name or layer.name, dtype, rtol, _label(manual), _label(reference), fd)


def _label(grads):
    """Names the two halves of a layer's VJP for the report: params[...] and x."""
    dparams, dx = grads
    return {"params": dparams, "x": dx}


def check_loss(
    loss: Loss,
    pred: Any,
    target: Any,
    *,
    dtype: str = "float64",
    rtol: float | None = None,
    name: str | None = None,
    finite_differences: bool = True,
) -> CheckResult:
    """Checks `loss.backward` against `jax.grad` of `loss.forward` (in `pred`).

    `pred` and floating `target` are cast to `dtype`; integer targets (labels) stay.
    """
    dtype = _check_dtype(dtype)
    with _x64(dtype):
        pred = jnp.asarray(pred, jnp.dtype(dtype))
        target = jnp.asarray(target)
        if jnp.issubdtype(target.dtype, jnp.floating):
            target = target.astype(jnp.dtype(dtype))

        @jax.jit
        def both(pred, target):
            value, residuals = loss.forward(pred, target)
            manual = loss.backward(residuals, jnp.ones_like(value))
            return manual, jax.grad(lambda p: loss.forward(p, target)[0])(pred)

        try:
            manual, reference = both(pred, target)
        except (TypeError, ValueError) as error:
            return _raised(name or loss.name, dtype, rtol, error)
        fd = "skipped (disabled)"
        if finite_differences:
            bridge = jax.jit(loss_as_custom_vjp(loss))
            fd = _finite_differences(lambda p: bridge(p, target), (pred,), dtype)
        return _result(name or loss.name, dtype, rtol, {"pred": manual}, {"pred": reference}, fd)


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
) -> CheckResult:
    """Checks `value_and_grad(net, loss, "manual")` against the "autodiff" mode on data.

    This is the check a training run makes before it starts: the gradient of the whole
    objective, network and loss together, on real inputs `x` and targets `y`. `ctx` is
    as in `check_layer` (e.g. `lambda params: fnn.Ctx(True, key, fnn.init_state(net,
    params))` for a network with dropout and batch_norm, in training mode).
    """
    dtype = _check_dtype(dtype)
    with _x64(dtype):
        x = jnp.asarray(x, jnp.dtype(dtype))
        y = jnp.asarray(y)
        if jnp.issubdtype(y.dtype, jnp.floating):
            y = y.astype(jnp.dtype(dtype))
        _, params = net.init(_as_key(key), x.shape[1:], jnp.dtype(dtype))
        if callable(ctx):
            ctx = ctx(params)
        _, manual = jax.jit(value_and_grad(net, loss, "manual"))(params, x, y, ctx)
        _, reference = jax.jit(value_and_grad(net, loss, "autodiff"))(params, x, y, ctx)
        fd = "skipped (whole-model check compares the two modes)"
        return _result(
            name or f"{net.name} + {loss.name}",
            dtype,
            rtol,
            {"params": manual},
            {"params": reference},
            fd,
        )


# ---------------------------------------------------------------------------
# The built-in items: every layer, activation and loss, and a few networks.


def _layer_case(layer_fn, in_shape, **kwargs):
    def run(dtype, finite_differences=True):
        return check_layer(
            layer_fn(), in_shape, dtype=dtype, finite_differences=finite_differences, **kwargs
        )

    return run


def _loss_case(loss_fn, make_inputs):
    def run(dtype, finite_differences=True):
        pred, target = make_inputs(np.random.default_rng(0))
        return check_loss(
            loss_fn(), pred, target, dtype=dtype, finite_differences=finite_differences
        )

    return run


def _tutorial_net() -> Layer:
    """The tutorial's 100→5→4→1 all-sigmoid network with its U(0, 1)×0.01 weights."""
    return mlp(
        [5, 4, 1],
        "sigmoid",
        output_activation="sigmoid",
        w_init=initializers.uniform(0.01),
        b_init="zeros",
    )


def _tutorial_model(dtype, finite_differences=True):
    del finite_differences  # the whole-model check compares the two gradient modes
    rng = np.random.default_rng(0)
    x, y = rng.random((200, 100)), rng.random((200, 1))
    net = mlp([5, 4, 1], "sigmoid", w_init=initializers.uniform(0.01))
    return check_model(
        net, losses.sigmoid_binary_cross_entropy(), x, y, dtype=dtype, name="tutorial_model"
    )


def _regression(rng, shape=(6, 3)):
    return rng.normal(size=shape), rng.normal(size=shape)


def _binary_probs(rng, shape=(6, 2)):
    return rng.uniform(0.05, 0.95, size=shape), rng.random(shape)


def _binary_logits(rng, shape=(6, 2)):
    return 3 * rng.normal(size=shape), rng.random(shape)


def _labels(rng, shape=(6, 5)):
    return 2 * rng.normal(size=shape), rng.integers(0, shape[-1], size=shape[:-1])


def _onehot(rng, shape=(6, 5)):
    logits, labels = _labels(rng, shape)
    return logits, np.eye(shape[-1])[labels]


def _soft(rng, shape=(6, 5)):
    t = rng.random(shape)
    return 2 * rng.normal(size=shape), t / t.sum(-1, keepdims=True)


# Convolution, pooling and flatten on small NHWC (NWC) inputs: (factory, in_shape).
CONV_LAYERS: dict[str, tuple[Callable[[], Layer], tuple[int, ...]]] = {
    "conv2d": (lambda: C.conv2d(3, 3), (6, 6, 2)),
    "conv2d_stride2": (lambda: C.conv2d(3, 3, stride=2), (6, 6, 2)),
    "conv2d_valid_stride2_odd": (lambda: C.conv2d(3, 3, stride=2, padding="VALID"), (6, 7, 2)),
    "conv2d_dilation2": (lambda: C.conv2d(3, 3, dilation=2), (6, 6, 2)),
    "conv2d_explicit_padding": (
        lambda: C.conv2d(3, (3, 2), stride=(2, 1), padding=((1, 2), (0, 1))),
        (6, 6, 2),
    ),
    "conv2d_valid_no_bias": (lambda: C.conv2d(3, 3, padding="VALID", use_bias=False), (6, 6, 2)),
    "conv1d": (lambda: C.conv1d(3, 3), (7, 2)),
    "conv1d_stride2_valid_dilation2": (
        lambda: C.conv1d(3, 3, stride=2, padding="VALID", dilation=2),
        (9, 2),
    ),
    "max_pool": (lambda: C.max_pool(2), (6, 6, 2)),
    "max_pool_3x3_stride1_same": (lambda: C.max_pool(3, 1, "SAME"), (5, 6, 2)),
    "max_pool_1d": (lambda: C.max_pool((3,), 2, "SAME"), (7, 2)),
    "avg_pool": (lambda: C.avg_pool(2), (6, 6, 2)),
    "avg_pool_3x3_stride2_same": (lambda: C.avg_pool(3, 2, "SAME"), (6, 5, 2)),
    "flatten": (C.flatten, (4, 3, 2)),
    "cnn": (lambda: C.cnn(3, channels=(2, 3), strides=(1, 2), hidden=(4,)), (6, 6, 1)),
}

# Layer normalisation and the residual combinator: (factory, in_shape).
NORM_AND_RESIDUAL_LAYERS: dict[str, tuple[Callable[[], Layer], tuple[int, ...]]] = {
    "layer_norm": (layer_norm, (5,)),
    "layer_norm_3d_input": (layer_norm, (2, 5)),
    "layer_norm_no_scale_no_bias": (lambda: layer_norm(use_scale=False, use_bias=False), (5,)),
    "residual_mlp": (lambda: residual(serial(dense(5), A.tanh(), dense(5))), (5,)),
    "residual_layer_norm": (lambda: residual(layer_norm()), (2, 5)),
}


def _token_ids(vocab: int):
    """A `make_input` drawing integer token ids in [0, vocab)."""
    return lambda key, shape, dtype: jax.random.randint(key, shape, 0, vocab)


# Sequence layers: (factory, in_shape, make_input or None for floating inputs).
SEQUENCE_LAYERS: dict[str, tuple[Callable[[], Layer], tuple[int, ...], Callable | None]] = {
    "embedding": (lambda: embedding(7, 3), (6,), _token_ids(7)),
    "embedding_2d_ids": (lambda: embedding(5, 4), (2, 3), _token_ids(5)),
    "positional_embedding": (positional_embedding, (5, 4), None),
    "multi_head_attention": (lambda: multi_head_attention(1), (3, 4), None),
    "multi_head_attention_causal": (lambda: multi_head_attention(2, causal=True), (5, 4), None),
    "attention_4_heads_causal_no_bias": (
        lambda: multi_head_attention(4, causal=True, use_bias=False),
        (3, 8),
        None,
    ),
    "transformer_block": (
        lambda: serial(
            embedding(6, 4),
            positional_embedding(),
            residual(serial(layer_norm(), multi_head_attention(2, causal=True))),
            residual(serial(layer_norm(), dense(8), A.gelu(), dense(4))),
            dense(6),
        ),
        (5,),
        _token_ids(6),
    ),
}


def _running_stats(layer_fn):
    """A `ctx(params)` for evaluation mode with running statistics away from 0 and 1
    (mean 0.3, variance 2.5 in every batch_norm), so that the check sees them used."""

    def moved(path, v):
        return jnp.full_like(v, 2.5 if jax.tree_util.keystr(path).endswith("['var']") else 0.3)

    def ctx(params):
        state = init_state(layer_fn(), params)
        return Ctx(state=jax.tree_util.tree_map_with_path(moved, state))

    return ctx


def _training(layer_fn, seed=0):
    """A `ctx(params)` for training mode: a fixed dropout key and the initial state."""
    return lambda params: Ctx(True, jax.random.PRNGKey(seed), init_state(layer_fn(), params))


def _bn_mlp() -> Layer:
    return mlp([6, 5, 3], "tanh", batch_norm=True, dropout=0.2)


def _bn_cnn() -> Layer:
    return C.cnn(3, channels=(2, 3), strides=(1, 2), hidden=(4,), batch_norm=True)


# Stateful and random layers in both modes: (factory, in_shape, check_layer kwargs).
STATEFUL_LAYERS: dict[str, tuple[Callable[[], Layer], tuple[int, ...], dict]] = {
    "batch_norm_train": (batch_norm, (5,), {"ctx": Ctx(train=True), "batch": 6}),
    "batch_norm_train_nhwc": (batch_norm, (3, 3, 2), {"ctx": Ctx(train=True)}),
    "batch_norm_no_scale_train": (
        lambda: batch_norm(use_scale=False),
        (5,),
        {"ctx": Ctx(train=True), "batch": 6},
    ),
    "batch_norm_eval": (batch_norm, (5,), {"ctx": _running_stats(batch_norm)}),
    "dropout_train": (lambda: dropout(0.3), (2, 7), {"ctx": _training(lambda: dropout(0.3))}),
    "dropout_eval": (lambda: dropout(0.3), (7,), {}),
    "mlp_batch_norm_dropout_train": (_bn_mlp, (4,), {"ctx": _training(_bn_mlp), "batch": 6}),
    "mlp_batch_norm_dropout_eval": (_bn_mlp, (4,), {"ctx": _running_stats(_bn_mlp)}),
    "cnn_batch_norm_train": (_bn_cnn, (6, 6, 1), {"ctx": _training(_bn_cnn)}),
}

BUILTIN_CHECKS: dict[str, Callable[[str, bool], CheckResult]] = {
    "dense": _layer_case(lambda: dense(3), (5,)),
    "dense_no_bias": _layer_case(lambda: dense(3, use_bias=False), (5,)),
    "dense_3d_input": _layer_case(lambda: dense(3), (2, 5)),
    **{name: _layer_case(factory, (7,)) for name, factory in A.ACTIVATIONS.items()},
    "mean_squared_error": _loss_case(losses.mean_squared_error, _regression),
    "huber": _loss_case(losses.huber, lambda rng: _regression(rng, (8, 2))),
    "binary_cross_entropy": _loss_case(losses.binary_cross_entropy, _binary_probs),
    "sigmoid_binary_cross_entropy": _loss_case(losses.sigmoid_binary_cross_entropy, _binary_logits),
    "softmax_cross_entropy_labels": _loss_case(losses.softmax_cross_entropy, _labels),
    "softmax_cross_entropy_onehot": _loss_case(losses.softmax_cross_entropy, _onehot),
    "softmax_cross_entropy_soft": _loss_case(losses.softmax_cross_entropy, _soft),
    "tutorial_net": _layer_case(_tutorial_net, (100,), batch=8, input_scale=1.0),
    **{
        f"mlp_{name}": _layer_case(lambda name=name: mlp([6, 5, 3], name), (4,))
        for name in A.ACTIVATIONS
        if name != "identity"
    },
    "serial_dense_softmax": _layer_case(lambda: serial(dense(4), A.softmax()), (3,)),
    **{name: _layer_case(factory, shape) for name, (factory, shape) in CONV_LAYERS.items()},
    **{
        name: _layer_case(factory, shape)
        for name, (factory, shape) in NORM_AND_RESIDUAL_LAYERS.items()
    },
    **{
        name: _layer_case(factory, shape, **kwargs)
        for name, (factory, shape, kwargs) in STATEFUL_LAYERS.items()
    },
    **{
        name: _layer_case(factory, shape, make_input=make_input)
        for name, (factory, shape, make_input) in SEQUENCE_LAYERS.items()
    },
    "tutorial_model": _tutorial_model,
}


def run_checks(
    names: Sequence[str] | None = None,
    dtype: str = "float64",
    *,
    finite_differences: bool = True,
) -> list[CheckResult]:
    """Runs the built-in checks named (all when `names` is empty or None); with
    `finite_differences=False` only against `jax.vjp` (much faster)."""
    names = list(names) if names else list(BUILTIN_CHECKS)
    runs = [choose("check", name, BUILTIN_CHECKS) for name in names]
    return [
        dataclasses.replace(run(dtype, finite_differences), name=name)
        for name, run in zip(names, runs, strict=True)
    ]


def format_table(results: Sequence[CheckResult]) -> str:
    """A plain-text table of results, one line per item."""
    header = f"{'name':<32} {'dtype':<8} {'max abs err':>12} {'max rel err':>12}  {'fd':<8} result"
    lines = [header, "-" * len(header)]
    for r in results:
        fd = r.finite_differences.split(":")[0].split(" ")[0]
        lines.append(
            f"{r.name:<32} {r.dtype:<8} {r.max_abs_err:>12.2e} {r.max_rel_err:>12.2e}  "
            f"{fd:<8} {'ok' if r.passed else 'FAIL'}"
        )
        if r.error:
            lines.append(f"    {r.error}")
        elif r.finite_differences.startswith("failed"):
            lines.append(f"    finite differences {r.finite_differences}")
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)

"""Every built-in forward against an independent reference: `check_forward`,
`check_forwards`.

The gradient checks (`fnn.check.checker`) compare a hand-written backward with JAX's
derivative of the layer's OWN forward, so a forward that computes the wrong function
(gelu with a wrong constant, elu's negative branch off by a factor, an average pool
dividing by the wrong count) passes them. This module holds the other half: each
catalogue item (`fnn.check.CASES`) is mapped in `REFERENCES` to a formula written from
the layer's definition with `jax.numpy`, `jax.lax` and `jax.nn`, never by calling fnn
(fnn/check/reference_formulas.py), and `check_forward(name)` runs fnn's forward and the
reference on the point the catalogue's gradient check draws (the same params in general
position, the same input, key and state) and compares them.

Errors: `abs = max|y − ref|` and `rel = abs / max|ref|` (norm-wise, as the gradient
checks measure). An item passes when `rel ≤ rtol`: 1e-12 in float64, 1e-5 in float32
(both sides computed in the dtype checked). The two sides compute the same function in
other orders (the largest float64 difference among the built-ins is 3e-16, from the
blockwise attention's online softmax), so an error past a few thousand roundings is
another function: a constant rounded in its fifth digit already shows. Shapes must
agree exactly.

Items without a reference are listed, each with its reason, in `UNREFERENCED` (the whole
networks: each of their layers is an item with a reference); a test holds every item of
`CASES` to be in exactly one of the two tables, so a new item cannot be missed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn.check import reference_formulas as f
from fnn.check.catalogue import CASES, LayerCase, LossCase
from fnn.check.point import draw_params, rngs
from fnn.core import Ctx, Layer, Loss, as_array, choose, expect, forward, one_shot_jit
from fnn.errors import SettingError

# The forward tolerance: fnn's forward against its reference formula, relative (another
# meaning than the gradient tolerance, `fnn.check.report.DEFAULT_RTOL`).
FORWARD_RTOL = {"float64": 1e-12, "float32": 1e-5}


# Each catalogue item and what it must compute; a layer's `ref(params, x, ctx) -> y`, a
# loss's `ref(pred, target) -> value`. The hyperparameters are the catalogue's.
REFERENCES: dict[str, Callable] = {
    "dense": f.dense(),
    "dense_no_bias": f.dense(bias=False),
    "dense_3d_input": f.dense(),
    **{name: f.elementwise(fn) for name, fn in f.ACTIVATIONS.items()},
    "mean_squared_error": f.mean_squared_error,
    "huber": f.huber(1.0),
    "binary_cross_entropy": f.binary_cross_entropy,
    "sigmoid_binary_cross_entropy": f.sigmoid_binary_cross_entropy,
    "softmax_cross_entropy_labels": f.softmax_cross_entropy,
    "softmax_cross_entropy_onehot": f.softmax_cross_entropy,
    "softmax_cross_entropy_soft": f.softmax_cross_entropy,
    "lm_cross_entropy": f.lm_cross_entropy,
    "lm_cross_entropy_one_chunk": f.lm_cross_entropy,
    "serial_dense_softmax": f.serial_dense_softmax,
    "conv2d": f.conv(2),
    "conv2d_stride2": f.conv(2, stride=2),
    "conv2d_valid_stride2_odd": f.conv(2, stride=2, padding="VALID"),
    "conv2d_dilation2": f.conv(2, dilation=2),
    "conv2d_explicit_padding": f.conv(2, stride=(2, 1), padding=((1, 2), (0, 1))),
    "conv2d_valid_no_bias": f.conv(2, padding="VALID", bias=False),
    "conv1d": f.conv(1),
    "conv1d_stride2_valid_dilation2": f.conv(1, stride=2, padding="VALID", dilation=2),
    "max_pool": f.max_pool((2, 2)),
    "max_pool_3x3_stride1_same": f.max_pool((3, 3), 1, "SAME"),
    "max_pool_1d": f.max_pool((3,), 2, "SAME"),
    "avg_pool": f.avg_pool((2, 2)),
    "avg_pool_3x3_stride2_same": f.avg_pool((3, 3), 2, "SAME"),
    "flatten": f.flatten,
    "layer_norm": f.layer_norm(),
    "layer_norm_3d_input": f.layer_norm(),
    "layer_norm_no_scale_no_bias": f.layer_norm(scale=False, bias=False),
    "rms_norm": f.rms_norm,
    "residual_mlp": f.residual_mlp,
    "residual_layer_norm": f.residual(f.layer_norm()),
    "batch_norm_train": f.batch_norm(),
    "batch_norm_train_nhwc": f.batch_norm(),
    "batch_norm_no_scale_train": f.batch_norm(scale=False),
    "batch_norm_eval": f.batch_norm(),
    "dropout_train": f.dropout(0.3),
    "dropout_eval": f.dropout(0.3),
    "embedding": f.embedding,
    "embedding_2d_ids": f.embedding,
    "positional_embedding": f.positional_embedding,
    "multi_head_attention": f.attention(1),
    "multi_head_attention_causal": f.attention(2, causal=True),
    "attention_4_heads_causal_no_bias": f.attention(4, causal=True, bias=False),
    "flash_attention_causal": f.attention(2, causal=True),
    "flash_attention": f.attention(2),
    "gpt_block": f.gpt_block(2),
    "gpt_block_recompute_all": f.gpt_block(2),
    "gpt_block_dropout_train": f.gpt_block(2, rate=0.3),
}

_NETWORK = "a whole network: each of its layers is an item with a reference of its own"
_MODEL = "a network with its loss, checked whole on data; its layers and loss have references"
# Items deliberately without a reference, each with the reason.
UNREFERENCED: dict[str, str] = {
    "tutorial_net": _NETWORK,
    **{f"mlp_{name}": _NETWORK for name in f.ACTIVATIONS if name != "identity"},
    "cnn": _NETWORK,
    "mlp_batch_norm_dropout_train": _NETWORK,
    "mlp_batch_norm_dropout_eval": _NETWORK,
    "cnn_batch_norm_train": _NETWORK,
    "transformer_block": _NETWORK,
    "gpt": _NETWORK + " (gpt_block, embedding, layer_norm, lm_cross_entropy)",
    "gpt_fused_head": _MODEL,
    "tutorial_model": _MODEL,
}


def unaccounted(cases: dict[str, Any] | None = None) -> list[str]:
    """What the two tables miss: items of `cases` (default `CASES`) in neither
    `REFERENCES` nor `UNREFERENCED`, then names in the tables that `cases` lacks."""
    cases = CASES if cases is None else cases
    listed = {**REFERENCES, **UNREFERENCED}
    new = [f"{n} (in the catalogue, without a reference)" for n in cases if n not in listed]
    stale = [
        f"{n} (has a reference, not in the catalogue)" if n in REFERENCES
        else f"{n} (listed without a reference, not in the catalogue)"
        for n in listed
        if n not in cases
    ]  # fmt: skip
    return new + stale


@dataclasses.dataclass(frozen=True)
class ForwardResult:
    """The outcome of one forward check.

    Attributes:
      name: the catalogue item.
      dtype: "float64" or "float32".
      max_abs_err: `max|y − ref|` over the output's elements.
      max_rel_err: `max_abs_err / max|ref|`.
      rtol: the relative tolerance applied.
      passed: `max_rel_err ≤ rtol`, the shapes equal and nothing raised.
      error: why the comparison could not be made or is void (a forward, reference or
        point that raised, different shapes, a NaN or an infinity), else "".
    """

    name: str
    dtype: str
    max_abs_err: float
    max_rel_err: float
    rtol: float
    passed: bool
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        text = (
            f"{self.name} [{self.dtype}] forward against its reference: {verdict}, max abs "
            f"err {self.max_abs_err:.2e}, max rel err {self.max_rel_err:.2e} "
            f"(rtol {self.rtol:g})"
        )
        return text + (f"; {self.error}" if self.error else "")


def _cast(tree: Any, dtype: Any) -> Any:
    """Floating leaves of `tree` as `dtype`, the others (integer ids, labels) as they are
    (what `check_loss` does with its inputs)."""

    def one(leaf):
        leaf = as_array(leaf)
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree.map(one, tree)


def layer_point(case: LayerCase, dtype: str, key: int = 0) -> tuple[Layer, Any, Any, Ctx]:
    """`(layer, params, x, ctx)` as `check_layer` draws them for `case` (the params in
    general position from `draw_params`, the input from the same generator or the case's
    `make_input`, the case's ctx). Call inside the dtype's `jax.enable_x64` context."""
    layer, dt, in_shape = case.build(), jnp.dtype(dtype), tuple(case.in_shape)
    rng, jax_key = rngs(key)
    init_key, input_key = jax.random.split(jax_key)
    shapes = jax.eval_shape(lambda k: layer.init(k, in_shape, dt)[1], init_key)
    params = draw_params(shapes, rng)
    x: np.ndarray | jax.Array
    if case.make_input is None:
        x = (case.input_scale * rng.standard_normal((case.batch, *in_shape))).astype(dt)
    else:
        x = jnp.asarray(case.make_input(input_key, (case.batch, *in_shape), dt))
    ctx = case.ctx(params) if callable(case.ctx) else case.ctx
    return layer, params, x, Ctx() if ctx is None else ctx


def compare_forward(name: str, dtype: str, y: Any, ref: Any, rtol: float) -> ForwardResult:
    """The `ForwardResult` of an output `y` against its reference `ref`."""
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    if y.shape != ref.shape:
        message = f"output shape {y.shape} differs from the reference's {ref.shape}"
        return _failed(name, dtype, rtol, message)
    abs_err = float(np.max(np.abs(y - ref), initial=0.0))
    scale = float(np.max(np.abs(ref), initial=0.0))
    rel_err = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else np.inf)
    if not np.isfinite(abs_err):  # a NaN or an infinity on either side
        side = "the output" if not np.all(np.isfinite(y)) else "the reference"
        return _failed(name, dtype, rtol, f"{side} holds a NaN or an infinity")
    return ForwardResult(name, dtype, abs_err, rel_err, rtol, rel_err <= rtol)


def _failed(name: str, dtype: str, rtol: float, error: str) -> ForwardResult:
    return ForwardResult(name, dtype, np.inf, np.inf, rtol, False, error)


def _raised(where: str, error: Exception) -> str:
    """What `where` raised, on one line; a KeyError is a param the reference reads by
    another name than the layer's init gives it."""
    text = f"{where} raised {type(error).__name__}: {error}".replace("\n", " ")
    if isinstance(error, KeyError) and where == "the reference":
        text += " (it reads the params by the names the layer's init gives them)"
    return text


def _item(
    name: str, dtype: str, replacement: Layer | Loss | None
) -> tuple[Callable, Callable, Any]:
    """`(fnn_fn, ref_fn, args)`, each `fn(args) -> output`, for catalogue item `name`, its
    point drawn as its gradient check draws it (call inside the dtype's x64 context)."""
    case, ref = CASES[name], REFERENCES[name]
    if isinstance(case, LossCase):
        loss = case.build() if replacement is None else replacement
        pred, target = case.inputs(np.random.default_rng(0))
        args = (_cast(pred, jnp.dtype(dtype)), _cast(target, jnp.dtype(dtype)))
        return (lambda a: loss.forward(*a)[0]), (lambda a: ref(*a)), args
    assert isinstance(case, LayerCase), "REFERENCES holds layer and loss items only"
    built, params, x, ctx = layer_point(case, dtype)
    assert not isinstance(replacement, Loss), f"{name} is a layer: its replacement is a Layer"
    layer = built if replacement is None else replacement
    return (lambda a: forward(layer, *a)[0]), (lambda a: ref(*a)), (params, x, ctx)


def _known(name: str) -> str:
    """`name`, or an error saying why it cannot be checked."""
    if name in REFERENCES:
        return name
    if name in UNREFERENCED:
        raise SettingError(f"{name!r} has no forward reference: {UNREFERENCED[name]}")
    choose("catalogue item with a forward reference", name, REFERENCES)  # raises
    return name


def check_forwards(
    names: Sequence[str] | None = None,
    dtype: str = "float64",
    *,
    rtol: float | None = None,
    replace: dict[str, Layer | Loss] | None = None,
) -> list[ForwardResult]:
    """Checks the forward of each catalogue item named (default: every item of
    `REFERENCES`, in the catalogue's order) against its reference, on the point its
    gradient check draws, all in ONE compiled program.

    Arguments:
      names: keys of `fnn.check.CASES` that have a reference (`REFERENCES`).
      dtype: "float64" (the default; 64-bit types for the check only) or "float32".
      rtol: the relative tolerance (default `FORWARD_RTOL[dtype]`).
      replace: item name -> a Layer (a Loss for a loss item) run instead of the item's
        own on the item's point: e.g. a variant of the built-in layer with another
        forward, `layer._replace(forward=...)`.

    An item whose forward (or point, or reference) raises is a failed result carrying
    the error; the others are checked as usual.
    """
    choose("check dtype", dtype, FORWARD_RTOL)
    rtol = FORWARD_RTOL[dtype] if rtol is None else rtol
    replace = dict(replace or {})
    names = [_known(n) for n in names] if names else [n for n in CASES if n in REFERENCES]
    for name in replace:
        expect(name in names, "check_forwards", f"replace names {name!r}, not a checked item")
    failed: dict[str, ForwardResult] = {}
    with jax.enable_x64(dtype == "float64"):
        items = {}
        for name in names:
            try:
                items[name] = _item(name, dtype, replace.get(name))
            except Exception as error:  # noqa: BLE001  (a point that fails: a failed check)
                failed[name] = _failed(name, dtype, rtol, _raised("drawing the point", error))

        def program(args):
            outputs = {}
            for name, (fnn_fn, ref_fn, _) in items.items():
                where = "fnn's forward"
                try:  # an item that fails to trace is left out of the program
                    y = fnn_fn(args[name])
                    where = "the reference"
                    outputs[name] = (y, ref_fn(args[name]))
                except Exception as error:  # noqa: BLE001
                    failed[name] = _failed(name, dtype, rtol, _raised(where, error))
            return outputs

        args = {name: a for name, (_, _, a) in items.items()}
        outputs: dict[str, tuple[Any, Any]]  # name -> (fnn's output, the reference's)
        try:
            outputs = jax.device_get(one_shot_jit(program)(args))
        except Exception as error:  # noqa: BLE001  (a program that fails to compile or run)
            if len(items) > 1:  # check each item alone, to tell which one broke it
                return [
                    check_forward(n, dtype, layer=replace.get(n), rtol=rtol)
                    if n in items else failed[n]
                    for n in names
                ]  # fmt: skip
            outputs = {}
            message = _raised("the compiled program", error)
            failed.update({n: _failed(n, dtype, rtol, message) for n in items})
    return [
        failed[name] if name in failed else compare_forward(name, dtype, *outputs[name], rtol)
        for name in names
    ]


def check_forward(
    name: str,
    dtype: str = "float64",
    *,
    layer: Layer | Loss | None = None,
    rtol: float | None = None,
) -> ForwardResult:
    """Checks the forward of catalogue item `name` against its reference, in one compiled
    program, on the point its gradient check draws; `layer` (a Loss for a loss item) is
    run instead of the item's own (see `check_forwards`)."""
    replace = None if layer is None else {name: layer}
    return check_forwards([name], dtype, rtol=rtol, replace=replace)[0]


def format_forward_table(results: Sequence[ForwardResult], unreferenced: int = 0) -> str:
    """A plain-text table of forward checks, one line per item, then the totals and how
    many of the items asked for have no reference (`unreferenced`: whole networks, listed
    in `UNREFERENCED`)."""
    header = f"{'name':<32} {'dtype':<8} {'max abs err':>12} {'max rel err':>12}  result"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.name:<32} {r.dtype:<8} {r.max_abs_err:>12.2e} {r.max_rel_err:>12.2e}  "
            f"{'ok' if r.passed else 'FAIL'}"
        )
        if r.error:
            lines.append(f"    {r.error}")
    failed = sum(not r.passed for r in results)
    total = f"{len(results) - failed} passed, {failed} failed"
    if unreferenced:
        total += f"; {unreferenced} whole networks without a reference (their layers have one)"
    lines.append(total)
    return "\n".join(lines)

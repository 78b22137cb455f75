"""A network's summary: one row per layer with its output shape, parameters, forward and
backward FLOPs per example, and the residuals its hand-written backward keeps beside
what `jax.grad` keeps for the same layer; then the whole network's compiled temp memory
in both modes. Every number comes from the code: shapes and residual pytrees traced
(`jax.eval_shape`), FLOPs from XLA's cost analysis, memory from the compiled programs.

FLOPs are XLA's count of each layer's own compiled forward, and of its backward from the
kept residuals: XLA counts transcendental functions (tanh, exp, log) apart, not as
FLOPs, so an activation like tanh shows few or none.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn.bench.measure import count_vjp_residuals, memory_figures
from fnn.bench.vjp import autodiff_vjp, manual_vjp
from fnn.check.point import draw_params
from fnn.core import Ctx, Layer, SettingError, as_array, forward, init_state
from fnn.trace import walk_backward
from fnn.walk import layer_path


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One layer of a summary (all per example: divided by the batch)."""

    path: str
    name: str
    depth: int
    out_shape: tuple[int, ...]
    params: int
    forward_flops: float | None
    backward_flops: float | None
    kept_arrays: int
    kept_bytes: float
    autodiff_arrays: int
    autodiff_bytes: float


@dataclasses.dataclass(frozen=True)
class Summary:
    """A network's rows and totals; `str()` is the table `fnn summary` prints."""

    name: str
    batch: int
    dtype: str
    rows: list[LayerRow]
    total_params: int
    kept_bytes: float  # per example, the whole network's hand-written residuals, once each:
    #                    the sum of the rows' (a kept input counted where it is first kept)
    autodiff_bytes: float  # per example, what jax.grad of the whole network keeps, its input
    #                        included when kept (its rows: each layer alone, its input too)
    temp_bytes_manual: int | None  # compiled temp memory of a forward and backward
    temp_bytes_autodiff: int | None

    def __str__(self) -> str:
        head = (
            f"{'layer':<40} {'output':<16} {'params':>9} {'fwd FLOPs':>10} {'bwd FLOPs':>10} "
            f"{'kept (manual)':>16} {'kept (jax.grad)':>16}"
        )
        lines = [f"{self.name}: batch {self.batch}, {self.dtype}; per example", head]
        lines.append("-" * len(head))
        for r in self.rows:
            label = "  " * (r.depth - 1) + f"{r.path.removeprefix('net')} {r.name}"
            lines.append(
                f"{label[:40]:<40} {str(r.out_shape):<16} {r.params:>9,} "
                f"{_flops(r.forward_flops):>10} {_flops(r.backward_flops):>10} "
                f"{_kept(r.kept_arrays, r.kept_bytes):>16} "
                f"{_kept(r.autodiff_arrays, r.autodiff_bytes):>16}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'total':<40} {'':<16} {self.total_params:>9,} {'':>10} {'':>10} "
            f"{_bytes(self.kept_bytes):>16} {_bytes(self.autodiff_bytes):>16}"
        )
        lines.append(
            f"compiled temp memory of one forward and backward at batch {self.batch}: "
            f"manual {_bytes(self.temp_bytes_manual)}, jax.grad {_bytes(self.temp_bytes_autodiff)}"
        )
        return "\n".join(lines)


def _flops(n) -> str:
    return "-" if n is None else f"{n:,.0f}"


def _bytes(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _kept(arrays: int, nbytes: float) -> str:
    return f"{arrays} ({_bytes(nbytes)})"


def _cost_flops(fn, *args) -> float | None:
    try:
        analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
        if isinstance(analysis, list | tuple):
            analysis = analysis[0] if analysis else None
        return None if analysis is None else max(float(analysis.get("flops", 0.0)), 0.0)
    except Exception:  # a backend without cost analysis
        return None


def summary(
    net: Layer,
    in_shape: tuple[int, ...] | None = None,
    *,
    batch: int = 32,
    dtype: Any = "float32",
    x: Any = None,
    ctx: Ctx | None = None,
    key: int = 0,
) -> Summary:
    """Summarises `net` for inputs `(batch, *in_shape)`: see the module's docstring.

    Arguments:
      net: the network (any fnn Layer).
      in_shape: one example's shape; the inputs are standard normal draws.
      batch: examples per batch (FLOPs and residuals are reported per example).
      dtype: the params' and inputs' dtype.
      x: an example batch instead of `in_shape` and `batch` (token ids, say); its
        floating dtype overrides `dtype`.
      ctx: the `fnn.Ctx` of random and stateful layers (default: evaluation, with each
        batch_norm's initial running statistics).
      key: seeds the params (drawn at a general point, as `fnn.check` draws them).

    Returns:
      A `Summary`: one row per leaf layer, in order, nested ones indented.
    """
    rng = np.random.default_rng(key)
    if x is None:
        if in_shape is None:
            raise SettingError("summary needs in_shape or an example batch x",
                               settings=("in_shape",))  # fmt: skip
        dt = jnp.dtype(dtype)
        x = jnp.asarray(rng.standard_normal((batch, *in_shape)), dt)
    else:
        x = as_array(x)
        dt = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.dtype(dtype)
        batch, in_shape = x.shape[0], x.shape[1:]
    shapes = jax.eval_shape(lambda k: net.init(k, tuple(in_shape), dt)[1], jax.random.PRNGKey(key))
    params = jax.tree.map(jnp.asarray, draw_params(shapes, rng))
    if ctx is None and net.takes_ctx:
        ctx = Ctx(state=init_state(net, params))
    layout = _leaves(net, params, x, ctx)
    kept_by_row = _kept_by_layer(net, params, x, ctx)
    rows = []
    for indices, layer, select, x_shape in layout:
        state = () if ctx is None else _state_of(select, ctx.state)
        sub_ctx = None if ctx is None else Ctx(ctx.train, ctx.key, state)
        x_in = jnp.zeros(x_shape.shape, x_shape.dtype)
        kept = kept_by_row.get(indices, {})
        rows.append(_row(indices, layer, select(params), x_in, sub_ctx, batch, kept))
    y = jax.eval_shape(lambda p, x: forward(net, p, x, ctx)[0], params, x)
    dy = jnp.zeros(y.shape, y.dtype)
    auto = count_vjp_residuals(
        lambda p, x: forward(net, p, x, ctx)[0], dy, params, x, inputs=(1,)
    )  # the network's input counts when kept
    temp = {}
    for mode, make in (("manual", manual_vjp), ("autodiff", autodiff_vjp)):
        compiled = jax.jit(make(net)).lower(params, x, dy, ctx).compile()
        temp[mode] = memory_figures(compiled)["temp_bytes"]
    return Summary(
        name=net.name,
        batch=batch,
        dtype=dt.name,
        rows=rows,
        total_params=int(sum(math.prod(np.shape(leaf)) for leaf in jax.tree.leaves(params))),
        kept_bytes=sum(_nbytes(arrays) for arrays in kept_by_row.values()) / batch,
        autodiff_bytes=auto[1] / batch,
        temp_bytes_manual=temp["manual"],
        temp_bytes_autodiff=temp["autodiff"],
    )


def _nbytes(arrays: dict) -> int:
    return sum(math.prod(a.shape) * jnp.dtype(a.dtype).itemsize for a in arrays.values())


def _kept_by_layer(net: Layer, params, x, ctx) -> dict[tuple, dict]:
    """What the hand-written backward keeps, by leaf layer: `{path indices: {id: array
    shape}}` from ONE trace of the whole network, each array counted once, at the first
    layer (in forward order) that keeps it, its params excluded (they exist anyway). A
    layer's kept input counts (a dense layer keeps x), unless the layer before already
    kept it as its output (a sigmoid's y that the next dense keeps as its x): the rows
    then add up to what the network keeps."""
    by_path: dict[tuple, list] = {}

    def trace(params, x):
        _, residuals = forward(net, params, x, ctx)
        y = jax.eval_shape(lambda p, x: forward(net, p, x, ctx)[0], params, x)
        records = walk_backward(net, params, residuals, jnp.zeros(y.shape, y.dtype))
        skip = {id(leaf) for leaf in jax.tree.leaves(params)}
        for path, layer, *_, res in records:
            if layer.walk is None:
                leaves = [leaf for leaf in jax.tree.leaves(res)
                          if id(leaf) not in skip and math.prod(jnp.shape(leaf)) > 0]  # fmt: skip
                by_path[path] = [(id(leaf), jax.ShapeDtypeStruct(jnp.shape(leaf), leaf.dtype))
                                 for leaf in leaves]  # fmt: skip
        return ()

    jax.eval_shape(trace, params, x)
    seen: set[int] = set()
    kept: dict[tuple, dict] = {}
    for path in sorted(by_path):
        kept[path] = {}
        for ident, shape in by_path[path]:
            if ident not in seen:
                seen.add(ident)
                kept[path][ident] = shape
    return kept


def _state_of(select, state):
    """A leaf layer's share of the network's state: a chain without stateful layers
    holds `()` where its params hold a tuple, so the walk's `select` may run out."""
    try:
        return select(state)
    except (IndexError, TypeError):
        return ()


def _row(indices, layer: Layer, p, x, ctx, batch: int, kept: dict) -> LayerRow:
    """One layer's row: shapes, params, FLOPs and residuals per example (`kept`: what the
    hand-written backward keeps here, from `_kept_by_layer`)."""

    def run(p, x):
        return forward(layer, p, x, ctx)

    y = jax.eval_shape(lambda p, x: run(p, x)[0], p, x)
    dy = jnp.zeros(y.shape, y.dtype)
    auto = count_vjp_residuals(lambda p, x: run(p, x)[0], dy, p, x, inputs=(1,))
    forward_flops = _cost_flops(lambda p, x: run(p, x)[0], p, x)
    residuals = jax.eval_shape(lambda p, x: run(p, x)[1], p, x)
    backward_flops = _cost_flops(layer.backward, p, residuals, dy)  # from the kept arrays
    return LayerRow(
        path=layer_path(indices),
        name=layer.name,
        depth=len(indices),
        out_shape=tuple(y.shape[1:]),
        params=int(sum(np.size(leaf) for leaf in jax.tree.leaves(p))),
        forward_flops=None if forward_flops is None else forward_flops / batch,
        backward_flops=None if backward_flops is None else backward_flops / batch,
        kept_arrays=len(kept),
        kept_bytes=_nbytes(kept) / batch,
        autodiff_arrays=auto[0],
        autodiff_bytes=auto[1] / batch,
    )


def _leaves(net: Layer, params, x, ctx) -> list[tuple]:
    """`(path indices, layer, select, input)` of each leaf layer in forward order, from
    the hand-written backward's own walk (`fnn.trace.walk_backward`), traced: the input is
    a `ShapeDtypeStruct` (int32 where the layer's input cotangent is float0: token ids)."""
    found: list[tuple] = []

    def trace(params, x):
        _, residuals = forward(net, params, x, ctx)
        y = jax.eval_shape(lambda p, x: forward(net, p, x, ctx)[0], params, x)
        records = walk_backward(net, params, residuals, jnp.zeros(y.shape, y.dtype))
        found[:] = [(path, layer, select, dx) for path, layer, select, _, dx, *_ in records
                    if layer.walk is None]  # fmt: skip
        return ()

    jax.eval_shape(trace, params, x)
    out = []
    for path, layer, select, dx in sorted(found, key=lambda r: r[0]):
        dtype = jnp.int32 if dx.dtype == jax.dtypes.float0 else dx.dtype
        out.append((path, layer, select, jax.ShapeDtypeStruct(dx.shape, dtype)))
    return out

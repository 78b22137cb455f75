"""Benchmarks of backpropagation implementations: manual, autodiff, fused scans, numpy, peers.

A *workload* is an MLP, a loss, a batch and a number of steps; an *implementation* trains
it with plain SGD. For each (workload, dtype, implementation) the harness records:

- `step_ms_median`, `step_ms_iqr`: time per training step, over `repeats` timed units
  taken in turn with every other implementation of the workload (A/B/A/B, the order
  rotated each round) after a warm-up, each unit closed by `block_until_ready`. A unit is
  `steps_per_call` steps: that many Python calls for a dispatched step (`manual`,
  `autodiff`, `custom_vjp`, peers), one call of a `lax.scan` over that many steps for the
  fused ones (`manual_scan`, `autodiff_scan`), a Python loop for `numpy`;
- `ratio_vs_autodiff`: the median over rounds of this unit's time over the reference's
  time in the same round (`autodiff`, or `autodiff_scan` for `manual_scan`);
- `compile_s`: `lower` + `compile` of the jitted function, timed alone;
- `flops_per_s`: `6 · batch · weights` per step (forward 2, backward 4 FLOPs per weight
  and example) over the median step; `peak_flops_per_s`: the best rate of a plain matmul
  measured in the same run (a square one and the workload's largest GEMM, both timed in
  the same rotation; the best round, since a peak is what the hardware can do);
  `peak_fraction` is their ratio and `floor_ratio` its inverse (median step time over the
  FLOP floor `6·B·P ÷ peak`); `step_ms_min` is the best round's step time;
- `temp_bytes`, `argument_bytes`, `output_bytes` from `compiled.memory_analysis()`, and
  on GPU `peak_bytes_in_use` from `device.memory_stats()` (the process-wide peak so far);
- `residual_arrays`, `residual_bytes`: the arrays the backward keeps from the forward,
  other than the arguments (JAX's saved-residuals analysis of the loss: through the
  custom_vjp bridge for the manual backward, of the plain forward for autodiff);
- `hlo_gemms`, `hlo_fusions`, `hlo_ops`: counts in the compiled HLO text;
- `rel_grad_err`: `max over leaves of max|g − g_autodiff| / max|g_autodiff|` at the
  initial parameters, in the workload's dtype.

`run_benchmarks` returns the records (plain dicts); `write_results` writes
`results.json`, `results.csv`, `report.md` and the PNG charts.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import math
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn import initializers
from fnn.core import Layer, Loss
from fnn.grad import as_custom_vjp, loss_as_custom_vjp, value_and_grad
from fnn.layers import cnn, mlp, transformer
from fnn.losses import sigmoid_binary_cross_entropy, softmax_cross_entropy
from fnn.train import TrainState, make_train_step

# ---------------------------------------------------------------------------------------
# Workloads


@dataclasses.dataclass(frozen=True)
class Workload:
    """An MLP trained by SGD on one fixed batch.

    Attributes:
      name: the key used on the command line and in records.
      in_features: the input width.
      features: the dense layers' widths after the input; activations between them.
      activation: the hidden activation ("sigmoid", "tanh" or "relu").
      loss: "sigmoid_bce" (soft targets in [0, 1], shape (batch, 1)) or "softmax_ce"
        (integer labels, shape (batch,)). Both take logits.
      batch: examples per step.
      steps: steps per timed unit (the scan length of the fused implementations).
      learning_rate: the SGD step size.
      w_init: the weight initialiser ("uniform" is the tutorial's U(0, 1) × 0.01).
      description: one line for reports.
      per_example: a per-example-gradients case: only `autodiff` (the batch gradient)
        and `PER_EXAMPLE_IMPLS` run on it, and those run on nothing else.
      image: `(height, width, channels)` for a conv net (`fnn.cnn`): 3×3 SAME
        convolutions `conv` = ((channels, stride), ...) with `activation`, flatten, then
        the dense `features`; `in_features` is then `h·w·c`. Only `JAX_IMPLS` run on it.
      conv: the conv layers of an image workload.
      sequence: `(T, D, heads, ffn)` for a one-block causal transformer on token ids
        (`fnn.transformer`): embedding to width D, positional_embedding, a pre-norm
        residual multi_head_attention(heads, causal) and a residual feed-forward block
        D→ffn→D (gelu), layer_norm and dense(vocab), vocab = `features[-1]`; inputs and
        targets are `(batch, T)` ids. Only `JAX_IMPLS` run on it.
    """

    name: str
    in_features: int
    features: tuple[int, ...]
    activation: str
    loss: str
    batch: int
    steps: int
    learning_rate: float = 0.01
    w_init: str = "glorot_uniform"
    description: str = ""
    per_example: bool = False
    image: tuple[int, int, int] | None = None
    conv: tuple[tuple[int, int], ...] = ()
    sequence: tuple[int, int, int, int] | None = None

    def gemms(self) -> list[tuple[int, int, int]]:
        """(m, k, n) per layer and example, each layer as a GEMM: a dense layer is
        (1, in, out); a 3×3 SAME convolution is its im2col (out_h·out_w, 9·in, out); a
        sequence model's projections are (T, in, out) and its attention q·kᵀ and P·v are
        (T, D, T) each, summed over the heads (the full T×T, causal mask included)."""
        if self.sequence is not None:
            T, D, _, F = self.sequence
            V = self.features[-1]
            return [(T, D, 3 * D), (T, D, T), (T, D, T), (T, D, D), (T, D, F), (T, F, D), (T, D, V)]
        shapes, widths = [], [self.in_features]
        if self.image is not None:
            h, w, c = self.image
            for channels, stride in self.conv:
                h, w = -(-h // stride), -(-w // stride)  # SAME: ⌈n/s⌉
                shapes.append((h * w, 9 * c, channels))
                c = channels
            widths = [h * w * c]
        widths += self.features
        shapes += [(1, a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        return shapes

    @property
    def weights(self) -> int:
        """The number of dense and conv weights (biases excluded); for a sequence model,
        the projections' and the embedding tables'."""
        if self.sequence is not None:
            T, D, _, F = self.sequence
            V = self.features[-1]
            return 3 * D * D + D * D + 2 * D * F + D * V + V * D + T * D
        return sum(k * n for _, k, n in self.gemms())

    @property
    def params(self) -> int:
        """The number of parameters, weights and biases (and layer_norm scales)."""
        if self.sequence is not None:
            _, D, _, F = self.sequence
            return self.weights + 3 * D + D + F + D + self.features[-1] + 3 * 2 * D
        return self.weights + sum(self.features) + sum(c for c, _ in self.conv)

    @property
    def flops_per_step(self) -> int:
        """6 · batch · Σ m·k·n (6 · batch · weights for an MLP): 2 for the forward GEMMs,
        4 for the two backward ones."""
        return 6 * self.batch * sum(m * k * n for m, k, n in self.gemms())

    @property
    def largest_gemm(self) -> tuple[int, int, int]:
        """(m, k, n) of the forward GEMM with the most FLOPs (a conv's im2col for a batch)."""
        m, k, n = max(self.gemms(), key=lambda g: g[0] * g[1] * g[2])
        return self.batch * m, k, n


def _deep(name, activation, width, depth, batch, steps, description):
    return Workload(
        name,
        width,
        (width,) * depth + (10,),
        activation,
        "softmax_ce",
        batch,
        steps,
        description=description,
    )


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload(
            "tutorial",
            100,
            (5, 4, 1),
            "sigmoid",
            "sigmoid_bce",
            200,
            10_000,
            learning_rate=0.1,
            w_init="uniform",
            description="the tutorial's 100→5→4→1 sigmoid net, 200 samples, 10 000 steps",
        ),
        Workload(
            "mlp_b256",
            784,
            (1024, 1024, 10),
            "relu",
            "softmax_ce",
            256,
            10,
            description="MLP 784-1024-1024-10 relu, batch 256",
        ),
        Workload(
            "mlp_b4096",
            784,
            (1024, 1024, 10),
            "relu",
            "softmax_ce",
            4096,
            1,
            description="MLP 784-1024-1024-10 relu, batch 4096",
        ),
        *[
            _deep(
                f"deep_{act}",
                act,
                1024,
                4,
                512,
                2,
                f"4 hidden {act} layers of 1024, batch 512",
            )
            for act in ("sigmoid", "tanh", "relu")
        ],
        *[
            _deep(
                f"deep_{act}_4096",
                act,
                4096,
                4,
                4096,
                10,
                f"4 hidden {act} layers of 4096, batch 4096",
            )
            for act in ("sigmoid", "tanh", "relu")
        ],
        _deep("wide_8192x3", "relu", 8192, 3, 8192, 10, "3 hidden relu layers of 8192, batch 8192"),
        Workload(
            "tiny",
            8,
            (16, 16, 4),
            "relu",
            "softmax_ce",
            8,
            4,
            description="a tiny relu MLP for tests",
        ),
        Workload(
            "per_example",
            64,
            (256, 128, 10),
            "relu",
            "softmax_ce",
            128,
            10,
            description="per-example gradients of a digits MLP 64-256-128-10 relu, batch 128",
            per_example=True,
        ),
        Workload(
            "cnn_digits",
            64,
            (64, 10),
            "relu",
            "softmax_ce",
            256,
            10,
            description="fnn train's cnn on digits 8x8x1: conv 16, conv 32/2, dense 64, batch 256",
            image=(8, 8, 1),
            conv=((16, 1), (32, 2)),
        ),
        Workload(
            "cnn_mnist",
            784,
            (128, 10),
            "relu",
            "softmax_ce",
            128,
            2,
            description="conv net on 28x28x1: conv 32, conv 64/2, dense 128, batch 128",
            image=(28, 28, 1),
            conv=((32, 1), (64, 2)),
        ),
        Workload(
            "cnn_mnist_b1024",
            784,
            (128, 10),
            "relu",
            "softmax_ce",
            1024,
            10,
            description="conv net on 28x28x1: conv 32, conv 64/2, dense 128, batch 1024",
            image=(28, 28, 1),
            conv=((32, 1), (64, 2)),
        ),
        Workload(
            "transformer",
            64,
            (64,),
            "gelu",
            "softmax_ce",
            16,
            5,
            description="one causal transformer block on 64 tokens: D 128, 4 heads, ffn 512, "
            "vocab 64, batch 16",
            sequence=(64, 128, 4, 512),
        ),
        Workload(
            "transformer_512",
            512,
            (1024,),
            "gelu",
            "softmax_ce",
            32,
            10,
            description="one causal transformer block on 512 tokens: D 512, 8 heads, ffn 2048, "
            "vocab 1024, batch 32",
            sequence=(512, 512, 8, 2048),
        ),
    ]
}

CPU_WORKLOADS = (
    "tutorial",
    "mlp_b256",
    "mlp_b4096",
    "deep_sigmoid",
    "deep_tanh",
    "deep_relu",
    "per_example",
    "cnn_digits",
    "cnn_mnist",
    "transformer",
)
GPU_WORKLOADS = (
    "tutorial",
    "mlp_b256",
    "mlp_b4096",
    "deep_sigmoid_4096",
    "deep_tanh_4096",
    "deep_relu_4096",
    "wide_8192x3",
    "per_example",
    "cnn_mnist_b1024",
    "transformer_512",
)
QUICK_WORKLOADS = ("tutorial", "mlp_b256", "deep_relu", "per_example")
QUICK_STEPS = {"tutorial": 2_000}

JAX_IMPLS = ("manual", "autodiff", "manual_scan", "autodiff_scan", "custom_vjp")
PEER_IMPLS = ("equinox", "flax_nnx", "torch")
PER_EXAMPLE_IMPLS = ("per_example", "per_example_vmap")
IMPLS = (*JAX_IMPLS, "numpy", *PEER_IMPLS, *PER_EXAMPLE_IMPLS)
REFERENCE = {
    "manual_scan": "autodiff_scan",
    "autodiff_scan": "autodiff_scan",
    "per_example": "per_example_vmap",
}
PEER_MODULES = {"equinox": "equinox", "flax_nnx": "flax", "torch": "torch"}
DTYPES = ("float32", "float64", "bfloat16")


def default_dtypes(workload: str, platform_name: str) -> tuple[str, ...]:
    """float32 everywhere; float64 for the tutorial on CPU; bfloat16 on GPU for the MLPs."""
    if platform_name == "cpu":
        return ("float32", "float64") if workload == "tutorial" else ("float32",)
    return ("float32",) if workload == "tutorial" else ("float32", "bfloat16")


def scaled(workload: Workload, steps: int | None) -> Workload:
    """The workload with `steps` per unit (unchanged when None)."""
    return workload if steps is None else dataclasses.replace(workload, steps=steps)


# ---------------------------------------------------------------------------------------
# Building a workload: the fnn network, loss, data and initial parameters


@dataclasses.dataclass
class Problem:
    """A workload made concrete in one dtype: network, loss, data, params, optimiser."""

    workload: Workload
    dtype: Any
    net: Layer
    loss: Loss
    params: Any
    x: jax.Array
    y: jax.Array
    optimizer: optax.GradientTransformation
    grads: dict[str, Any] = dataclasses.field(default_factory=dict)  # by mode, memoised


def make_problem(workload: Workload, dtype: str, seed: int = 0) -> Problem:
    """Builds the network, a fixed batch and initial parameters for `workload`."""
    dt = jnp.dtype(dtype)
    if workload.sequence is not None:
        T, D, heads, F = workload.sequence
        V = workload.features[-1]
        net = transformer(V, D, heads, F)
        params = jax.jit(lambda key: net.init(key, (T,), dt)[1])(jax.random.PRNGKey(seed))
        rng = np.random.default_rng(seed)
        x = jnp.asarray(rng.integers(0, V, (workload.batch, T)), jnp.int32)
        y = jnp.asarray(rng.integers(0, V, (workload.batch, T)), jnp.int32)
        loss = softmax_cross_entropy()
        return Problem(workload, dt, net, loss, params, x, y, optax.sgd(workload.learning_rate))
    w_init = initializers.uniform(0.01) if workload.w_init == "uniform" else workload.w_init
    net = mlp(workload.features, workload.activation, w_init=w_init)
    in_shape = (workload.in_features,)
    if workload.image is not None:
        channels, strides = zip(*workload.conv, strict=True)
        net = cnn(
            workload.features[-1],
            channels=channels,
            strides=strides,
            hidden=workload.features[:-1],
            activation=workload.activation,
        )
        in_shape = workload.image
    init = jax.jit(lambda key: net.init(key, in_shape, dt)[1])  # one compile
    params = init(jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    shape = (workload.batch, *in_shape)
    if workload.loss == "sigmoid_bce":
        loss = sigmoid_binary_cross_entropy()
        x = jnp.asarray(rng.random(shape), dt)  # the tutorial's np.random.rand
        y = jnp.asarray(rng.random((workload.batch, workload.features[-1])), dt)
    elif workload.loss == "softmax_ce":
        loss = softmax_cross_entropy()
        x = jnp.asarray(rng.standard_normal(shape), dt)
        y = jnp.asarray(rng.integers(0, workload.features[-1], workload.batch), jnp.int32)
    else:
        raise ValueError(f"unknown workload loss {workload.loss!r}")
    return Problem(workload, dt, net, loss, params, x, y, optax.sgd(workload.learning_rate))


# ---------------------------------------------------------------------------------------
# Implementations: each gives a timed unit, a gradient function and compiled artefacts


@dataclasses.dataclass
class Impl:
    """One way to train a workload.

    Attributes:
      name: the impl name.
      unit: `unit(state) -> state`, `problem.workload.steps` steps, blocked until ready.
      state: the initial state passed to the first `unit`.
      grads: `grads() -> pytree` shaped like fnn's params at the initial params, or None.
      compiled: the compiled XLA executable (memory, HLO), or None.
      compile_s: seconds of lower + compile, or None.
      residuals: (arrays, bytes) kept for the backward, or None.
      kind: "dispatched", "scan", "numpy" or "peer".
      note: anything a reader should know.
    """

    name: str
    unit: Callable[[Any], Any]
    state: Any
    grads: Callable[[], Any] | None = None
    compiled: Any = None
    compile_s: float | None = None
    residuals: tuple[int, int] | None = None
    kind: str = "dispatched"
    note: str = ""


def _timed_compile(fn, *args):
    """(compiled, seconds) for `jax.jit(fn).lower(*args).compile()`."""
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def _dispatch_unit(compiled, batch, steps):
    """A unit of `steps` Python calls of a compiled step over a `TrainState`."""

    def unit(train_state):
        for _ in range(steps):
            train_state, _ = compiled(train_state, batch)
        return jax.block_until_ready(train_state)

    return unit


def repeat_step(step: Callable, steps: int) -> Callable:
    """`run(train_state, batch) -> (train_state, last_loss)`: `steps` steps of `step` on
    ONE fixed batch, fused into one `lax.scan` (one compiled call). Unlike
    `fnn.train.scan_steps`, which runs over stacked batches, nothing is stacked."""

    def run(train_state, batch):
        def body(train_state, _):
            train_state, metrics = step(train_state, batch)
            return train_state, metrics["loss"]

        train_state, losses = jax.lax.scan(body, train_state, None, length=steps)
        return train_state, losses[-1]

    return run


def _custom_vjp_step(problem: Problem) -> Callable:
    """A step whose gradient is `jax.grad` through the custom_vjp bridge."""
    net_fn = as_custom_vjp(problem.net)
    loss_fn = loss_as_custom_vjp(problem.loss)
    optimizer = problem.optimizer

    def step(train_state, batch):
        params, opt_state, state = train_state
        x, y = batch
        value, grads = jax.value_and_grad(lambda p: loss_fn(net_fn(p, x), y))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return TrainState(optax.apply_updates(params, updates), opt_state, state), {"loss": value}

    return step


def gradients(problem: Problem, mode: str) -> Any:
    """The gradient at the initial params by "manual", "autodiff" or "custom_vjp"
    (`jax.grad` through the bridge), computed once per problem."""
    if mode not in problem.grads:
        if mode == "custom_vjp":
            net_fn = as_custom_vjp(problem.net)
            loss_fn = loss_as_custom_vjp(problem.loss)
            fn = jax.grad(lambda p, x, y: loss_fn(net_fn(p, x), y))
        else:
            vg = value_and_grad(problem.net, problem.loss, mode)
            fn = lambda p, x, y: vg(p, x, y)[1]  # noqa: E731
        problem.grads[mode] = jax.jit(fn)(problem.params, problem.x, problem.y)
    return problem.grads[mode]


def count_residuals(fn: Callable, *args) -> tuple[int, int]:
    """(arrays, bytes) that reverse mode keeps from the forward of `fn(*args)`, arguments,
    constants and literals excluded, by JAX's saved-residuals analysis."""
    try:
        from jax._src.ad_checkpoint import saved_residuals

        found = saved_residuals(fn, *args)
        items = [(aval, why) for aval, why in found]
    except (ImportError, AttributeError):  # the public printer, parsed
        from jax.ad_checkpoint import print_saved_residuals

        buffer = io.StringIO()
        with redirect_stdout(buffer):
            print_saved_residuals(fn, *args)
        items = []
        for line in buffer.getvalue().splitlines():
            shape, _, why = line.partition(" ")
            match = re.match(r"(\w+)\[([\d,]*)\]", shape)
            if match:
                dims = tuple(int(d) for d in match.group(2).split(",") if d)
                items.append((jax.ShapeDtypeStruct(dims, match.group(1)), why))
    kept = [aval for aval, why in items if not why.startswith("from ")]
    nbytes = sum(math.prod(a.shape) * jnp.dtype(a.dtype).itemsize for a in kept)
    return len(kept), int(nbytes)


def _residuals(problem: Problem, manual: bool) -> tuple[int, int]:
    if manual:
        net_fn = as_custom_vjp(problem.net)
        loss_fn = loss_as_custom_vjp(problem.loss)

        def objective(p, x, y):
            return loss_fn(net_fn(p, x), y)
    else:

        def objective(p, x, y):
            return problem.loss.forward(problem.net.forward(p, x)[0], y)[0]

    return count_residuals(objective, problem.params, problem.x, problem.y)


def build_jax_impl(name: str, problem: Problem) -> Impl:
    """One of `manual`, `autodiff`, `manual_scan`, `autodiff_scan`, `custom_vjp`."""
    steps = problem.workload.steps
    batch = (problem.x, problem.y)
    train_state = TrainState.create(problem.net, problem.params, problem.optimizer)
    manual = name != "autodiff" and name != "autodiff_scan"
    if name == "custom_vjp":
        step, kind, mode = jax.jit(_custom_vjp_step(problem)), "dispatched", "custom_vjp"
    else:
        mode = "manual" if manual else "autodiff"
        scan = name.endswith("_scan")
        step = make_train_step(problem.net, problem.loss, problem.optimizer, mode, jit=not scan)
        if scan:
            step = jax.jit(repeat_step(step, steps))
        kind = "scan" if scan else "dispatched"
    compiled, compile_s = _timed_compile(step, train_state, batch)
    if kind == "scan":

        def unit(train_state):
            return jax.block_until_ready(compiled(train_state, batch)[0])
    else:
        unit = _dispatch_unit(compiled, batch, steps)
    return Impl(
        name,
        unit,
        train_state,
        grads=lambda: gradients(problem, mode),
        compiled=compiled,
        compile_s=compile_s,
        residuals=_residuals(problem, manual),
        kind=kind,
    )


def build_per_example_impl(name: str, problem: Problem) -> Impl:
    """`per_example` (hand-written outer products, `fnn.per_example_grads`) or
    `per_example_vmap` (`jax.vmap(jax.grad)` of one example's loss): a unit is `steps`
    calls of one compiled function returning all B per-example gradients (the pytree of
    `(B, *leaf)` arrays, B × params numbers) at fixed params. Its `grads` is their mean,
    the batch gradient, compared with autodiff's."""
    from fnn.per_example import per_example_grads, per_example_grads_autodiff

    fn = per_example_grads if name == "per_example" else per_example_grads_autodiff
    net, loss = problem.net, problem.loss
    compiled, compile_s = _timed_compile(
        lambda p, x, y: fn(net, loss, p, x, y), problem.params, problem.x, problem.y
    )
    steps = problem.workload.steps

    def unit(state):
        out = None
        for _ in range(steps):
            out = compiled(problem.params, problem.x, problem.y)
        jax.block_until_ready(out)
        return state

    def grads():
        each = compiled(problem.params, problem.x, problem.y)
        return jax.tree.map(lambda g: jnp.mean(g, axis=0), each)

    return Impl(
        name,
        unit,
        None,
        grads=grads,
        compiled=compiled,
        compile_s=compile_s,
        kind="dispatched",
        note="per-example gradients only (no update); ratio vs per_example_vmap"
        if name == "per_example"
        else "per-example gradients only (no update); ratio vs autodiff's batch step",
    )


# numpy: the tutorial's code (samples as columns, W: (in, out), Z = Wᵀ·A + b), with any
# number of layers, sigmoid/tanh/relu hidden layers and the two logit losses.


def _np_act(name, z):
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    return np.maximum(z, 0)


def _np_act_grad(name, a):
    """g'(Z) from A = g(Z): sigmoid A(1 − A), tanh 1 − A², relu [A > 0]."""
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a * a
    return (a > 0).astype(a.dtype)


def numpy_forward_backward(Ws, bs, X, Y, activation, loss):
    """The tutorial's forward and backward, generalised: returns (cost, dWs, dbs).

    X: (n, m), samples as columns; Ws[l]: (in, out); bs[l]: (out, 1). Y: (1, m) soft
    targets for "sigmoid_bce", or (classes, m) one-hot for "softmax_ce".
    """
    m = X.shape[1]
    As = [X]
    for l, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        Z = np.dot(W.T, As[-1]) + b  # Z = Wᵀ·A_prev + b
        As.append(_np_act(activation, Z) if l < len(Ws) - 1 else Z)
    Z = As.pop()
    if loss == "sigmoid_bce":
        A = 1 / (1 + np.exp(-Z))
        cost = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
        dZ = A - Y  # dZ3 = A3 − Y
    else:
        e = np.exp(Z - Z.max(axis=0, keepdims=True))
        A = e / e.sum(axis=0, keepdims=True)
        cost = -np.sum(Y * np.log(A)) / m
        dZ = A - Y  # softmax − onehot
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in reversed(range(len(Ws))):
        dWs[l] = 1 / m * np.dot(As[l], dZ.T)  # dW = A_prev·dZᵀ/m
        dbs[l] = 1 / m * np.sum(dZ, axis=1, keepdims=True)  # db = mean(dZ)
        if l > 0:
            dZ = np.dot(Ws[l], dZ) * _np_act_grad(activation, As[l])  # dZ = W·dZ ⊙ g'(Z)
    return cost, dWs, dbs


def _numpy_data(problem: Problem):
    w = problem.workload
    dtype = np.dtype(problem.dtype.name)
    dense = [p for p in problem.params if p != ()]
    Ws = [np.array(p["W"], dtype) for p in dense]
    bs = [np.array(p["b"], dtype).reshape(-1, 1) for p in dense]
    X = np.array(problem.x, dtype).T
    if w.loss == "sigmoid_bce":
        Y = np.array(problem.y, dtype).T
    else:
        Y = np.eye(w.features[-1], dtype=dtype)[np.array(problem.y)].T
    return Ws, bs, X, Y


def build_numpy_impl(problem: Problem) -> Impl:
    """The tutorial's numpy backprop (float32/float64 only)."""
    w = problem.workload
    if problem.dtype.name not in ("float32", "float64"):
        raise _Skip(f"numpy has no {problem.dtype.name}")
    Ws, bs, X, Y = _numpy_data(problem)
    lr = np.asarray(w.learning_rate, X.dtype)

    def unit(state):
        Ws, bs = state
        for _ in range(w.steps):
            _, dWs, dbs = numpy_forward_backward(Ws, bs, X, Y, w.activation, w.loss)
            Ws = [W - lr * dW for W, dW in zip(Ws, dWs, strict=True)]  # W ← W − α·dW
            bs = [b - lr * db for b, db in zip(bs, dbs, strict=True)]
        return Ws, bs

    def grads():
        _, dWs, dbs = numpy_forward_backward(Ws, bs, X, Y, w.activation, w.loss)
        out, it = [], iter(zip(dWs, dbs, strict=True))
        for p in problem.params:
            if p == ():
                out.append(())
            else:
                dW, db = next(it)
                out.append({"W": jnp.asarray(dW), "b": jnp.asarray(db[:, 0])})
        return tuple(out)

    return Impl("numpy", unit, (Ws, bs), grads=grads, kind="numpy")


class _Skip(Exception):
    """An implementation that cannot run here; the message says why."""


# Peers: trained with their own idioms, sizes as the workload; run only where installed.


def _peer_unit_jax(step, state, batch, steps):
    def unit(s):
        for _ in range(steps):
            s = step(s, batch)
        return jax.block_until_ready(s)

    return unit


def build_equinox_impl(problem: Problem) -> Impl:
    import equinox as eqx

    w = problem.workload
    widths = (w.in_features, *w.features)
    keys = jax.random.split(jax.random.PRNGKey(1), len(w.features))
    layers = [
        eqx.nn.Linear(a, b, key=k, dtype=problem.dtype)
        for a, b, k in zip(widths[:-1], widths[1:], keys, strict=True)
    ]
    act = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}[w.activation]
    optimizer = problem.optimizer

    def forward(model, x):
        for layer in model[:-1]:
            x = act(jax.vmap(layer)(x))
        return jax.vmap(model[-1])(x)

    def loss_fn(model, x, y):
        return _optax_loss(w.loss, forward(model, x), y)

    @eqx.filter_jit
    def step(state, batch):
        model, opt_state = state
        grads = eqx.filter_grad(loss_fn)(model, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state

    model = layers
    state = (model, optimizer.init(eqx.filter(model, eqx.is_array)))
    batch = (problem.x, problem.y)
    return Impl("equinox", _peer_unit_jax(step, state, batch, w.steps), state, kind="peer")


def build_flax_nnx_impl(problem: Problem) -> Impl:
    from flax import nnx

    w = problem.workload
    widths = (w.in_features, *w.features)
    rngs = nnx.Rngs(1)
    layers = [
        nnx.Linear(a, b, rngs=rngs, dtype=problem.dtype, param_dtype=problem.dtype)
        for a, b in zip(widths[:-1], widths[1:], strict=True)
    ]
    act = {"sigmoid": nnx.sigmoid, "tanh": nnx.tanh, "relu": nnx.relu}[w.activation]
    graphdef, params = nnx.split(nnx.List(layers) if hasattr(nnx, "List") else layers)
    optimizer = problem.optimizer

    def loss_fn(p, x, y):
        model = nnx.merge(graphdef, p)
        for layer in list(model)[:-1]:
            x = act(layer(x))
        return _optax_loss(w.loss, list(model)[-1](x), y)

    @jax.jit
    def step(state, batch):
        p, opt_state = state
        grads = jax.grad(loss_fn)(p, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state

    state = (params, optimizer.init(params))
    batch = (problem.x, problem.y)
    note = "nnx.split/merge with a jitted optax step"
    return Impl(
        "flax_nnx", _peer_unit_jax(step, state, batch, w.steps), state, kind="peer", note=note
    )


def _optax_loss(kind, logits, y):
    if kind == "sigmoid_bce":
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def build_torch_impl(problem: Problem) -> Impl:
    import torch

    w = problem.workload
    dtype = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}[
        problem.dtype.name
    ]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    widths = (w.in_features, *w.features)
    act = {"sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
    modules = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        modules.append(torch.nn.Linear(a, b))
        if i < len(w.features) - 1:
            modules.append(act[w.activation]())
    model = torch.nn.Sequential(*modules).to(device=device, dtype=dtype)
    opt = torch.optim.SGD(model.parameters(), lr=w.learning_rate)
    x = torch.from_numpy(np.asarray(problem.x, np.float32)).to(device=device, dtype=dtype)
    if w.loss == "sigmoid_bce":
        y = torch.from_numpy(np.asarray(problem.y, np.float32)).to(device=device, dtype=dtype)
        loss_fn = torch.nn.BCEWithLogitsLoss()
    else:
        y = torch.from_numpy(np.asarray(problem.y, np.int64)).to(device)
        loss_fn = torch.nn.CrossEntropyLoss()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def unit(state):
        for _ in range(w.steps):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        sync()
        return state

    return Impl("torch", unit, None, kind="peer", note=f"torch {torch.__version__} eager")


PEER_BUILDERS = {
    "equinox": build_equinox_impl,
    "flax_nnx": build_flax_nnx_impl,
    "torch": build_torch_impl,
}


def build_impl(name: str, problem: Problem) -> Impl:
    """Builds implementation `name` for `problem`; raises `_Skip` when it cannot run."""
    if name in JAX_IMPLS:
        return build_jax_impl(name, problem)
    if name in PER_EXAMPLE_IMPLS:
        return build_per_example_impl(name, problem)
    if name == "numpy":
        if jax.devices()[0].platform != "cpu":
            raise _Skip("numpy runs on the host CPU: compared on CPU runs only")
        return build_numpy_impl(problem)
    module = PEER_MODULES[name]
    if importlib.util.find_spec(module) is None:
        raise _Skip(f"{module} is not installed")
    return PEER_BUILDERS[name](problem)


# ---------------------------------------------------------------------------------------
# Measurements


def hlo_counts(hlo_text: str) -> dict[str, int]:
    """GEMMs (dots, and GEMM custom calls as on GPU), fusions and all instructions in a
    compiled module's text, fused computations included."""
    instructions = re.findall(r"^\s*(?:ROOT )?%[\w.\-]+ = .*$", hlo_text, flags=re.M)
    dots = sum(1 for line in instructions if re.search(r"\bdot\(", line))
    gemm_calls = sum(
        1
        for line in instructions
        if "custom-call(" in line and re.search(r"gemm|matmul", line, flags=re.I)
    )
    fusions = sum(1 for line in instructions if re.search(r"\bfusion\(", line))
    return {"hlo_gemms": dots + gemm_calls, "hlo_fusions": fusions, "hlo_ops": len(instructions)}


def hlo_conv_count(hlo_text: str) -> int:
    """Convolutions in a compiled module's text: XLA's, and cuDNN's custom calls on GPU."""
    cudnn = re.compile(r"custom-call\(.*conv(Forward|BackwardInput|BackwardFilter)")
    return sum(
        1
        for line in re.findall(r"^\s*(?:ROOT )?%[\w.\-]+ = .*$", hlo_text, flags=re.M)
        if re.search(r"\bconvolution\(", line) or cudnn.search(line)
    )


def memory_figures(compiled) -> dict[str, int | None]:
    """temp, argument and output bytes from `compiled.memory_analysis()` (None if absent)."""
    keys = {
        "temp_bytes": "temp_size_in_bytes",
        "argument_bytes": "argument_size_in_bytes",
        "output_bytes": "output_size_in_bytes",
    }
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # some backends do not implement it
        analysis = None
    if analysis is None:
        return dict.fromkeys(keys)
    return {k: int(getattr(analysis, v)) for k, v in keys.items()}


def peak_bytes_in_use() -> int | None:
    """The device's process-wide peak bytes in use so far (GPU/TPU), else None."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    return None if not stats else stats.get("peak_bytes_in_use")


def rel_grad_err(grads, reference) -> float:
    """max over leaves of max|g − ref| / max|ref| (norm-wise; 0 where both are zero)."""
    worst = 0.0
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True):
        g = np.asarray(g, np.float64)
        r = np.asarray(r, np.float64)
        scale = np.max(np.abs(r)) if r.size else 0.0
        diff = np.max(np.abs(g - r)) if r.size else 0.0
        worst = max(worst, float(diff / scale) if scale > 0 else float(diff))
    return worst


def matmul_unit(m: int, k: int, n: int, dtype, calls: int) -> tuple[Callable, float]:
    """A unit of `calls` jitted (m, k)·(k, n) matmuls, and the FLOPs it does."""
    rng = np.random.default_rng(7)
    a = jnp.asarray(rng.standard_normal((m, k), np.float32), dtype)
    b = jnp.asarray(rng.standard_normal((k, n), np.float32), dtype)
    f = jax.jit(lambda a, b: a @ b).lower(a, b).compile()

    def unit(state):
        out = None
        for _ in range(calls):
            out = f(a, b)
        jax.block_until_ready(out)
        return state

    return unit, 2.0 * m * k * n * calls


def _calls_for(flops: float, target_flops: float) -> int:
    return max(1, min(1000, round(target_flops / max(flops, 1.0))))


def time_rotation(
    units: dict[str, Callable], states: dict[str, Any], repeats: int, warmup: bool = True
) -> dict[str, list[float]]:
    """Runs each unit once to warm up (unless `warmup` is False), then `repeats` rounds of
    all units in turn, the order rotated every round; returns seconds per unit per round."""
    names = list(units)
    for name in names if warmup else ():
        states[name] = units[name](states[name])
    times = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            states[name] = units[name](states[name])
            times[name].append(time.perf_counter() - start)
    return times


def _median_iqr(values: Sequence[float]) -> tuple[float, float]:
    q1, q2, q3 = np.percentile(np.asarray(values, np.float64), [25, 50, 75])
    return float(q2), float(q3 - q1)


# ---------------------------------------------------------------------------------------
# The grid


def machine_info() -> dict[str, Any]:
    """Fields describing where the run happened, copied into every record."""
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": getattr(device, "device_kind", device.platform),
        "device_count": jax.device_count(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo or `platform`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def square_peak_size(platform_name: str, quick: bool) -> int:
    """The side of the square matmul peak probe."""
    if platform_name == "cpu":
        return 1024 if quick else 2048
    return 4096 if quick else 8192


def run_workload(
    workload: Workload,
    dtype: str,
    impls: Sequence[str],
    *,
    repeats: int,
    square: int,
    machine: dict[str, Any],
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Builds, checks, times and measures every impl on one workload in one dtype."""
    impls = [
        name
        for name in impls
        if (name in PER_EXAMPLE_IMPLS) == workload.per_example
        or (workload.per_example and name == "autodiff")
    ]
    if workload.image is not None or workload.sequence is not None:  # numpy, peers: MLPs
        impls = [name for name in impls if name in JAX_IMPLS]
    problem = make_problem(workload, dtype)
    built, records = {}, []
    base = {
        **machine,
        "workload": workload.name,
        "description": workload.description,
        "dtype": dtype,
        "batch": workload.batch,
        "params": workload.params,
        "weights": workload.weights,
        "steps_per_call": workload.steps,
        "repeats": repeats,
    }
    for name in impls:
        try:
            built[name] = build_impl(name, problem)
        except _Skip as why:
            records.append({**base, "impl": name, "status": "skipped", "note": str(why)})
            progress(f"  {workload.name:<18} {dtype:<9} {name:<14} skipped: {why}")
        except Exception as error:  # a peer's API drift must not stop the grid
            note = f"failed to build: {type(error).__name__}: {error}"
            records.append({**base, "impl": name, "status": "error", "note": note[:300]})
            progress(f"  {workload.name:<18} {dtype:<9} {name:<14} {note[:120]}")
    reference = None
    if "autodiff" in built or "autodiff_scan" in built:
        reference = gradients(problem, "autodiff")

    units, states = {}, {}
    for name, impl in list(built.items()):  # the warm-up, one impl at a time
        try:
            states[name], units[name] = impl.unit(impl.state), impl.unit
        except Exception as error:
            note = f"failed to run: {type(error).__name__}: {error}"[:300]
            records.append({**base, "impl": name, "status": "error", "note": note})
            progress(f"  {workload.name:<18} {dtype:<9} {name:<14} {note[:120]}")
            del built[name]
    probes = _peak_probes(workload, problem.dtype, square)
    for key, (unit, _) in probes.items():
        units[key], states[key] = unit, unit(None)
    try:
        times = time_rotation(units, states, repeats, warmup=False)
    except Exception as error:
        note = f"failed while timing: {type(error).__name__}: {error}"[:300]
        progress(f"  {workload.name:<18} {dtype:<9} {note}")
        return records + [{**base, "impl": n, "status": "error", "note": note} for n in built]

    peak, peak_shape = 0.0, ""
    for key, (_, flops) in probes.items():
        rate = flops / min(times[key])  # a peak: the best round
        if rate > peak:
            peak, peak_shape = rate, key.removeprefix("peak:")
    for impl in built.values():
        record = _record(base, impl, times, workload, peak, peak_shape, reference)
        records.append(record)
        progress(_progress_line(record))
    return records


def _peak_probes(workload: Workload, dtype, square: int) -> dict[str, tuple[Callable, float]]:
    """The matmul probes timed in the rotation: the workload's largest GEMM and a square."""
    m, k, n = workload.largest_gemm
    probes = {}
    step_flops = workload.flops_per_step * workload.steps
    target = max(step_flops, 2.0 * square**3)
    for shape in {(m, k, n), (square, square, square)}:
        calls = _calls_for(2.0 * math.prod(shape), target)
        probes["peak:{}x{}x{}".format(*shape)] = matmul_unit(*shape, dtype, calls)
    return probes


def _record(base, impl, times, workload, peak, peak_shape, reference) -> dict[str, Any]:
    per_step = [t / workload.steps * 1e3 for t in times[impl.name]]
    median, iqr = _median_iqr(per_step)
    ref_name = REFERENCE.get(impl.name, "autodiff")
    ratio = None
    if ref_name in times:
        pairs = [a / b for a, b in zip(times[impl.name], times[ref_name], strict=True)]
        ratio = float(statistics.median(pairs))
    flops_per_s = workload.flops_per_step / (median / 1e3)
    record = {
        **base,
        "impl": impl.name,
        "status": "ok",
        "kind": impl.kind,
        "step_ms_median": median,
        "step_ms_iqr": iqr,
        "step_ms_min": min(per_step),
        "total_ms": median * workload.steps,
        "ratio_vs_autodiff": ratio,
        "ratio_reference": ref_name if ratio is not None else None,
        "compile_s": impl.compile_s,
        "flops_per_s": flops_per_s,
        "peak_flops_per_s": peak,
        "peak_shape": peak_shape,
        "peak_fraction": flops_per_s / peak if peak else None,
        "floor_ratio": peak / flops_per_s if peak else None,
        **(memory_figures(impl.compiled) if impl.compiled is not None else _no_memory()),
        "peak_bytes_in_use": peak_bytes_in_use() if impl.compiled is not None else None,
        "residual_arrays": impl.residuals[0] if impl.residuals else None,
        "residual_bytes": impl.residuals[1] if impl.residuals else None,
        **(hlo_counts(impl.compiled.as_text()) if impl.compiled is not None else _no_hlo()),
        "hlo_convs": hlo_conv_count(impl.compiled.as_text()) if impl.compiled is not None else None,
        "rel_grad_err": (
            rel_grad_err(impl.grads(), reference)
            if impl.grads is not None and reference is not None
            else None
        ),
        "step_ms_samples": per_step,
        "note": impl.note,
    }
    return record


def _no_memory():
    return dict.fromkeys(("temp_bytes", "argument_bytes", "output_bytes"))


def _no_hlo():
    return dict.fromkeys(("hlo_gemms", "hlo_fusions", "hlo_ops"))


def _progress_line(r: dict[str, Any]) -> str:
    ratio = f"{r['ratio_vs_autodiff']:.3f}" if r["ratio_vs_autodiff"] is not None else "  -  "
    temp = _mib(r["temp_bytes"])
    return (
        f"  {r['workload']:<18} {r['dtype']:<9} {r['impl']:<14} "
        f"{r['step_ms_median']:10.4f} ms/step ±{r['step_ms_iqr']:.4f}  ratio {ratio}  "
        f"{r['peak_fraction'] * 100:5.1f}% peak  temp {temp}"
    )


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.2f} MiB"


def validate(names: Iterable[str], valid: Iterable[str], kind: str) -> list[str]:
    """`names` as a list, or a ValueError naming the unknown ones and the valid ones."""
    names, valid = list(names), list(valid)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown {kind}(s): {', '.join(unknown)}; valid: {', '.join(valid)}")
    return names


def run_benchmarks(
    workloads: Sequence[str] | None = None,
    impls: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    *,
    repeats: int = 7,
    quick: bool = False,
    steps: dict[str, int] | None = None,
    deadline: float | None = None,
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Runs the grid and returns its records.

    Arguments:
      workloads: workload names (default: the platform's grid, or the quick one).
      impls: implementation names (default: all; peers skip when not installed).
      dtypes: dtype names applied to every workload (default: `default_dtypes`).
      repeats: timed rounds per workload.
      quick: the quick grid (fewer workloads and steps, a smaller square probe).
      steps: per-workload steps per unit, overriding the workload's (and quick's).
      deadline: a `time.monotonic()` value after which no new case starts.
      progress: called with one line per case.
    """
    platform_name = jax.devices()[0].platform
    if workloads is None:
        workloads = (
            QUICK_WORKLOADS
            if quick
            else (CPU_WORKLOADS if platform_name == "cpu" else GPU_WORKLOADS)
        )
    workloads = validate(workloads, WORKLOADS, "workload")
    impls = validate(impls if impls is not None else IMPLS, IMPLS, "impl")
    if dtypes is not None:
        validate(dtypes, DTYPES, "dtype")
    wanted = {d for w in workloads for d in (dtypes or default_dtypes(w, platform_name))}
    if "float64" in wanted:
        jax.config.update("jax_enable_x64", True)
    machine = machine_info()
    square = square_peak_size(platform_name, quick)
    overrides = {**(QUICK_STEPS if quick else {}), **(steps or {})}
    progress(
        f"fnn bench: {machine['device_kind']} ({machine['cpu_model']}, "
        f"{machine['cpu_cores']} cores), jax {machine['jax_version']}, repeats {repeats}"
    )
    records = []
    for name in workloads:
        workload = scaled(WORKLOADS[name], overrides.get(name))
        for dtype in dtypes or default_dtypes(name, platform_name):
            if deadline is not None and time.monotonic() > deadline:
                progress(f"  {name:<18} {dtype:<9} skipped: out of time")
                records.append(
                    {**machine, "workload": name, "dtype": dtype, "impl": "*", "status": "skipped",
                     "note": "out of time"}
                )  # fmt: skip
                continue
            records += run_workload(
                workload,
                dtype,
                impls,
                repeats=repeats,
                square=square,
                machine=machine,
                progress=progress,
            )
    return records


# ---------------------------------------------------------------------------------------
# Output: JSON, CSV, markdown, charts

CSV_FIELDS = (
    "workload",
    "impl",
    "dtype",
    "status",
    "kind",
    "device_kind",
    "platform",
    "cpu_model",
    "cpu_cores",
    "jax_version",
    "batch",
    "params",
    "steps_per_call",
    "repeats",
    "step_ms_median",
    "step_ms_iqr",
    "step_ms_min",
    "total_ms",
    "ratio_vs_autodiff",
    "ratio_reference",
    "compile_s",
    "flops_per_s",
    "peak_flops_per_s",
    "peak_shape",
    "peak_fraction",
    "floor_ratio",
    "temp_bytes",
    "argument_bytes",
    "output_bytes",
    "peak_bytes_in_use",
    "residual_arrays",
    "residual_bytes",
    "hlo_gemms",
    "hlo_convs",
    "hlo_fusions",
    "hlo_ops",
    "rel_grad_err",
    "note",
)


def write_json(records: Sequence[dict], path: Path) -> None:
    """The records as a JSON list."""
    path.write_text(json.dumps(list(records), indent=1) + "\n")


def write_csv(records: Sequence[dict], path: Path) -> None:
    """One row per record, `CSV_FIELDS` as columns (samples left out)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({k: record.get(k) for k in CSV_FIELDS})


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _step_cell(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms * 1e3:.1f} µs"


def format_report(records: Sequence[dict], title: str = "fnn bench") -> str:
    """Markdown: the machine, one table per (workload, dtype), then skipped cases."""
    ok = [r for r in records if r.get("status") == "ok"]
    lines = [f"# {title}", ""]
    if records:
        m = records[0]
        lines += [
            f"Machine: {m.get('device_kind')} ({m.get('platform')}), CPU {m.get('cpu_model')}, "
            f"{m.get('cpu_cores')} cores; jax {m.get('jax_version')}.",
            "",
            "Step = time per training step (median over alternated rounds, IQR after ±). "
            "ratio = this impl's unit time over autodiff's in the same round, median "
            "(manual_scan against autodiff_scan). % peak = 6·B·P FLOP/s over the best "
            "matmul rate measured in the same rotation; floor × = step over 6·B·P ÷ peak. "
            "temp = compiled temp bytes; resid = arrays (MiB) kept for the backward, "
            "arguments excluded; GEMMs/fusions/ops from the compiled HLO; err = max "
            "relative gradient difference from autodiff.",
            "",
        ]
    seen = []
    for r in ok:
        key = (r["workload"], r["dtype"])
        if key not in seen:
            seen.append(key)
    for workload, dtype in seen:
        rows = [r for r in ok if (r["workload"], r["dtype"]) == (workload, dtype)]
        first = rows[0]
        lines += [
            f"## {workload}, {dtype}",
            "",
            f"{first.get('description', '')}; batch {first['batch']}, {first['params']:,} "
            f"params, {first['steps_per_call']} steps per timed unit, peak "
            f"{first['peak_flops_per_s'] / 1e9:.1f} GFLOP/s ({first['peak_shape']}).",
            "",
            "| impl | step | ± IQR | best | ratio | % peak | floor × | compile s | temp MiB | "
            "resid | GEMMs/fusions/ops | err |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            resid = (
                "-"
                if r.get("residual_arrays") is None
                else f"{r['residual_arrays']} ({r['residual_bytes'] / 2**20:.2f})"
            )
            hlo = (
                "-"
                if r.get("hlo_ops") is None
                else f"{r['hlo_gemms']}/{r['hlo_fusions']}/{r['hlo_ops']}"
            )
            temp = "-" if r.get("temp_bytes") is None else f"{r['temp_bytes'] / 2**20:.2f}"
            lines.append(
                f"| {r['impl']} | {_step_cell(r['step_ms_median'])} | "
                f"{_step_cell(r['step_ms_iqr'])} | {_step_cell(r.get('step_ms_min'))} | "
                f"{_fmt(r['ratio_vs_autodiff'], '.3f')} | "
                f"{_fmt(r['peak_fraction'] and r['peak_fraction'] * 100, '.1f')} | "
                f"{_fmt(r['floor_ratio'], '.2f')} | {_fmt(r['compile_s'], '.2f')} | {temp} | "
                f"{resid} | {hlo} | {_fmt(r['rel_grad_err'], '.1e')} |"
            )
        lines.append("")
    other = [r for r in records if r.get("status") != "ok"]
    if other:
        lines += ["## Not run", ""]
        for r in other:
            lines.append(f"- {r['workload']} {r['dtype']} {r['impl']}: {r.get('note', '')}")
        lines.append("")
    return "\n".join(lines)


def _cases(records):
    ok = [r for r in records if r.get("status") == "ok"]
    cases = []
    for r in ok:
        key = f"{r['workload']}\n{r['dtype']}"
        if key not in cases:
            cases.append(key)
    return ok, cases


def _bar_chart(records, value, ylabel, title, path, *, log=False, lines=()):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok, cases = _cases(records)
    impls = [i for i in IMPLS if any(r["impl"] == i and value(r) is not None for r in ok)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(cases) + 2), 4.2))
    width = 0.8 / max(len(impls), 1)
    for j, impl in enumerate(impls):
        xs, ys = [], []
        for i, case in enumerate(cases):
            for r in ok:
                if r["impl"] == impl and f"{r['workload']}\n{r['dtype']}" == case:
                    if value(r) is not None:
                        xs.append(i + (j - (len(impls) - 1) / 2) * width)
                        ys.append(value(r))
        ax.bar(xs, ys, width, label=impl)
    for y, style in lines:
        ax.axhline(y, color="k", linestyle=style, linewidth=0.8)
    ax.set_xticks(range(len(cases)), cases, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=min(len(impls), 4))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_charts(records: Sequence[dict], out: Path, suffix: str = "") -> list[Path]:
    """Three PNGs: step time per impl, the ratio to autodiff, the fraction of peak."""
    device = records[0]["device_kind"] if records else ""
    paths = [out / f"{stem}{suffix}.png" for stem in ("time", "ratio", "peak")]
    _bar_chart(
        records,
        lambda r: r["step_ms_median"],
        "ms per step (log)",
        f"Step time per implementation — {device}",
        paths[0],
        log=True,
    )
    _bar_chart(
        [r for r in records if r.get("impl") not in ("autodiff", "autodiff_scan")],
        lambda r: r.get("ratio_vs_autodiff") if r.get("kind") != "numpy" else None,
        "time / autodiff time",
        f"Step time relative to autodiff (manual_scan: to autodiff_scan) — {device}",
        paths[1],
        lines=((1.0, "-"), (1.03, ":")),
    )
    _bar_chart(
        [r for r in records if r.get("workload") != "tutorial"],
        lambda r: r.get("peak_fraction"),
        "6·B·P FLOP/s ÷ matmul peak",
        f"Fraction of the measured matmul peak — {device}",
        paths[2],
        lines=((1.0, "-"), (1 / 1.1, ":")),
    )
    return paths


def write_results(
    records: Sequence[dict], out: Path | str, suffix: str = "", title: str = "fnn bench"
) -> list[Path]:
    """Writes results{suffix}.json/.csv, report{suffix}.md and the charts under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"results{suffix}.json", out / f"results{suffix}.csv"]
    write_json(records, paths[0])
    write_csv(records, paths[1])
    report = out / f"report{suffix}.md"
    report.write_text(format_report(records, title))
    paths.append(report)
    if any(r.get("status") == "ok" for r in records):
        paths += write_charts(records, out, suffix)
    return paths

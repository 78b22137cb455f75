"""Peers: the same MLP workloads trained by Equinox, Flax NNX and PyTorch, each with its
own idioms (its layers, its gradient, SGD), sized as the workload. Each runs only where
its library is installed; `fnn.bench.impls.PEER_MODULES` names the module to look for."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn.bench.impls import Impl, dispatch_unit
from fnn.bench.problems import Problem
from fnn.bench.workloads import Workload

_ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}


def _sizes(w: Workload) -> list[tuple[int, int]]:
    """(in, out) of each dense layer."""
    widths = (w.in_features, *w.features)
    return list(zip(widths[:-1], widths[1:], strict=True))


def _logits(layers: list[Callable], activation: str, x):
    """The MLP's logits, (batch, features[-1]): `activation` after every layer but the
    last."""
    act = _ACTIVATIONS[activation]
    for layer in layers[:-1]:
        x = act(layer(x))
    return layers[-1](x)


def _optax_loss(kind, logits, y):
    if kind == "sigmoid_bce":
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _jax_peer(name: str, problem: Problem, step: Callable, state, note: str = "") -> Impl:
    """A JAX peer's Impl: its jitted `step(state, batch) -> (state, None)` called from
    Python `steps` times a unit on the problem's batch."""
    unit = dispatch_unit(step, (problem.x, problem.y), problem.workload.steps)
    return Impl(name, unit, state, kind="peer", note=note)


def build_equinox_impl(problem: Problem) -> Impl:
    """`eqx.nn.Linear` layers applied with `jax.vmap`, `eqx.filter_grad`, a
    `filter_jit` step."""
    import equinox as eqx

    w = problem.workload
    keys = jax.random.split(jax.random.PRNGKey(1), len(w.features))
    model = [
        eqx.nn.Linear(a, b, key=k, dtype=problem.dtype)
        for (a, b), k in zip(_sizes(w), keys, strict=True)
    ]
    optimizer = problem.optimizer

    def loss_fn(model, x, y):
        return _optax_loss(w.loss, _logits([jax.vmap(m) for m in model], w.activation, x), y)

    @eqx.filter_jit
    def step(state, batch):
        model, opt_state = state
        grads = eqx.filter_grad(loss_fn)(model, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return (eqx.apply_updates(model, updates), opt_state), None

    state = (model, optimizer.init(eqx.filter(model, eqx.is_array)))
    return _jax_peer("equinox", problem, step, state)


def build_flax_nnx_impl(problem: Problem) -> Impl:
    """`nnx.Linear` layers split into a graph and params, `jax.grad` through
    `nnx.merge`, a jitted optax step."""
    from flax import nnx

    w = problem.workload
    rngs = nnx.Rngs(1)
    layers = [
        nnx.Linear(a, b, rngs=rngs, dtype=problem.dtype, param_dtype=problem.dtype)
        for a, b in _sizes(w)
    ]
    graphdef, params = nnx.split(nnx.List(layers) if hasattr(nnx, "List") else layers)
    optimizer = problem.optimizer

    def loss_fn(p, x, y):
        model = list(nnx.merge(graphdef, p))
        return _optax_loss(w.loss, _logits(model, w.activation, x), y)

    @jax.jit
    def step(state, batch):
        p, opt_state = state
        grads = jax.grad(loss_fn)(p, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    state = (params, optimizer.init(params))
    return _jax_peer(
        "flax_nnx", problem, step, state, note="nnx.split/merge with a jitted optax step"
    )


def build_torch_impl(problem: Problem) -> Impl:
    """`torch.nn.Linear` layers in a `Sequential`, eager autograd and
    `torch.optim.SGD`, on CUDA where available."""
    import torch

    w = problem.workload
    dtype = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}[
        problem.dtype.name
    ]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    act = {"sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
    modules = []
    for i, (a, b) in enumerate(_sizes(w)):
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

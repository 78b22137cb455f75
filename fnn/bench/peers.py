"""Peers: the same MLP workloads trained by Equinox, Flax NNX and PyTorch, each in its own
idiomatic form (its layers, its gradient, the same SGD), from fnn's initial parameters.
Each runs only where its library is installed (`fnn.bench.impls.PEER_MODULES`), and each
reports its gradient at those parameters in fnn's layout, so that its `rel_grad_err`
against fnn's autodiff says it trains the same network.

- `equinox`: `eqx.nn.Linear` layers, each applied with `jax.vmap` (Equinox's layers act
  on one example), `eqx.filter_grad`, an `eqx.filter_jit` step;
- `flax_nnx`: `nnx.Linear` layers, `nnx.split`/`merge` around a `jax.jit` step (the
  form Flax's performance guide recommends over `nnx.jit`);
- `torch`: `torch.nn.Linear` layers in a `Sequential`, eager autograd, `torch.optim.SGD`;
- `torch_compile`: the same module and step under `torch.compile`, where it compiles.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn.bench.impls import Impl, Skip, dispatch_unit
from fnn.bench.problems import Problem
from fnn.core import Array

_ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}


def _dense(problem: Problem) -> list[tuple[np.ndarray, np.ndarray]]:
    """fnn's initial `(W: (in, out), b: (out,))` of each dense layer, in order."""
    return [(np.asarray(p["W"]), np.asarray(p["b"])) for p in problem.params if p != ()]


def _fnn_layout(problem: Problem, grads: list[tuple]) -> tuple:
    """Per-layer `(dW: (in, out), db)` put back into fnn's params structure (`()` for the
    activations)."""
    it = iter(grads)
    out: list[dict[str, Array] | tuple[()]] = []
    for p in problem.params:
        if p == ():
            out.append(())
        else:
            dW, db = next(it)
            out.append({"W": jnp.asarray(dW), "b": jnp.asarray(db)})
    return tuple(out)


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


def build_equinox_impl(problem: Problem) -> Impl:
    import equinox as eqx

    w, dt = problem.workload, problem.dtype
    assert w is not None  # a problem of the grid, made from its workload
    model = []
    for W, b in _dense(problem):
        layer = eqx.nn.Linear(*W.shape, key=jax.random.PRNGKey(0), dtype=dt)
        layer = eqx.tree_at(lambda m: (m.weight, m.bias), layer, (jnp.asarray(W.T, dt), b))
        model.append(layer)  # Equinox keeps W as (out, in)
    optimizer = problem.optimizer

    def loss_fn(model, x, y):
        return _optax_loss(w.loss, _logits([jax.vmap(m) for m in model], w.activation, x), y)

    @eqx.filter_jit
    def step(state, batch):
        model, opt_state = state
        grads = eqx.filter_grad(loss_fn)(model, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return (eqx.apply_updates(model, updates), opt_state), None

    def grads():
        g = eqx.filter_jit(eqx.filter_grad(loss_fn))(model, problem.x, problem.y)
        return _fnn_layout(problem, [(m.weight.T, m.bias) for m in g])

    state = (model, optimizer.init(eqx.filter(model, eqx.is_array)))
    unit = dispatch_unit(step, (problem.x, problem.y), problem.steps)
    note = f"equinox {eqx.__version__}: vmap(Linear), filter_grad, filter_jit"
    return Impl("equinox", unit, state, grads=grads, kind="peer", note=note)


def build_flax_nnx_impl(problem: Problem) -> Impl:
    import flax
    from flax import nnx

    w, dt = problem.workload, problem.dtype
    assert w is not None  # a problem of the grid, made from its workload
    layers = []
    for W, b in _dense(problem):
        layer = nnx.Linear(*W.shape, rngs=nnx.Rngs(0), dtype=dt, param_dtype=dt)
        layer.kernel[...], layer.bias[...] = jnp.asarray(W, dt), jnp.asarray(b, dt)
        layers.append(layer)  # Flax keeps the kernel as (in, out), as fnn does
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

    def grads():
        g = list(nnx.merge(graphdef, jax.jit(jax.grad(loss_fn))(params, problem.x, problem.y)))
        return _fnn_layout(problem, [(m.kernel[...], m.bias[...]) for m in g])

    state = (params, optimizer.init(params))
    unit = dispatch_unit(step, (problem.x, problem.y), problem.steps)
    note = f"flax {flax.__version__}: nnx.split/merge around a jitted optax step"
    return Impl("flax_nnx", unit, state, grads=grads, kind="peer", note=note)


def _tensor(torch, a, dtype, device):
    """A numpy or JAX array as a torch tensor of `dtype` on `device` (bfloat16 through
    float32, which numpy holds and torch reads)."""
    a = np.array(a)  # a writable copy: torch reads numpy's memory
    if a.dtype.name == "bfloat16":
        a = a.astype(np.float32)
    return torch.from_numpy(a).to(device=device, dtype=dtype)


def _torch_model(problem: Problem):
    """(model, x, y, loss_fn, sync): fnn's initial weights in a torch
    `Sequential` of `Linear` layers and activations, on CUDA where JAX runs on a GPU."""
    import torch

    w = problem.workload
    assert w is not None  # a problem of the grid, made from its workload
    name = problem.dtype.name
    if not hasattr(torch, name):
        raise Skip(f"torch has no {name}")
    dtype = getattr(torch, name)
    on_gpu = jax.devices()[0].platform == "gpu" and torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    act = {"sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
    modules = []
    dense = _dense(problem)
    for i, (W, b) in enumerate(dense):
        linear = torch.nn.Linear(*W.shape)
        linear = linear.to(device=device, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(_tensor(torch, W.T, dtype, device))  # torch keeps (out, in)
            linear.bias.copy_(_tensor(torch, b, dtype, device))
        modules.append(linear)
        if i < len(dense) - 1:
            modules.append(act[w.activation]())
    model = torch.nn.Sequential(*modules)
    x = _tensor(torch, problem.x, dtype, device)
    if w.loss == "sigmoid_bce":
        y = _tensor(torch, problem.y, dtype, device)
        loss_fn = torch.nn.BCEWithLogitsLoss()
    else:
        y = _tensor(torch, problem.y, torch.int64, device)
        loss_fn = torch.nn.CrossEntropyLoss()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return model, x, y, loss_fn, sync


def _torch_impl(problem: Problem, name: str, compiled: bool) -> Impl:
    import torch

    model, x, y, loss_fn, sync = _torch_model(problem)
    assert problem.workload is not None  # a problem of the grid, made from its workload
    opt = torch.optim.SGD(model.parameters(), lr=problem.workload.learning_rate)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    if compiled:
        with warnings.catch_warnings():  # torch's own deprecations, met on its import path
            warnings.simplefilter("ignore", DeprecationWarning)
            train_step = torch.compile(train_step)

    def grads():
        fresh, gx, gy, gloss, _ = _torch_model(problem)
        gloss(fresh(gx), gy).backward()
        linears = [m for m in fresh if isinstance(m, torch.nn.Linear)]
        pairs = [(m.weight.grad.float().cpu().numpy().T, m.bias.grad.float().cpu().numpy())
                 for m in linears]  # fmt: skip
        return _fnn_layout(problem, pairs)

    def unit(state):
        for _ in range(problem.steps):
            train_step()
        sync()
        return state

    form = "torch.compile of the whole step" if compiled else "eager autograd"
    note = f"torch {torch.__version__}: {form}, SGD"
    return Impl(name, unit, None, grads=grads, kind="peer", note=note)


def build_torch_impl(problem: Problem) -> Impl:
    return _torch_impl(problem, "torch", compiled=False)


def build_torch_compile_impl(problem: Problem) -> Impl:
    return _torch_impl(problem, "torch_compile", compiled=True)


PEER_BUILDERS = {
    "equinox": build_equinox_impl,
    "flax_nnx": build_flax_nnx_impl,
    "torch": build_torch_impl,
    "torch_compile": build_torch_compile_impl,
}

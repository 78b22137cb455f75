"""The tutorial's numpy backprop as the reference outside JAX: samples as columns,
`W: (in, out)`, `Z = Wᵀ·A + b`, generalised to any number of layers, sigmoid/tanh/relu
hidden layers and the two logit losses; and the `numpy` implementation that trains with
it (float32/float64, MLP workloads only)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from fnn.bench.impls import Impl, Skip
from fnn.bench.problems import Problem
from fnn.core import Array


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
    """The problem in the tutorial's layout: Ws[l] (in, out), bs[l] (out, 1), X (n, m),
    Y (1, m) soft targets or (classes, m) one-hot, as numpy arrays in its dtype."""
    w = problem.workload
    assert w is not None  # a problem of the grid, made from its workload
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
    assert w is not None  # a problem of the grid, made from its workload
    if problem.dtype.name not in ("float32", "float64"):
        raise Skip(f"numpy has no {problem.dtype.name}")
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
        out: list[dict[str, Array] | tuple[()]] = []
        it = iter(zip(dWs, dbs, strict=True))
        for p in problem.params:
            if p == ():
                out.append(())
            else:
                dW, db = next(it)
                out.append({"W": jnp.asarray(dW), "b": jnp.asarray(db[:, 0])})
        return tuple(out)

    return Impl("numpy", unit, (Ws, bs), grads=grads, kind="numpy")

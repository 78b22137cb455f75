"""Checks and inputs shared by the test modules (`from helpers.battery import ...`).

What the suite costs is XLA compiling small programs: every jitted function and every
distinct eager operation compiles (an eager `jax.random.normal` or a layer's `fnn.init`
compiles threefry code for each new shape, ~0.3 s each). So tests whose inputs and params
are only data draw them with numpy here (`normal`, `params_for`), and run their
computation as one jitted program (`forward_backward`); tests of `init` itself, and runs
whose outcome depends on the initial params, use `fnn.init`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from fnn.check import draw_params


def normal(shape, dtype=jnp.float64, seed=0, scale=1.0, loc=0.0):
    """`loc + scale · N(0, 1)` of `shape`, a numpy array (drawn and kept on the host: even
    `jnp.asarray` compiles a staging program per shape)."""
    x = loc + scale * np.random.default_rng(seed).standard_normal(shape)
    return x.astype(np.dtype(dtype))


def params_for(layer, in_shape, dtype=jnp.float64, seed=0):
    """Params for `layer` on inputs `in_shape`, in general position (`fnn.check.draw_params`:
    weights N(0, 1/fan_in), biases and scales U(0.5, 1.5)), drawn with numpy: `init` is
    only traced for the shapes, nothing compiles. Device arrays, as `fnn.init` returns
    (`jax.device_put` copies, compiling nothing)."""
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    shapes = jax.eval_shape(lambda k: layer.init(k, tuple(in_shape), jnp.dtype(dtype))[1], key)
    return jax.device_put(draw_params(shapes, np.random.default_rng(seed)))


def assert_dtype_passes_through(items, dtype, seed=0):
    """y, dx and every gradient keep the input dtype, for each `(name, layer, in_shape)` in
    `items`; all forwards and backwards run in ONE compiled program (compiles are the
    suite's cost)."""
    key = jax.random.PRNGKey(seed)
    layers = [layer for _, layer, _ in items]
    params = [layer.init(key, in_shape, dtype)[1] for _, layer, in_shape in items]
    xs = [jax.random.normal(key, (2, *in_shape), dtype) for _, _, in_shape in items]

    @jax.jit
    def run(params, xs):
        out = []
        for layer, p, x in zip(layers, params, xs, strict=True):
            y, residuals = layer.forward(p, x)
            out.append((y, *layer.backward(p, residuals, jnp.ones_like(y))))
        return out

    for (name, _, _), (y, dparams, dx) in zip(items, run(params, xs), strict=True):
        assert y.dtype == dtype and dx.dtype == dtype, name
        assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(dparams)), name


def forward_backward(layer, params, x):
    """(y, residuals, dparams, dx) for dy = 1, compiled once (faster than op by op)."""

    @jax.jit
    def run(params, x):
        y, residuals = layer.forward(params, x)
        return y, residuals, *layer.backward(params, residuals, jnp.ones_like(y))

    return run(params, x)

"""Checks shared by the layer test modules (tests/ is on sys.path under pytest)."""

import jax
import jax.numpy as jnp


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

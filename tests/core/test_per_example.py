"""Hand-written per-example gradients equal jax.vmap(jax.grad(...)) of each example's own
loss (float64, tight tolerance), their mean is the batch gradient, and a layer they do not
support is a clear error."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.battery import normal, params_for

import fnn
from fnn.per_example import clip_and_noise, per_example_grads_autodiff

RTOL, ATOL = 1e-12, 1e-14


@functools.partial(jax.jit, static_argnums=(0, 1))
def manual_and_reference(net, loss, params, x, y):
    """(losses, grads) of `fnn.per_example_value_and_grads` and the reference
    `per_example_grads_autodiff`, in ONE compiled program per (net, loss): compiles are
    what these tests cost."""
    losses, grads = fnn.per_example_value_and_grads(net, loss, params, x, y)
    return losses, grads, per_example_grads_autodiff(net, loss, params, x, y)


def _data(loss_name: str, batch: int, out: int):
    """Inputs (batch, 5) and targets for the loss, drawn with numpy (nothing compiles)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, 5))
    if loss_name == "softmax_cross_entropy":
        y = rng.integers(0, out, (batch,))
    else:
        y = rng.uniform(size=(batch, out))
    return x, y


def _assert_trees_close(a, b, rtol=RTOL, atol=ATOL):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert u.shape == v.shape and u.dtype == v.dtype
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


CASES = [
    ("relu", "softmax_cross_entropy"),
    ("sigmoid", "sigmoid_binary_cross_entropy"),
    # more pairs of an activation and a loss, slow (every activation is checked below, and
    # mean_squared_error by the tests after it, in the fast tier)
    pytest.param("tanh", "mean_squared_error", marks=pytest.mark.slow),
    pytest.param("gelu", "huber", marks=pytest.mark.slow),
    pytest.param("leaky_relu", "mean_squared_error", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("activation", "loss_name"), CASES)
def test_manual_per_example_grads_equal_vmap_of_grad(activation, loss_name):
    net = fnn.serial(fnn.mlp([16, 8], activation), fnn.tanh(), fnn.dense(3))  # nested chain
    loss = fnn.get_loss(loss_name)
    params = params_for(net, (5,))
    x, y = _data(loss_name, 7, 3)

    @jax.jit
    def run(params, x, y):
        """The per-example losses and gradients, the reference, and each example's loss
        as a batch of one, in one compiled program."""
        each = [
            loss.forward(net.forward(params, x[i : i + 1])[0], y[i : i + 1])[0] for i in range(7)
        ]
        return *manual_and_reference(net, loss, params, x, y), jnp.stack(each)

    losses, grads, reference, each = run(params, x, y)
    _assert_trees_close(grads, reference)
    np.testing.assert_allclose(np.asarray(losses), np.asarray(each), rtol=RTOL)


def test_mean_of_per_example_grads_is_the_batch_gradient():
    net, loss = fnn.mlp([12, 4], "tanh"), fnn.softmax_cross_entropy()
    params = params_for(net, (5,), seed=3)
    x, y = _data("softmax_cross_entropy", 9, 4)

    @jax.jit
    def run(params, x, y):
        per_example = fnn.per_example_grads(net, loss, params, x, y)
        return per_example, fnn.value_and_grad(net, loss)(params, x, y)[1]

    grads, batch_grads = run(params, x, y)
    _assert_trees_close(jax.tree.map(lambda g: jnp.mean(g, axis=0), grads), batch_grads)


def test_shapes_jit_and_no_bias():
    net = fnn.serial(fnn.dense(6, use_bias=False), fnn.relu(), fnn.dense(2))
    loss = fnn.mean_squared_error()
    params = params_for(net, (5,))
    x, y = _data("mean_squared_error", 4, 2)

    @jax.jit
    def run(params, x, y):
        return fnn.per_example_grads(net, loss, params, x, y), per_example_grads_autodiff(
            net, loss, params, x, y
        )

    grads, reference = run(params, x, y)
    assert grads[0]["W"].shape == (4, 5, 6) and "b" not in grads[0]
    assert grads[2]["W"].shape == (4, 6, 2) and grads[2]["b"].shape == (4, 2)
    _assert_trees_close(grads, reference)


def test_float32_stays_float32():
    net, loss = fnn.mlp([8, 3]), fnn.softmax_cross_entropy()
    params = params_for(net, (5,), jnp.float32)
    x = normal((4, 5), jnp.float32, seed=1)
    y = jnp.array([0, 1, 2, 0])
    _, grads, reference = manual_and_reference(net, loss, params, x, y)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    _assert_trees_close(grads, reference, 1e-5, 1e-6)


def test_unsupported_layer_is_a_clear_error():
    custom = fnn.Layer(fnn.identity().init, fnn.identity().forward, fnn.identity().backward, "mine")
    net = fnn.serial(fnn.dense(4), custom, fnn.dense(2))
    params = params_for(net, (3,))
    x, y = _data("mean_squared_error", 2, 2)
    with pytest.raises(ValueError, match=r"layer net\[1\] \(mine\) has no per-example backward"):
        fnn.per_example_grads(net, fnn.mean_squared_error(), params, x[:, :3], y)


def test_clip_and_noise_clips_each_example_and_adds_noise_from_the_key():
    grads = {"W": np.array([[3.0, 4.0], [0.3, 0.4]])}  # norms 5 and 0.5
    # compiled once, called four times (the noise multiplier and the key are arguments)
    private = jax.jit(lambda grads, noise, seed: clip_and_noise(grads, 1.0, noise, key=seed))
    clean = private(grads, 0.0, jax.random.PRNGKey(0))
    # (clip(g_1) + clip(g_2)) / 2 = ([0.6, 0.8] + [0.3, 0.4]) / 2
    np.testing.assert_allclose(np.asarray(clean["W"]), [0.45, 0.6], rtol=1e-12)
    a = private(grads, 1.0, jax.random.PRNGKey(1))
    b = private(grads, 1.0, jax.random.PRNGKey(1))
    c = private(grads, 1.0, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(np.asarray(a["W"]), np.asarray(b["W"]))
    assert not np.allclose(np.asarray(a["W"]), np.asarray(c["W"]))


@pytest.mark.slow
def test_bench_per_example_case_times_both_and_matches_the_batch_gradient():
    from fnn import bench
    from fnn.bench.workloads import WORKLOADS

    records = bench.run_benchmarks(
        ["per_example", "tiny"],
        ["autodiff", "per_example", "per_example_vmap"],
        ["float32"],
        repeats=1,
        quick=True,  # the small square probe
        steps={"per_example": 1, "tiny": 1},
        progress=(lines := []).append,
    )
    ran = {(r["workload"], r["impl"]) for r in records if r["status"] == "ok"}
    assert ran == {  # per-example impls run on the per-example case only
        ("per_example", "autodiff"),
        ("per_example", "per_example"),
        ("per_example", "per_example_vmap"),
        ("tiny", "autodiff"),
        ("per_example", "autodiff_aa"),  # the A/A twin: of the first impl, without manual
        ("tiny", "autodiff_aa"),
    }
    by_impl = {r["impl"]: r for r in records if r["workload"] == "per_example"}
    manual, vmapped = by_impl["per_example"], by_impl["per_example_vmap"]
    assert manual["ratio_reference"] == "per_example_vmap" and manual["ratio_vs_autodiff"] > 0
    said = {line.split()[2]: line for line in lines if line.startswith("  per_example ")}
    assert " vs per_example_vmap " in said["per_example"]  # the progress line names it
    assert " vs " not in said["per_example_vmap"]  # against autodiff, as every other
    for r in (manual, vmapped):
        assert r["step_ms_median"] > 0 and r["temp_bytes"] is not None
        assert r["output_bytes"] >= 128 * WORKLOADS["per_example"].params * 4
        assert r["rel_grad_err"] < 1e-5


def test_inputs_with_extra_axes_sum_each_example_over_its_positions():
    net = fnn.serial(fnn.dense(6), fnn.sigmoid(), fnn.dense(2))
    loss = fnn.mean_squared_error()
    params = params_for(net, (3, 5))
    x = normal((4, 3, 5), seed=1)  # (B, positions, in)
    y = normal((4, 3, 2), seed=2)
    losses, grads, reference = manual_and_reference(net, loss, params, x, y)
    assert losses.shape == (4,) and grads[0]["W"].shape == (4, 5, 6)
    _assert_trees_close(grads, reference)


@pytest.mark.slow  # one compile per activation
def test_every_builtin_activation_is_supported():
    from fnn.layers import ACTIVATIONS

    loss = fnn.mean_squared_error()
    x, y = _data("mean_squared_error", 3, 3)
    covered = {"relu", "sigmoid"}  # by the test above, in the fast tier
    names = [name for name in ACTIVATIONS if name not in covered]
    nets = [fnn.serial(fnn.dense(4), ACTIVATIONS[name](), fnn.dense(3)) for name in names]
    params = [params_for(net, (5,)) for net in nets]

    @jax.jit
    def run(params, x, y):  # one compiled program for all the nets
        return [
            manual_and_reference(net, loss, p, x, y)[1:]
            for net, p in zip(nets, params, strict=True)
        ]

    for name, (grads, reference) in zip(names, run(params, x, y), strict=True):
        assert jax.tree.structure(grads) == jax.tree.structure(reference), name
        _assert_trees_close(grads, reference)


@pytest.mark.parametrize(
    "net, in_shape",
    [
        (
            fnn.serial(
                fnn.dense(6),
                fnn.layer_norm(),
                fnn.gelu(),
                fnn.residual(fnn.serial(fnn.dense(6), fnn.tanh())),
                fnn.dense(2),
            ),
            (5,),
        ),
        (
            fnn.serial(fnn.max_pool(2), fnn.avg_pool(2, 1, "SAME"), fnn.flatten(), fnn.dense(2)),
            (4, 4, 3),
        ),
    ],
    ids=["layer_norm_residual", "pooling_flatten"],
)
def test_layers_beyond_dense_give_per_example_grads(net, in_shape):
    """layer_norm, residual, pooling and flatten have per-example backwards too."""
    loss = fnn.mean_squared_error()
    params = params_for(net, in_shape)
    x = normal((3, *in_shape), seed=1)
    y = normal((3, 2), seed=2)
    _, grads, reference = manual_and_reference(net, loss, params, x, y)
    _assert_trees_close(grads, reference)

"""value_and_grad in both modes, the custom_vjp bridge, compile-once guarantees."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers.battery import normal, params_for

import fnn

F64 = jnp.float64


@pytest.fixture(scope="module")
def problem():
    """A small classification problem in float64, shared by the tests of this module."""
    net = fnn.mlp([8, 8, 3], "tanh")
    params = params_for(net, (5,))
    x = normal((16, 5), seed=1)
    y = np.random.default_rng(2).integers(0, 3, (16,))
    return net, fnn.softmax_cross_entropy(), params, x, y


def assert_trees_close(a, b, rtol=1e-12, atol=1e-14):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


def test_manual_and_autodiff_agree_and_share_the_tree(problem):
    net, loss, params, x, y = problem

    @jax.jit
    def both(params, x, y):
        manual = fnn.value_and_grad(net, loss, "manual")(params, x, y)
        return manual, fnn.value_and_grad(net, loss, "autodiff")(params, x, y)

    (value_m, grads_m), (value_a, grads_a) = both(params, x, y)
    np.testing.assert_allclose(value_m, value_a, rtol=1e-14)
    assert_trees_close(grads_m, grads_a)
    assert jax.tree.structure(grads_m) == jax.tree.structure(params)


def test_unknown_grad_mode_lists_valid_modes(problem):
    net, loss, *_ = problem
    with pytest.raises(ValueError, match="autodiff, manual"):
        fnn.value_and_grad(net, loss, "numerical")


def test_jitted_step_compiles_once(problem):
    net, loss, params, x, y = problem
    traces = []
    grad_fn = fnn.value_and_grad(net, loss, "manual")

    def counted(params, x, y):
        traces.append(1)  # runs only while tracing
        return grad_fn(params, x, y)

    step = jax.jit(counted)
    for i in range(3):
        jax.block_until_ready(step(params, x + i, y))
    assert len(traces) == 1


def test_make_train_step_compiles_once_and_descends(problem):
    net, loss, params, x, y = problem
    optimizer = optax.sgd(0.5)
    step = fnn.make_train_step(net, loss, optimizer, "manual")
    train_state = fnn.TrainState.create(net, params, optimizer)
    losses = []
    for _ in range(5):
        train_state, metrics = step(train_state, (x, y))
        losses.append(float(metrics["loss"]))
    assert step._cache_size() == 1
    assert losses[-1] < losses[0]


def test_bridge_gradient_equals_autodiff_under_jit_and_vmap(problem):
    net, loss, params, x, y = problem
    f = fnn.as_custom_vjp(net)
    loss_fn = fnn.loss_as_custom_vjp(loss)

    def objective_bridge(p, x, y):
        return loss_fn(f(p, x), y)

    def objective_plain(p, x, y):
        return loss.forward(fnn.apply(net, p, x), y)[0]

    # per-example gradients: vmap over examples of grad through the bridge
    def one(p, xi, yi):
        return objective_bridge(p, xi[None], yi[None])

    @jax.jit  # the three gradients in one compiled program
    def gradients(params, x, y):
        g_bridge = jax.grad(objective_bridge)(params, x, y)
        per_example = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))(params, x, y)
        return g_bridge, per_example, jax.grad(objective_plain)(params, x, y)

    g_bridge, per_example, g_plain = gradients(params, x, y)
    assert_trees_close(g_bridge, g_plain)
    mean = jax.tree.map(lambda g: g.mean(axis=0), per_example)
    assert_trees_close(mean, g_plain)


def test_bridge_really_runs_the_hand_written_backward():
    layer = fnn.dense(2)
    doubled = layer._replace(
        backward=lambda p, x, dy: jax.tree.map(lambda g: 2 * g, layer.backward(p, x, dy))
    )
    params = params_for(layer, (3,))
    x = np.ones((4, 3))

    def objective(f):
        return lambda p: jnp.sum(f(p, x))

    @jax.jit
    def gradients(params):
        g_plain = jax.grad(objective(fnn.as_custom_vjp(layer)))(params)
        return g_plain, jax.grad(objective(fnn.as_custom_vjp(doubled)))(params)

    g_plain, g_doubled = gradients(params)
    assert_trees_close(g_doubled, jax.tree.map(lambda g: 2 * g, g_plain))


def test_second_order_reverse_mode_through_the_bridge():
    net = fnn.mlp([6, 1], "tanh")
    params = params_for(net, (3,), seed=3)
    x = normal((5, 3), seed=4)
    bridge = fnn.as_custom_vjp(net)

    def scalar(f):
        return lambda p: jnp.sum(f(p, x) ** 2)

    v = jax.tree.map(np.ones_like, params)

    def hvp(f):  # Hessian-vector product by reverse over reverse
        return jax.grad(lambda p: optax.tree.vdot(jax.grad(scalar(f))(p), v))(params)

    both = jax.jit(lambda: (hvp(bridge), hvp(lambda p, x: fnn.apply(net, p, x))))
    assert_trees_close(*both(), rtol=1e-10)


def test_forward_mode_is_refused_through_the_bridge_but_works_on_apply():
    net = fnn.mlp([4, 2], "sigmoid")
    params = params_for(net, (3,))
    x = np.ones((2, 3))
    tangent = np.ones_like(x)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda x: fnn.as_custom_vjp(net)(params, x), (x,), (tangent,))
    # shapes only: jax.eval_shape traces the jvp and computes nothing
    _, jvp_out = jax.eval_shape(
        lambda x, t: jax.jvp(lambda x: fnn.apply(net, params, x), (x,), (t,)), x, tangent
    )
    assert jvp_out.shape == (2, 2)


def test_loss_bridge_accepts_integer_labels():
    f = fnn.loss_as_custom_vjp(fnn.softmax_cross_entropy())
    z = np.zeros((2, 3))
    g = jax.jit(jax.grad(f))(z, np.array([0, 2]))
    np.testing.assert_allclose(g, (np.full((2, 3), 1 / 3) - np.eye(3)[[0, 2]]) / 2)

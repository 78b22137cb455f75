"""Bad input gets a clear error that names what is wrong, before XLA sees it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.battery import params_for

import fnn

KEY = jax.random.PRNGKey(0)


def test_input_width_mismatch_names_layer_index_kind_and_shapes():
    net = fnn.mlp([5, 4, 1], "sigmoid")
    params = params_for(net, (100,), jnp.float32)
    with pytest.raises(ValueError) as info:
        fnn.apply(net, params, np.ones((8, 99), np.float32))
    message = "\n".join([str(info.value), *info.value.__notes__])
    assert "in layer 0 (dense(5)) of serial(" in message
    assert "(batch, ..., 100)" in message and "(8, 99)" in message


def test_params_for_another_network_name_the_layer():
    net = fnn.mlp([5, 4, 1], "sigmoid")
    other = params_for(fnn.mlp([5, 3, 1], "sigmoid"), (100,), jnp.float32)
    with pytest.raises(
        ValueError, match=r"dense\(4\): expected W of shape .*\nin layer 2 \(dense\(4\)\)"
    ):
        fnn.apply(net, other, np.ones((8, 100), np.float32))


def test_wrong_number_of_layer_params():
    net = fnn.mlp([5, 1])
    params = params_for(net, (3,), jnp.float32)
    with pytest.raises(ValueError, match="expected params for 3 layers, got 2"):
        fnn.apply(net, params[:2], np.ones((2, 3), np.float32))


def test_the_error_is_raised_under_jit_too():
    net = fnn.mlp([4, 2])
    params = params_for(net, (3,), jnp.float32)
    with pytest.raises(ValueError, match="layer 0"):
        jax.jit(lambda p, x: fnn.apply(net, p, x))(params, np.ones((2, 5), np.float32))


def test_input_without_batch_axis():
    layer = fnn.dense(2)
    params = params_for(layer, (3,), jnp.float32)
    with pytest.raises(ValueError, match=r"got \(3,\)"):
        fnn.apply(layer, params, np.ones((3,), np.float32))


@pytest.mark.parametrize(
    "call, kind",
    [
        (lambda: fnn.get_activation("relux"), "activation"),
        (lambda: fnn.get_loss("crossentropy"), "loss"),
        (lambda: fnn.dense(3, w_init="xavier"), "initializer"),
        (lambda: fnn.mlp([3], activation="swish"), "activation"),
    ],
)
def test_unknown_names_list_the_valid_ones(call, kind):
    with pytest.raises(ValueError, match=f"unknown {kind}") as info:
        call()
    assert "valid" in str(info.value)
    valid = {
        "activation": ["relu", "sigmoid", "gelu_tanh"],
        "loss": ["softmax_cross_entropy", "huber"],
        "initializer": ["glorot_uniform", "he_normal", "uniform"],
    }[kind]
    assert all(name in str(info.value) for name in valid)


def test_integer_input_to_dense_is_a_clear_type_error():
    layer = fnn.dense(2)
    params = params_for(layer, (3,), jnp.float32)
    with pytest.raises(TypeError, match="floating-point input.*int32.*astype"):
        fnn.apply(layer, params, np.ones((2, 3), np.int32))


def test_labels_out_of_range_raise_eagerly():
    loss = fnn.softmax_cross_entropy()
    logits = jnp.zeros((3, 4), jnp.float32)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\), got \[-1, 4\]"):
        loss.forward(logits, jnp.array([0, 4, -1]))


def test_labels_out_of_range_under_jit_give_a_nan_loss():
    loss = fnn.softmax_cross_entropy()
    logits = jnp.zeros((3, 4), jnp.float32)
    value = jax.jit(lambda z, y: loss.forward(z, y)[0])(logits, jnp.array([0, 4, 1]))
    assert np.isnan(value)
    ok = jax.jit(lambda z, y: loss.forward(z, y)[0])(logits, jnp.array([0, 3, 1]))
    assert ok == pytest.approx(np.log(4))


def test_label_shape_and_target_shape_errors():
    loss = fnn.softmax_cross_entropy()
    with pytest.raises(ValueError, match=r"integer labels must have shape \(3,\)"):
        loss.forward(jnp.zeros((3, 4), jnp.float32), jnp.zeros((3, 1), jnp.int32))
    with pytest.raises(ValueError, match="same shape"):
        fnn.mean_squared_error().forward(jnp.zeros((3, 1)), jnp.zeros((3,)))


def test_invalid_hyperparameters():
    with pytest.raises(ValueError, match="out_features"):
        fnn.dense(0)
    with pytest.raises(ValueError, match="negative_slope"):
        fnn.leaky_relu(-0.1)
    with pytest.raises(ValueError, match="alpha"):
        fnn.elu(0.0)
    with pytest.raises(ValueError, match="delta"):
        fnn.huber(0.0)
    with pytest.raises(TypeError, match="fnn Layer"):
        fnn.serial(fnn.dense(2), lambda x: x)


def test_out_of_range_labels_under_jit_get_no_target_in_the_gradient():
    loss = fnn.softmax_cross_entropy()
    logits = jnp.zeros((3, 4), jnp.float64)

    @jax.jit
    def grad(z, y):
        value, residuals = loss.forward(z, y)
        return loss.backward(residuals, jnp.ones_like(value))

    g = grad(logits, jnp.array([1, 4, -1]))
    np.testing.assert_allclose(g[0], (np.full(4, 0.25) - np.eye(4)[1]) / 3)
    np.testing.assert_allclose(g[1:], np.full((2, 4), 0.25 / 3))  # softmax only: no target

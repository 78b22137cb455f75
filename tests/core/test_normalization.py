"""layer_norm and residual beyond their catalogue items (tests/check/test_catalogue.py):
known-value forwards, planted bugs and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.battery import normal, params_for
from helpers.planted import planted_bug

import fnn

KEY = jax.random.PRNGKey(0)


def test_layer_norm_rows_have_mean_zero_and_unit_variance():
    layer = fnn.layer_norm(epsilon=1e-12)
    x = normal((4, 2, 6), scale=5.0, loc=3.0)
    params = fnn.init(layer, KEY, (2, 6), jnp.float64)
    np.testing.assert_array_equal(params["scale"], np.ones(6))
    np.testing.assert_array_equal(params["bias"], np.zeros(6))
    # scale and bias act per feature: y = x̂ ⊙ scale + bias
    scale = np.arange(1.0, 7.0)
    bias = np.full((6,), -2.0)
    apply = jax.jit(lambda params, x: fnn.apply(layer, params, x))  # compiled once, run twice
    y = np.asarray(apply(params, x))
    y2 = np.asarray(apply({"scale": scale, "bias": bias}, x))
    np.testing.assert_allclose(np.mean(y, axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.var(y, axis=-1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(y2, y * scale.reshape(1, 1, 6) + bias.reshape(1, 1, 6))


def test_layer_norm_known_row():
    """x = (1, 2, 3): μ = 2, var = 2/3, x̂ = (−1, 0, 1)·sqrt(3/2)."""
    layer = fnn.layer_norm(epsilon=1e-300)
    params = fnn.init(layer, KEY, (3,), jnp.float64)  # scale 1, bias 0
    y = jax.jit(lambda params, x: fnn.apply(layer, params, x))(params, np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(y, np.sqrt(1.5) * np.array([[-1.0, 0.0, 1.0]]), rtol=1e-14)


def test_residual_adds_the_input_and_keeps_the_inner_params():
    inner = fnn.dense(3)
    layer = fnn.residual(inner)
    assert layer.name == "residual(dense(3))" and layer.sublayers == (inner,)
    params = params_for(layer, (3,))
    x = normal((2, 3))
    both = jax.jit(lambda params, x: (fnn.apply(layer, params, x), fnn.apply(inner, params, x)))
    y, inner_y = both(params, x)
    np.testing.assert_allclose(y, np.asarray(x) + np.asarray(inner_y))


# ------------------------------------------------------------------------ planted bugs


@planted_bug("layer_norm")
def test_checker_catches_layer_norm_without_the_variance_term():
    """dx = (1/σ)(g − mean(g)) forgets the path through σ (− x̂·mean(g ⊙ x̂))."""
    good = fnn.layer_norm()

    def backward(params, residuals, dy):
        x_hat, inv_sigma = residuals
        grads, _ = good.backward(params, residuals, dy)
        g = dy * params["scale"].reshape((1,) * (dy.ndim - 1) + (-1,))
        return grads, inv_sigma * (g - jnp.mean(g, axis=-1, keepdims=True))

    result = fnn.check_layer(good._replace(backward=backward), (5,))
    assert not result.passed, str(result)
    assert result.finite_differences.startswith("failed")
    bad = {leaf for leaf, e in result.leaves.items() if e["rel"] > 1e-10}
    assert bad == {"x"} and result.leaves["x"]["rel"] > 0.1


@planted_bug("rms_norm")
@pytest.mark.parametrize("kind", ["mean_term", "no_rms_term"])
def test_checker_catches_rms_norm_with_layer_norms_mean_term_or_without_its_own(kind):
    """rms_norm's dx = (1/rms)(g − x̂·mean(g ⊙ x̂)): planted, layer_norm's path through
    μ (− mean(g)), which rms_norm does not have, or the path through rms forgotten."""
    good = fnn.rms_norm()

    def backward(params, residuals, dy):
        x_hat, inv_rms = residuals
        grads, _ = good.backward(params, residuals, dy)
        g = dy * params["scale"].reshape((1,) * (dy.ndim - 1) + (-1,))
        gx_mean = jnp.mean(g * x_hat, axis=-1, keepdims=True)
        if kind == "mean_term":
            return grads, inv_rms * (g - jnp.mean(g, axis=-1, keepdims=True) - x_hat * gx_mean)
        return grads, inv_rms * g

    result = fnn.check_layer(good._replace(backward=backward), (5,))
    assert not result.passed, str(result)
    assert result.finite_differences.startswith("failed")
    bad = {leaf for leaf, e in result.leaves.items() if e["rel"] > 1e-10}
    assert bad == {"x"} and result.leaves["x"]["rel"] > 0.1


@planted_bug("residual")
def test_checker_catches_residual_without_the_skip_gradient():
    """dx = dx_inner forgets the identity path's dy."""
    inner = fnn.serial(fnn.dense(5), fnn.tanh(), fnn.dense(5))
    good = fnn.residual(inner)
    result = fnn.check_layer(good._replace(backward=inner.backward), (5,))
    assert not result.passed, str(result)
    assert result.finite_differences.startswith("failed")
    bad = {leaf for leaf, e in result.leaves.items() if e["rel"] > 1e-10}
    assert bad == {"x"} and result.leaves["x"]["rel"] > 0.1


# --------------------------------------------------------------------------- bad input


def test_layer_norm_features_mismatch_names_the_layer_the_expected_and_the_received_shape():
    layer = fnn.layer_norm()
    params = params_for(layer, (5,), jnp.float32)
    with pytest.raises(ValueError) as info:
        layer.forward(params, np.ones((2, 4), np.float32))
    message = str(info.value)
    assert message.startswith("layer_norm") and "(batch, ..., 5)" in message
    assert "(2, 4)" in message


def test_layer_norm_in_a_network_names_the_layer_index():
    net = fnn.serial(fnn.dense(4), fnn.layer_norm())
    params = params_for(net, (3,), jnp.float32)
    params = (params[0], {k: np.asarray(v)[:3] for k, v in params[1].items()})
    with pytest.raises(
        ValueError, match=r"\(batch, \.\.\., 3\).*\(2, 4\)\nin layer 1 \(layer_norm\)"
    ):
        fnn.apply(net, params, np.ones((2, 3), np.float32))


def test_layer_norm_rejects_a_flat_input_and_integers_and_a_bad_epsilon():
    layer = fnn.layer_norm()
    params = params_for(layer, (5,), jnp.float32)
    with pytest.raises(ValueError, match=r"layer_norm.*got \(5,\)"):
        layer.forward(params, np.ones((5,), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        layer.forward(params, np.ones((2, 5), np.int32))
    with pytest.raises(ValueError, match="epsilon"):
        fnn.layer_norm(epsilon=0.0)


def test_residual_around_a_shape_changing_layer_names_it_and_both_shapes():
    layer = fnn.residual(fnn.dense(3))
    with pytest.raises(ValueError) as info:
        layer.init(KEY, (5,), jnp.float32)
    message = str(info.value)
    assert message.startswith("residual(dense(3))") and "dense(3)" in message
    assert "input (5,)" in message and "output (3,)" in message
    with pytest.raises(TypeError, match="fnn Layer"):
        fnn.residual(lambda x: x)

"""The losses' forwards: values worked by hand, stability on large logits, the clip of
binary_cross_entropy, and scalar outputs in the input's dtype. Their backwards are
catalogue items (tests/test_catalogue.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn

LOSS_INPUTS = {
    "mean_squared_error": lambda: (np.linspace(-1, 1, 6).reshape(3, 2), np.zeros((3, 2))),
    "huber": lambda: (np.linspace(-3, 3, 6).reshape(3, 2), np.zeros((3, 2))),
    "binary_cross_entropy": lambda: (np.full((3, 1), 0.25), np.ones((3, 1))),
    "sigmoid_binary_cross_entropy": lambda: (np.zeros((3, 1)), np.ones((3, 1))),
    "softmax_cross_entropy": lambda: (np.zeros((3, 4)), np.array([0, 1, 3], np.int32)),
}


@pytest.mark.parametrize("name", list(LOSS_INPUTS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16])
def test_loss_value_is_a_scalar_of_the_input_dtype(name, dtype):
    loss = fnn.get_loss(name)
    pred, target = LOSS_INPUTS[name]()
    pred = jnp.asarray(pred, dtype)
    target = jnp.asarray(target, target.dtype if target.dtype.kind == "i" else dtype)

    def forward_backward(pred, target):
        value, residuals = loss.forward(pred, target)
        return value, loss.backward(residuals, jnp.ones_like(value))

    value, dpred = jax.eval_shape(forward_backward, pred, target)  # traced, not run
    assert value.shape == () and value.dtype == dtype
    assert dpred.shape == pred.shape and dpred.dtype == dtype


def test_loss_values_known_cases():
    """Values worked by hand, so the forward passes are right, not just consistent."""
    f64 = jnp.float64
    mse, _ = fnn.mean_squared_error().forward(jnp.array([[1.0, 3.0]], f64), jnp.zeros((1, 2), f64))
    assert mse == pytest.approx(5.0)  # (1 + 9) / 2
    hub, _ = fnn.huber(1.0).forward(jnp.array([[0.5, 3.0]], f64), jnp.zeros((1, 2), f64))
    assert hub == pytest.approx((0.125 + 2.5) / 2)  # ½·0.5², 1·(3 − ½)
    sbce, _ = fnn.sigmoid_binary_cross_entropy().forward(
        jnp.zeros((2, 1), f64), jnp.ones((2, 1), f64)
    )
    assert sbce == pytest.approx(np.log(2))
    sce, _ = fnn.softmax_cross_entropy().forward(jnp.zeros((2, 4), f64), jnp.array([1, 2]))
    assert sce == pytest.approx(np.log(4))


def test_sigmoid_bce_on_logits_is_stable_and_its_gradient_is_a_minus_y():
    loss = fnn.sigmoid_binary_cross_entropy()
    z = jnp.array([[-1000.0], [0.0], [1000.0]], jnp.float32)
    t = jnp.array([[1.0], [0.5], [0.0]], jnp.float32)
    value, residuals = loss.forward(z, t)
    assert jnp.isfinite(value) and value == pytest.approx((1000 + np.log(2) + 1000) / 3, rel=1e-6)
    dz = loss.backward(residuals, jnp.ones_like(value))
    np.testing.assert_allclose(dz, (jax.nn.sigmoid(z) - t) / 3, rtol=1e-6)  # (A − Y)/m


def test_binary_cross_entropy_clips_probabilities():
    loss = fnn.binary_cross_entropy()
    p = jnp.array([[0.0], [1.0]], jnp.float32)
    t = jnp.array([[1.0], [0.0]], jnp.float32)
    value, residuals = loss.forward(p, t)
    eps = np.finfo(np.float32).eps
    assert value == pytest.approx(-np.log(eps), rel=1e-5)  # log of the clipped p, finite
    np.testing.assert_array_equal(loss.backward(residuals, jnp.ones_like(value)), 0.0)

"""The losses' forwards: values worked by hand, stability on large logits, the clip of
binary_cross_entropy, and scalar outputs in the input's dtype. Their backwards are
catalogue items (tests/check/test_catalogue.py)."""

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

    @jax.jit  # the four forwards in one compiled program
    def values():
        mse = fnn.mean_squared_error().forward(jnp.array([[1.0, 3.0]]), jnp.zeros((1, 2)))
        hub = fnn.huber(1.0).forward(jnp.array([[0.5, 3.0]]), jnp.zeros((1, 2)))
        sbce = fnn.sigmoid_binary_cross_entropy().forward(jnp.zeros((2, 1)), jnp.ones((2, 1)))
        sce = fnn.softmax_cross_entropy().forward(jnp.zeros((2, 4)), jnp.array([1, 2]))
        return [value for value, _ in (mse, hub, sbce, sce)]

    mse, hub, sbce, sce = values()  # float64 (64-bit types are on in the suite)
    assert mse.dtype == jnp.float64
    assert mse == pytest.approx(5.0)  # (1 + 9) / 2
    assert hub == pytest.approx((0.125 + 2.5) / 2)  # ½·0.5², 1·(3 − ½)
    assert sbce == pytest.approx(np.log(2))
    assert sce == pytest.approx(np.log(4))


def test_sigmoid_bce_on_logits_is_stable_and_its_gradient_is_a_minus_y():
    loss = fnn.sigmoid_binary_cross_entropy()
    z = np.array([[-1000.0], [0.0], [1000.0]], np.float32)
    t = np.array([[1.0], [0.5], [0.0]], np.float32)

    @jax.jit
    def forward_backward(z, t):
        value, residuals = loss.forward(z, t)
        return value, loss.backward(residuals, jnp.ones_like(value)), jax.nn.sigmoid(z)

    value, dz, sigmoid = forward_backward(z, t)
    assert np.isfinite(value) and value == pytest.approx((1000 + np.log(2) + 1000) / 3, rel=1e-6)
    np.testing.assert_allclose(dz, (sigmoid - t) / 3, rtol=1e-6)  # (A − Y)/m


def test_binary_cross_entropy_clips_probabilities():
    loss = fnn.binary_cross_entropy()
    p = np.array([[0.0], [1.0]], np.float32)
    t = np.array([[1.0], [0.0]], np.float32)

    @jax.jit
    def forward_backward(p, t):
        value, residuals = loss.forward(p, t)
        return value, loss.backward(residuals, jnp.ones_like(value))

    value, dp = forward_backward(p, t)
    eps = np.finfo(np.float32).eps
    assert value == pytest.approx(-np.log(eps), rel=1e-5)  # log of the clipped p, finite
    np.testing.assert_array_equal(dp, 0.0)


PREDICTS = {
    "mean_squared_error": None,
    "huber": None,
    "binary_cross_entropy": "binary_probabilities",
    "sigmoid_binary_cross_entropy": "binary_logits",
    "softmax_cross_entropy": "class_logits",
}


@pytest.mark.parametrize("name", list(LOSS_INPUTS))
def test_a_loss_declares_what_its_predictions_mean_and_the_task_follows(name):
    """`Loss.predicts`, not the name, tells binary from regression and picks the binary
    threshold: 0.5 on probabilities, 0 on logits."""
    loss = fnn.get_loss(name)
    assert loss.predicts == PREDICTS[name]
    floats, labels = np.zeros((4, 1), np.float32), np.zeros(4, np.int32)
    assert fnn.tasks.infer_task(labels, loss) == "classification"
    binary = name in ("binary_cross_entropy", "sigmoid_binary_cross_entropy")
    assert fnn.tasks.infer_task(floats, loss) == ("binary" if binary else "regression")
    assert fnn.tasks.binary_threshold(loss) == (0.5 if name == "binary_cross_entropy" else 0.0)


def test_a_loss_of_your_own_is_recognised_by_what_it_predicts_not_by_its_name():
    bce = fnn.binary_cross_entropy()
    named_only = fnn.Loss(bce.forward, bce.backward, "binary_cross_entropy")
    assert fnn.tasks.infer_task(np.zeros((4, 1), np.float32), named_only) == "regression"
    mine = fnn.Loss(bce.forward, bce.backward, "my_bce", predicts="binary_probabilities")
    assert fnn.tasks.infer_task(np.zeros((4, 1), np.float32), mine) == "binary"
    assert fnn.tasks.binary_threshold(mine) == 0.5

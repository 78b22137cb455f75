"""The same battery for every built-in layer, activation and loss (STYLE.md 13–15)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fnn
from fnn.activations import ACTIVATIONS
from fnn.check import BUILTIN_CHECKS, run_checks

KEY = jax.random.PRNGKey(0)

LAYERS = {
    "dense": lambda: fnn.dense(3),
    "dense_no_bias": lambda: fnn.dense(3, use_bias=False),
    **ACTIVATIONS,
    "mlp": lambda: fnn.mlp([6, 3], "tanh"),
    "tutorial_net": lambda: fnn.mlp([5, 4, 1], "sigmoid", output_activation="sigmoid"),
}


# Whole networks: their layers are checked one by one (against finite differences in
# float64 and in float32 too); the networks themselves against jax.vjp in float64.
NETWORKS = (
    "cnn",
    "cnn_batch_norm_train",
    "transformer_block",
    "tutorial_net",
    "residual_mlp",
    "serial_dense_softmax",
    *(n for n in BUILTIN_CHECKS if n.startswith("mlp_")),  # batch_norm + dropout ones too
)


@pytest.mark.parametrize("name", [n for n in BUILTIN_CHECKS if n not in NETWORKS])
def test_manual_backward_matches_vjp_and_finite_differences_float64(name):
    (result,) = run_checks([name], "float64")
    assert result.passed, str(result)
    assert result.max_rel_err <= 1e-10
    if not name.startswith("tutorial_model"):
        assert result.finite_differences == "passed"


@pytest.mark.parametrize("name", NETWORKS)
def test_whole_networks_match_vjp_float64(name):
    (result,) = run_checks([name], "float64", finite_differences=False)
    assert result.passed, str(result)
    assert result.max_rel_err <= 1e-10
    assert result.finite_differences == "skipped (disabled)"


@pytest.mark.parametrize("name", [n for n in BUILTIN_CHECKS if n not in NETWORKS])
def test_manual_backward_matches_vjp_float32(name):
    (result,) = run_checks([name], "float32")
    assert result.passed, str(result)
    assert result.dtype == "float32"


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("in_shape", [(5,), (2, 5)])
def test_output_shape_agrees_with_init_and_vjp_shapes_with_inputs(name, in_shape):
    layer = LAYERS[name]()
    out_shape, params = layer.init(KEY, in_shape, jnp.float32)
    x = jax.random.normal(KEY, (4, *in_shape), jnp.float32)
    y, residuals = layer.forward(params, x)
    assert y.shape == (4, *out_shape)
    dparams, dx = layer.backward(params, residuals, jnp.ones_like(y))
    assert dx.shape == x.shape
    assert jax.tree.structure(dparams) == jax.tree.structure(params)
    assert jax.tree.map(jnp.shape, dparams) == jax.tree.map(jnp.shape, params)


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16])
def test_dtype_passes_through(name, dtype):
    layer = LAYERS[name]()
    _, params = layer.init(KEY, (5,), dtype)
    x = jax.random.normal(KEY, (4, 5), dtype)
    y, residuals = layer.forward(params, x)
    assert y.dtype == dtype
    dparams, dx = layer.backward(params, residuals, jnp.ones_like(y))
    assert dx.dtype == dtype
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(dparams))


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
    value, residuals = loss.forward(pred, target)
    assert value.shape == () and value.dtype == dtype
    dpred = loss.backward(residuals, jnp.ones_like(value))
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


@settings(max_examples=8, deadline=None)
@given(
    batch=st.integers(1, 5),
    features=st.integers(1, 6),
    width=st.integers(1, 6),
    activation=st.sampled_from(sorted(ACTIVATIONS)),
)
def test_random_shapes_dense_and_activation(batch, features, width, activation):
    layer = fnn.serial(fnn.dense(width), fnn.get_activation(activation))
    result = fnn.check_layer(layer, (features,), batch=batch, finite_differences=False)
    assert result.passed, str(result)

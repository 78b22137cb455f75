"""batch_norm and dropout: the Ctx contract (training/evaluation, keys, running
statistics), their backward passes against planted bugs, and their state through
training steps, fit and checkpoints. Their float64/float32 checks against jax.vjp and
finite differences are catalogue items (tests/check/test_catalogue.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers.battery import normal, params_for
from helpers.planted import planted_bug

import fnn
from fnn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

KEY = jax.random.PRNGKey(0)
TRAIN = fnn.Ctx(train=True)


# ---------------------------------------------------------------------------------------
# batch_norm


def _bn_input(shape=(6, 4), seed=1):
    return normal(shape, seed=seed, scale=2.0, loc=3.0)


def _apply(layer, params, x, ctx=None):
    """`fnn.apply` compiled as one program (op by op, each operation would compile)."""
    return np.asarray(jax.jit(lambda params, x: fnn.apply(layer, params, x, ctx))(params, x))


def test_batch_norm_training_output_matches_numpy():
    layer = fnn.batch_norm()
    params = {"scale": np.array([1.0, 2.0, 0.5, 1.0]), "bias": np.array([0.0, 1.0, 0.0, -1.0])}
    x = _bn_input()
    y = _apply(layer, params, x, TRAIN)
    xn = np.asarray(x)
    expected = (xn - xn.mean(0)) / np.sqrt(xn.var(0) + 1e-5) * np.asarray(params["scale"])
    np.testing.assert_allclose(y, expected + np.asarray(params["bias"]), rtol=1e-12)


def test_batch_norm_nhwc_normalises_each_channel_over_batch_and_space():
    layer = fnn.batch_norm()
    x = _bn_input((3, 4, 5, 2))
    params = fnn.init(layer, KEY, (4, 5, 2), jnp.float64)  # scale 1, bias 0
    y = _apply(layer, params, x, TRAIN)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1, rtol=1e-5)  # var/(var + ε)


def test_running_statistics_are_an_exponential_moving_average_of_batch_statistics():
    layer = fnn.batch_norm(momentum=0.8)
    x = _bn_input()
    params = fnn.init(layer, KEY, (4,), jnp.float64)
    state = fnn.init_state(layer, params)
    assert np.all(np.asarray(state["mean"]) == 0) and np.all(np.asarray(state["var"]) == 1)

    @jax.jit
    def step(params, x, state):
        _, residuals = fnn.forward(layer, params, x, fnn.Ctx(True, None, state))
        return fnn.update_state(layer, state, residuals)

    new = step(params, x, state)
    xn = np.asarray(x)
    np.testing.assert_allclose(new["mean"], 0.2 * xn.mean(0), rtol=1e-12)
    np.testing.assert_allclose(new["var"], 0.8 + 0.2 * xn.var(0), rtol=1e-12)


def test_evaluation_uses_the_running_statistics_not_the_batch():
    layer = fnn.batch_norm(use_scale=False)
    params = fnn.init(layer, KEY, (4,), jnp.float64)
    state = {"mean": np.full((4,), 2.0), "var": np.full((4,), 4.0)}
    x = _bn_input()
    y = _apply(layer, params, x, fnn.Ctx(state=state))
    np.testing.assert_allclose(y, (np.asarray(x) - 2) / np.sqrt(4 + 1e-5), rtol=1e-12)
    assert not np.allclose(y, _apply(layer, params, x, TRAIN))


def test_evaluation_without_running_statistics_says_how_to_get_them():
    net = fnn.serial(fnn.dense(4), fnn.batch_norm())
    params = params_for(net, (3,), jnp.float32)
    with pytest.raises(
        ValueError, match=r"batch_norm: evaluation uses the running(?s:.*)in layer 1 \(batch_norm\)"
    ):
        fnn.apply(net, params, np.ones((2, 3)))
    with pytest.raises(ValueError, match="fnn.init_state"):
        fnn.apply(net, params, np.ones((2, 3)), fnn.Ctx())


def test_batch_norm_bad_inputs_name_the_layer_and_the_shapes():
    layer = fnn.batch_norm()
    params = params_for(layer, (4,), jnp.float32)
    with pytest.raises(
        ValueError, match=r"batch_norm: expected input of shape \(batch, \.\.\., 4\), got \(2, 5\)"
    ):
        fnn.apply(layer, params, np.ones((2, 5)), TRAIN)
    bad_state = fnn.Ctx(state={"mean": np.zeros(3), "var": np.ones(3)})
    with pytest.raises(
        ValueError, match=r"expected running mean and var of shape \(4,\), got \(3,\)"
    ):
        fnn.apply(layer, params, np.ones((2, 4)), bad_state)
    with pytest.raises(TypeError, match="batch_norm: expected a floating-point input"):
        fnn.apply(layer, params, np.ones((2, 4), np.int32), TRAIN)
    for bad in (dict(momentum=1.0), dict(epsilon=0.0), dict(use_scale=False, use_bias=False)):
        with pytest.raises(ValueError, match="batch_norm: "):
            fnn.batch_norm(**bad)


def test_a_serial_state_of_the_wrong_length_is_named():
    net = fnn.serial(fnn.dense(4), fnn.batch_norm())
    params = params_for(net, (3,), jnp.float32)
    with pytest.raises(ValueError, match="serial: expected state for 2 layers"):
        fnn.apply(net, params, np.ones((2, 3)), fnn.Ctx(state=((),)))


def _bn_bug(kind):
    """batch_norm with a planted bug in its training-mode backward."""
    good = fnn.batch_norm()

    def backward(params, res, dy):
        x_hat, inv = res.x_hat, res.inv_sigma
        axes = tuple(range(dy.ndim - 1))
        g = dy * params["scale"].reshape((1,) * (dy.ndim - 1) + (-1,))
        grads = {"scale": jnp.sum(dy * x_hat, axis=axes), "bias": jnp.sum(dy, axis=axes)}
        g_mean = jnp.mean(g, axis=axes, keepdims=True)
        gx_mean = jnp.mean(g * x_hat, axis=axes, keepdims=True)
        if kind == "no_mean_term":  # forgets the path through μ
            return grads, inv * (g - x_hat * gx_mean)
        if kind == "no_variance_term":  # forgets the path through σ
            return grads, inv * (g - g_mean)
        if kind == "evaluation_formula":  # treats the batch statistics as constants
            return grads, inv * g
        if kind == "bias_mean_not_sum":
            grads["bias"] = jnp.mean(dy, axis=axes)
        if kind == "scale_without_x_hat":
            grads["scale"] = jnp.sum(dy, axis=axes)
        return grads, inv * (g - g_mean - x_hat * gx_mean)

    return good._replace(backward=backward)


@planted_bug("batch_norm")
@pytest.mark.parametrize(
    "kind",
    [
        "no_mean_term",
        "no_variance_term",
        "evaluation_formula",
        "bias_mean_not_sum",
        "scale_without_x_hat",
    ],
)
def test_checker_catches_planted_batch_norm_bugs(kind):
    result = fnn.check_layer(_bn_bug(kind), (3, 3, 2), ctx=TRAIN, finite_differences=False)
    assert not result.passed
    assert result.max_rel_err > 1e-3, str(result)


def test_the_planted_batch_norm_harness_passes_without_a_bug():
    assert fnn.check_layer(_bn_bug("none"), (3, 3, 2), ctx=TRAIN).passed


# ---------------------------------------------------------------------------------------
# dropout


def test_dropout_keeps_one_minus_rate_scales_by_its_inverse_and_preserves_the_mean():
    layer = fnn.dropout(0.25)
    x = np.ones((200, 100))
    y = _apply(layer, (), x, fnn.Ctx(True, jax.random.PRNGKey(3)))
    kept = np.asarray(y) != 0
    assert abs(kept.mean() - 0.75) < 0.01  # 20 000 draws: standard error 0.003
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)


def test_dropout_mask_is_a_function_of_the_key():
    layer = fnn.dropout(0.5)
    x = np.ones((4, 16))

    @jax.jit
    def masks(x):
        return [fnn.apply(layer, (), x, fnn.Ctx(True, jax.random.PRNGKey(k))) for k in (1, 1, 2)]

    a, b, c = (np.asarray(y) for y in masks(x))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_dropout_backward_uses_the_forward_mask():
    layer = fnn.dropout(0.5)
    x = normal((4, 19), jnp.float32)  # 19: the packed mask's last byte is partial

    @jax.jit
    def run(x):
        y, residuals = fnn.forward(layer, (), x, fnn.Ctx(True, jax.random.PRNGKey(4)))
        return y, residuals, layer.backward((), residuals, jnp.ones_like(y))[1]

    y, residuals, dx = run(x)
    assert residuals.train and residuals.keep.dtype == jnp.uint8
    assert residuals.keep.shape == (4, 3)  # 1 bit per element
    np.testing.assert_array_equal(np.asarray(dx) != 0, np.asarray(y) != 0)


def test_dropout_is_the_identity_in_evaluation_and_at_rate_zero():
    x = normal((3, 5), jnp.float32)

    @jax.jit
    def run(x):
        evaluation = fnn.apply(fnn.dropout(0.5), (), x)
        return evaluation, fnn.apply(fnn.dropout(0.0), (), x, fnn.Ctx(True, KEY))

    evaluation, rate_zero = run(x)
    assert np.array_equal(evaluation, x) and np.array_equal(rate_zero, x)


def test_dropout_errors_name_the_layer_and_what_is_needed():
    with pytest.raises(ValueError, match=r"dropout\(0.5\): training mode needs a PRNG key"):
        fnn.apply(fnn.dropout(0.5), (), np.ones((2, 3)), TRAIN)
    for rate in (1.0, -0.1, "0.5"):
        with pytest.raises(ValueError, match=r"dropout: rate must be a float in \[0, 1\)"):
            fnn.dropout(rate)


def test_serial_gives_each_dropout_its_own_key():
    net = fnn.serial(fnn.dropout(0.5), fnn.dropout(0.5))
    ctx = fnn.Ctx(True, jax.random.PRNGKey(5))
    _, (first, second) = jax.jit(lambda x: fnn.forward(net, ((), ()), x, ctx))(np.ones((4, 32)))
    assert not np.array_equal(first.keep, second.keep)


# ---------------------------------------------------------------------------------------
# Training with state


def _blobs(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 6)) + 3.0 * np.eye(3, 6)[y]
    return jnp.asarray(x), jnp.asarray(y)


NET = fnn.mlp([16, 3], batch_norm=True, dropout=0.2)


def test_a_step_of_a_network_with_dropout_without_a_key_says_what_to_pass():
    step = fnn.make_train_step(NET, fnn.softmax_cross_entropy(), optax.sgd(0.1))
    params = params_for(NET, (6,))
    x, y = _blobs(8)
    with pytest.raises(ValueError, match=r"needs a PRNG key.*step\(train_state, batch, key\)"):
        step(fnn.TrainState.create(NET, params, optax.sgd(0.1)), (x, y))


def test_step_manual_equals_autodiff_state_included():
    x, y = _blobs(32)
    params = params_for(NET, (6,))
    start = fnn.TrainState.create(NET, params, optax.sgd(0.1))
    out = {}
    for mode in ("manual", "autodiff"):
        step = fnn.make_train_step(NET, fnn.softmax_cross_entropy(), optax.sgd(0.1), mode)
        out[mode] = step(start, (x, y), jax.random.PRNGKey(9))
    for a, b in zip(jax.tree.leaves(out["manual"]), jax.tree.leaves(out["autodiff"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    assert not np.allclose(out["manual"][0].state[1]["mean"], 0)  # the running mean moved


def test_check_model_passes_a_network_with_batch_norm_and_dropout_in_training():
    """A dense bias right before batch_norm has a zero gradient up to rounding; the
    checker measures it against the gradient's scale, not its own ~1e-17."""
    x, y = _blobs(16)
    ctx = lambda p: fnn.Ctx(True, KEY, fnn.init_state(NET, p))  # noqa: E731
    result = fnn.check_model(NET, fnn.softmax_cross_entropy(), x, y, ctx=ctx)
    assert result.passed, str(result)
    assert result.max_rel_err < 1e-12


@pytest.fixture(scope="module")
def fitted():
    x, y = _blobs()
    x = np.asarray(x, np.float32)
    params = fnn.init(NET, KEY, (6,), jnp.float32)
    optimizer = optax.adam(1e-2)
    return fnn.fit(
        NET,
        fnn.softmax_cross_entropy(),
        optimizer,
        fnn.TrainState.create(NET, params, optimizer),
        (x, y),
        (x, y),
        key=KEY,
        epochs=6,
        batch_size=16,
        progress=False,
    )


@pytest.mark.slow  # a whole training run (the fixture)
def test_fit_learns_carries_the_state_and_evaluates_on_it(fitted):
    assert fitted.history["test_accuracy"][-1] >= 0.9
    bn = fitted.state.state[1]  # mlp: dense, batch_norm, relu, dropout, dense
    assert set(bn) == {"mean", "var"} and not np.allclose(bn["mean"], 0)
    x, y = _blobs()
    evaluate = jax.jit(lambda p, x, state: fnn.apply(NET, p, x, fnn.Ctx(state=state)))
    trained = fitted.state  # a TrainState: params, opt_state, state
    logits = np.asarray(evaluate(trained.params, np.asarray(x, np.float32), trained.state))
    accuracy = float(np.mean(np.argmax(logits, -1) == np.asarray(y)))
    assert accuracy == pytest.approx(fitted.history["test_accuracy"][-1], abs=1e-6)


@pytest.mark.slow  # the fixture's training run
def test_checkpoint_round_trips_the_state_and_rejects_a_mismatch(fitted, tmp_path):
    fitted = fitted.state  # the TrainState
    path = save_checkpoint(
        tmp_path / "c.npz",
        params=fitted.params,
        opt_state=fitted.opt_state,
        epoch=6,
        key=KEY,
        config={},
        history={},
        state=fitted.state,
    )
    like = fnn.init_state(NET, fitted.params)
    saved = load_checkpoint(
        path, params_like=fitted.params, opt_state_like=fitted.opt_state, state_like=like
    )
    for a, b in zip(jax.tree.leaves(saved.state), jax.tree.leaves(fitted.state), strict=True):
        np.testing.assert_array_equal(a, b)
    other = fnn.init_state(fnn.mlp([16, 3], batch_norm=False), fitted.params)
    with pytest.raises(CheckpointError, match=r"state\[1\]\['mean'\]: in the checkpoint"):
        load_checkpoint(
            path, params_like=fitted.params, opt_state_like=fitted.opt_state, state_like=other
        )

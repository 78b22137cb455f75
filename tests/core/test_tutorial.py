"""The tutorial, reproduced: fnn's trajectory equals the tutorial's numpy code in float64.

The examples that train (the 10 000-step trajectory, the seed example's run, the
learning-rate sweep and divergence demo) are slow; the learning-rate tables are not."""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name):
    sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seed_example = load_example("seed_backprop")
lr_example = load_example("learning_rate")


# --- the tutorial's code, transcribed (samples are COLUMNS) ------------------------------
def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def forward(X, W1, W2, W3, b1, b2, b3):
    Z1 = np.dot(W1.T, X) + b1
    A1 = sigmoid(Z1)
    Z2 = np.dot(W2.T, A1) + b2
    A2 = sigmoid(Z2)
    Z3 = np.dot(W3.T, A2) + b3
    A3 = sigmoid(Z3)
    return Z1, Z2, Z3, A1, A2, A3


def backward(Y, X, A3, A2, A1, Z3, Z2, Z1, W3, W2, W1):
    n, m = np.shape(X)
    dZ3 = A3 - Y
    dW3 = 1 / m * np.dot(A2, dZ3.T)
    db3 = 1 / m * np.sum(dZ3, axis=1, keepdims=True)
    dZ2 = np.dot(W3, dZ3) * A2 * (1 - A2)
    dW2 = 1 / m * np.dot(A1, dZ2.T)
    db2 = 1 / m * np.sum(dZ2, axis=1, keepdims=True)
    dZ1 = np.dot(W2, dZ2) * A1 * (1 - A1)
    dW1 = 1 / m * np.dot(X, dZ1.T)
    db1 = 1 / m * np.sum(dZ1, axis=1, keepdims=True)
    return dZ3, dZ2, dZ1, dW3, dW2, dW1, db3, db2, db1


def costfunction(Y, A3):
    m, n = np.shape(Y)
    J = np.sum(Y * np.log(A3) + (1 - Y) * np.log(1 - A3)) / m
    return -J


def tutorial_numpy(X, Y, W1, W2, W3, b1, b2, b3, alpha, number):
    costs = []
    for _ in range(number):
        Z1, Z2, Z3, A1, A2, A3 = forward(X, W1, W2, W3, b1, b2, b3)
        dZ3, dZ2, dZ1, dW3, dW2, dW1, db3, db2, db1 = backward(
            Y, X, A3, A2, A1, Z3, Z2, Z1, W3, W2, W1
        )
        W1 = W1 - alpha * dW1
        W2 = W2 - alpha * dW2
        W3 = W3 - alpha * dW3
        b1 = b1 - alpha * db1
        b2 = b2 - alpha * db2
        b3 = b3 - alpha * db3
        costs.append(costfunction(Y, A3))
    return np.array(costs), (W1, W2, W3, b1, b2, b3)


# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fnn_reproduces_the_tutorial_trajectory_in_float64():
    steps = 10_000
    x, y = seed_example.tutorial_data(seed=0)  # batch-first: x (200, 100), y (200, 1)
    net = seed_example.tutorial_network()
    params = fnn.init(net, jax.random.PRNGKey(0), (100,), jnp.float64)
    # the same initial values in the tutorial's layout: W (in, out) is shared, b is a column
    W = [np.asarray(params[i]["W"]) for i in (0, 2, 4)]
    b = [np.asarray(params[i]["b"])[:, None] for i in (0, 2, 4)]
    assert all(0 <= w.min() and w.max() < 0.01 for w in W)  # U(0, 1)·0.01
    costs, final = tutorial_numpy(x.T, y.T, *W, *b, alpha=0.1, number=steps)

    trained, losses = seed_example.gradient_descent(
        net,
        fnn.sigmoid_binary_cross_entropy(),
        params,
        jnp.asarray(x, jnp.float64),
        jnp.asarray(y, jnp.float64),
        lr=0.1,
        steps=steps,
    )
    assert losses.dtype == jnp.float64
    # The tutorial's costfunction reads `m, n = np.shape(Y)` with Y of shape (1, m), so it
    # divides by 1: its J is the SUM over the 200 samples. Its gradients do divide by m.
    # fnn reports the mean, the loss whose gradient those are.
    np.testing.assert_allclose(np.asarray(losses), costs / 200, rtol=0, atol=1e-12)
    for i, (W_np, b_np) in enumerate(zip(final[:3], final[3:], strict=True)):
        np.testing.assert_allclose(trained[2 * i]["W"], W_np, rtol=0, atol=1e-12)
        np.testing.assert_allclose(trained[2 * i]["b"], b_np[:, 0], rtol=0, atol=1e-12)
    assert costs[-1] < costs[0]  # the tutorial's loss does go down (slowly: random targets)


def test_learning_rate_table_is_exact():
    rows = lr_example.x_squared_table(x0=5.0, lr=1.0, rounds=4)
    assert rows == [
        (1, 5.0, 10.0, -5.0),
        (2, -5.0, -10.0, 5.0),
        (3, 5.0, 10.0, -5.0),
        (4, -5.0, -10.0, 5.0),
    ]


@pytest.mark.parametrize("lr, expected", [(0.5, [5.0, 0.0, 0.0]), (0.25, [5.0, 2.5, 1.25])])
def test_x_squared_converges_for_smaller_learning_rates(lr, expected):
    rows = lr_example.x_squared_table(x0=5.0, lr=lr, rounds=3)
    assert [value for _, value, _, _ in rows] == expected


@pytest.mark.slow
def test_seed_example_runs_and_writes_its_plot(tmp_path, capsys):
    # a trace every 1000 steps, two per run: the printout and the plot need no more
    seed_example.main(["--steps", "2000", "--every", "1000", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "iteration  1000" in out and "final loss" in out and "floors" in out
    assert (tmp_path / "seed_backprop.png").stat().st_size > 10_000


def test_tutorial_floors_and_a_learnable_target():
    x, y = seed_example.tutorial_data(seed=0)
    constant, entropy = seed_example.floors(y)
    # predicting the mean is the entropy of a Bernoulli(ȳ) blended over y: near ln 2
    assert 0.69 < constant <= np.log(2) and 0.45 < entropy < constant
    p = np.clip(y, 1e-12, 1 - 1e-12)  # predicting each y exactly reaches the entropy floor
    assert entropy == pytest.approx(-np.mean(p * np.log(p) + (1 - p) * np.log(1 - p)))
    targets = seed_example.learnable_targets(x)
    assert targets.shape == (200, 1) and targets.sum() == 100  # half above the median


@pytest.mark.slow  # traces the tutorial network
def test_seed_example_deltas_are_the_traces(tmp_path):
    """The deltas the example draws are backward_trace's, snapshot by snapshot."""
    x, y = (jnp.asarray(a, jnp.float64) for a in seed_example.tutorial_data(seed=0))
    net, loss = seed_example.tutorial_network(), fnn.sigmoid_binary_cross_entropy()
    params = fnn.init(net, jax.random.PRNGKey(0), (100,), jnp.float64)
    final, losses, snapshots = seed_example.descend(net, loss, params, x, y, lr=0.1, steps=6,
                                                    every=3)  # fmt: skip
    assert losses.shape == (6,)
    rms = seed_example.delta_rms(net, loss, snapshots, x, y)
    assert set(rms) == {"dZ1", "dA1", "dZ2", "dA2", "dZ3", "dW1"}
    first = fnn.backward_trace(net, loss, params, x, y)  # snapshot 0 is the initial params
    assert rms["dZ3"][0] == pytest.approx(first["net[4]"].rms_dy, rel=1e-12)
    # dZ3 = (σ(Z3) − Y)/m, the tutorial's formula, from the hand-written backward
    z3 = jax.jit(lambda p, x: fnn.apply(net, p, x))(params, x)  # one compile, not one an op
    expected = np.sqrt(np.mean(np.square((1 / (1 + np.exp(-np.asarray(z3))) - y) / 200)))
    assert rms["dZ3"][0] == pytest.approx(expected, rel=1e-10)
    assert rms["dZ1"][0] < 1e-5 * rms["dZ3"][0]  # the vanishing delta docs/tutorial.md quotes


@pytest.mark.slow
def test_learning_rate_sweep_shows_the_four_regimes(tmp_path):
    curves = lr_example.sweep(steps=600)
    start = curves["good"][0]
    assert curves["good"][-1] < curves["too small"][-1] < start  # both descend, one slowly
    oscillating = curves["oscillating"][-10:]
    assert np.all(np.abs(np.diff(oscillating)) > 1e-3)  # keeps jumping between two values
    assert curves["diverging"][-20:].max() > 50 * start  # blown far above where it started
    lr_example.plot_sweep(curves, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


@pytest.mark.slow
def test_learning_rate_example_shows_a_divergence_stop():
    outcomes = lr_example.divergence_demo(epochs=2)
    assert outcomes[0.3].startswith("trained")
    assert "stopped" in outcomes[0.5] and "epoch 1" in outcomes[0.5]
    assert "learning rate 0.5" in outcomes[0.5]

"""fit, the epoch and evaluation functions, optimisers by name, plots, and runs end to end.

Nets and epoch counts are small; compiled functions are shared through module fixtures
(`fit` reuses the compiled epoch for the same net, loss and optimiser objects).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers.battery import params_for

import fnn
from fnn import experiment
from fnn.plot import plot_histories, plot_history, plot_lr_sweep
from fnn.train import (
    FitResult,
    NonFiniteLossError,
    fit,
    make_epoch_fn,
    make_eval_fn,
)
from fnn.train.optim import (
    OPTIMIZERS,
    SCHEDULES,
    current_learning_rate,
    make_optimizer,
    make_schedule,
)


def _blobs(n, *, seed, dtype=np.float32, classes=3, features=4):
    """Separable Gaussian blobs: x (n, features), int32 labels (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n).astype(np.int32)
    centres = 3.0 * rng.normal(size=(classes, features))
    x = centres[y] + rng.normal(size=(n, features))
    return x.astype(dtype), y


def _assert_trees_equal(a, b):
    """Same structure and bit-identical leaves."""
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def problem():
    """A small classification problem, with one net, loss and optimiser shared by tests
    (`fit` reuses their compiled epoch), and params in general position."""
    x, y = _blobs(200, seed=0)
    net = fnn.mlp([8, 3], "tanh")
    loss = fnn.softmax_cross_entropy()
    optimizer = optax.adam(1e-2)
    params = params_for(net, (4,), jnp.float32)
    train, test = (x[:160], y[:160]), (x[160:], y[160:])
    state = fnn.TrainState.create(net, params, optimizer)
    return dict(
        net=net, loss=loss, optimizer=optimizer, params=params, state=state, train=train, test=test
    )


def _fit(problem, **kwargs):
    args = dict(key=jax.random.PRNGKey(1), epochs=3, batch_size=16, progress=False)
    args.update(kwargs)
    p = problem
    train, test = args.pop("train", p["train"]), args.pop("test", p["test"])
    return fit(p["net"], p["loss"], p["optimizer"], p["state"], train, test, **args)


def test_fit_learns_and_records_history(problem):
    result = _fit(problem, epochs=4)
    h = result.history
    assert set(h) == {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_s"}
    assert all(len(v) == 4 for v in h.values())
    assert result.epoch == 4 and not result.stopped_early
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h["test_accuracy"][-1] >= 0.9
    assert 1 <= result.best_epoch <= 4
    assert isinstance(result.state, fnn.TrainState)
    assert jax.tree_util.tree_structure(result.state) == jax.tree_util.tree_structure(
        problem["state"]
    )


def test_epoch_function_compiles_once():
    """The epoch function is traced once, not once per epoch (a Python-side counter in the
    loss's forward runs only while JAX traces)."""
    traces = []
    base = fnn.softmax_cross_entropy()

    def forward(pred, target):
        traces.append(1)
        return base.forward(pred, target)

    loss = fnn.Loss(forward, base.backward, "counting")
    net = fnn.mlp([3], "relu")
    x, y = _blobs(48, seed=1)
    optimizer = optax.sgd(0.1)
    state = fnn.TrainState.create(net, params_for(net, (4,), jnp.float32), optimizer)
    counts = []
    fit(
        net,
        loss,
        optimizer,
        state,
        (x, y),
        (x[:8], y[:8]),
        key=jax.random.PRNGKey(0),
        epochs=5,
        batch_size=8,
        progress=False,
        callback=lambda state: counts.append(len(traces)),
    )
    assert len(counts) == 5
    assert counts[0] > 0
    assert counts == [counts[0]] * 5, f"traces per epoch: {counts}"


@pytest.mark.slow  # two whole training runs
def test_manual_and_autodiff_give_the_same_trajectory_in_float64():
    x, y = _blobs(96, seed=2, dtype=np.float64)
    net = fnn.mlp([6, 5, 3], "tanh")
    loss = fnn.softmax_cross_entropy()
    params = params_for(net, (4,), seed=3)
    results = {}
    optimizer = optax.adam(1e-2)
    for mode in ("manual", "autodiff"):
        results[mode] = fit(
            net,
            loss,
            optimizer,
            fnn.TrainState.create(net, params, optimizer),
            (x, y),
            key=jax.random.PRNGKey(4),
            epochs=5,
            batch_size=16,
            mode=mode,
            progress=False,
            eval_train=False,
        )
    manual, autodiff = results["manual"].state.params, results["autodiff"].state.params
    assert jax.tree_util.tree_leaves(manual)[0].dtype == jnp.float64
    moved = jax.tree_util.tree_map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), manual, params
    )
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-3  # the params did change
    pairs = zip(jax.tree_util.tree_leaves(manual), jax.tree_util.tree_leaves(autodiff), strict=True)
    for a, b in pairs:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10)


def test_resumed_fit_equals_uninterrupted_fit_bit_for_bit(problem):
    straight = _fit(problem, epochs=4)
    first = _fit(problem, epochs=2)
    p = problem
    resumed = fit(
        p["net"],
        p["loss"],
        p["optimizer"],
        first.state,
        p["train"],
        p["test"],
        key=jax.random.PRNGKey(1),
        epochs=4,
        batch_size=16,
        progress=False,
        resume=first,
    )
    _assert_trees_equal(straight.state, resumed.state)  # params, optimiser state, statistics
    assert resumed.history["train_loss"] == straight.history["train_loss"]
    assert resumed.epoch == 4
    assert len(first.history["train_loss"]) == 2  # resuming extends a copy of the history


def test_the_deprecated_call_warns_and_trains_as_the_new_one(problem):
    """Raw params and the old keywords, kept for one release, run the same training."""
    p = problem
    args = dict(key=jax.random.PRNGKey(1), batch_size=16, progress=False)
    data = (p["net"], p["loss"], p["optimizer"])
    with pytest.warns(DeprecationWarning, match="TrainState.create") as record:
        old = fit(*data, p["params"], p["train"], p["test"], epochs=2, **args)
    assert record[0].filename == __file__  # the warning points at the caller's line
    _assert_trees_equal(old.state, _fit(problem, epochs=2).state)
    with pytest.warns(DeprecationWarning):
        resumed = fit(
            *data,
            old.state.params,
            p["train"],
            p["test"],
            epochs=3,
            opt_state=old.state.opt_state,
            start_epoch=old.epoch,
            history=old.history,
            patience=5,
            **args,
        )
    _assert_trees_equal(resumed.state, _fit(problem, epochs=3).state)
    assert resumed.epoch == 3 and len(resumed.history["train_loss"]) == 3
    with pytest.warns(DeprecationWarning, match="FitResult.state.params"):
        assert old.params is old.state.params
    with pytest.warns(DeprecationWarning, match="FitResult.state.opt_state"):
        assert old.opt_state is old.state.opt_state
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="not opt_state="):
        fit(*data, p["state"], p["train"], epochs=1, opt_state=old.state.opt_state, **args)


def test_remainder_batch_is_dropped_each_epoch():
    """10 examples in batches of 4: two steps per epoch (2 examples sit out)."""
    x, y = _blobs(10, seed=5)
    net = fnn.mlp([3])
    params = params_for(net, (4,), jnp.float32)
    optimizer = optax.adam(1e-3)
    epoch = make_epoch_fn(net, fnn.softmax_cross_entropy(), optimizer, batch_size=4)
    start = fnn.TrainState.create(net, params, optimizer)
    train_state, loss = epoch(start, jax.random.PRNGKey(0), jnp.int32(0), x, y)
    assert train_state.state == ()
    assert int(train_state.opt_state[0].count) == 2
    assert loss.shape == () and math.isfinite(float(loss))


def test_data_in_another_dtype_than_the_params_is_a_clear_error(problem):
    x, y = problem["train"]
    with pytest.raises(ValueError, match="train inputs are float64 but the params are float32"):
        _fit(problem, train=(np.asarray(x, np.float64), y))
    x_test, y_test = problem["test"]
    with pytest.raises(ValueError, match="test inputs are float64 but the params are float32"):
        _fit(problem, test=(np.asarray(x_test, np.float64), y_test))


def test_batch_larger_than_the_data_is_a_clear_error(problem):
    with pytest.raises(ValueError, match="batch size 500 is larger than the 160 training"):
        _fit(problem, batch_size=500)


def test_bad_arguments_are_clear_errors(problem):
    with pytest.raises(ValueError, match="unknown grad mode 'numeric'"):
        _fit(problem, mode="numeric")
    with pytest.raises(ValueError, match="early stopping"):
        fit(
            problem["net"],
            problem["loss"],
            problem["optimizer"],
            problem["state"],
            problem["train"],
            key=jax.random.PRNGKey(0),
            epochs=2,
            early_stopping=fnn.EarlyStopping(2),
            progress=False,
        )
    with pytest.raises(ValueError, match="below the epochs already done"):
        _fit(problem, epochs=2, resume=FitResult(problem["state"], {}, 3))
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        _fit(problem, epoch=2)
    with pytest.raises(ValueError, match="differ in length"):
        _fit(problem, test=(problem["test"][0], problem["test"][1][:3]))


def _jump_optimizer(safe_steps, lr=0.05):
    """SGD whose learning rate turns to inf after `safe_steps` steps: a forced divergence."""

    def schedule(count):
        return jnp.where(count < safe_steps, lr, jnp.inf)

    return optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)


def test_non_finite_loss_stops_with_epoch_learning_rate_and_hint(problem):
    saved = []
    optimizer = _jump_optimizer(20)
    # 160 examples / 16 = 10 steps per epoch: epochs 1 and 2 are fine, epoch 3 diverges.
    with pytest.raises(NonFiniteLossError) as info:
        fit(
            problem["net"],
            problem["loss"],
            optimizer,
            fnn.TrainState.create(problem["net"], problem["params"], optimizer),
            problem["train"],
            problem["test"],
            key=jax.random.PRNGKey(0),
            epochs=6,
            batch_size=16,
            progress=False,
            callback=saved.append,
        )
    error = info.value
    assert isinstance(error, FloatingPointError)
    assert error.epoch == 3
    assert error.last_good.epoch == 2
    assert [s.epoch for s in saved] == [1, 2]  # no callback for the diverged epoch
    message = str(error)
    assert "epoch 3" in message and "learning rate" in message and "--" not in message
    assert error.settings == ()  # fit names no setting: lr and clipping live in the optimiser
    assert math.isfinite(error.last_good.history["train_loss"][-1])
    leaves = jax.tree_util.tree_leaves(error.last_good.state.params)
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves)


def test_divergence_names_the_learning_rate_of_injected_optimisers():
    optimizer = make_optimizer("sgd", 0.25)
    state = optimizer.init({"w": jnp.zeros(2, jnp.float32)})
    assert current_learning_rate(state) == pytest.approx(0.25)
    assert current_learning_rate(optax.sgd(0.1).init({"w": jnp.zeros(2)})) is None


def test_early_stopping_restores_the_best_params(problem):
    """Test labels unrelated to the inputs: the test loss rises as the net fits train.
    The shared problem's net, loss, optimiser and shapes: its compiled epoch is reused."""
    rng = np.random.default_rng(7)
    x_test = rng.normal(size=problem["test"][0].shape).astype(np.float32)
    y_test = rng.integers(0, 3, size=problem["test"][1].shape).astype(np.int32)
    states = {}
    result = _fit(
        problem,
        test=(x_test, y_test),
        epochs=60,
        early_stopping=fnn.EarlyStopping(patience=3),
        callback=lambda s: states.setdefault(s.epoch, s),
    )
    assert result.stopped_early
    assert result.epoch < 60
    assert result.epoch - result.best_epoch == 3
    _assert_trees_equal(result.state, states[result.best_epoch].state)
    kept_last = _fit(
        problem,
        test=(x_test, y_test),
        epochs=60,
        early_stopping=fnn.EarlyStopping(patience=3, restore_best=False),
    )
    _assert_trees_equal(kept_last.state, states[kept_last.epoch].state)


def test_evaluation_metrics_match_their_formulas():
    """With the identity as the network, pred = x: the metrics of known predictions."""
    net = fnn.identity()
    rng = np.random.default_rng(8)
    pred = rng.normal(size=(50, 2)).astype(np.float32)
    target = (pred + 0.5 * rng.normal(size=(50, 2))).astype(np.float32)
    r2 = make_eval_fn(net, fnn.mean_squared_error(), "regression")((), pred, target)["r2"]
    ss_res = ((target - pred) ** 2).sum(0)
    ss_tot = ((target - target.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(float(r2), np.mean(1 - ss_res / ss_tot), rtol=1e-5)

    logits = rng.normal(size=(50, 1)).astype(np.float32)
    labels = (rng.random((50, 1)) < 0.5).astype(np.float32)
    scores = make_eval_fn(net, fnn.sigmoid_binary_cross_entropy(), "binary")((), logits, labels)
    np.testing.assert_allclose(float(scores["accuracy"]), np.mean((logits > 0) == (labels > 0.5)))

    logits = rng.normal(size=(50, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=50).astype(np.int32)
    scores = make_eval_fn(net, fnn.softmax_cross_entropy(), "classification")((), logits, labels)
    np.testing.assert_allclose(float(scores["accuracy"]), np.mean(logits.argmax(-1) == labels))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_by_name_takes_a_step(name):
    params = {"w": np.ones(3, np.float32)}
    optimizer = make_optimizer(name, 0.1, schedule="cosine", total_steps=10, clip_norm=1.0)

    @jax.jit  # init and update in one program
    def step(grads, params):
        return optimizer.update(grads, optimizer.init(params), params)[0]

    updates = step({"w": np.ones(3, np.float32)}, params)
    assert float(np.max(updates["w"])) < 0  # a step against the gradient


def test_schedules_start_and_end_where_documented():
    def at(name, *steps):  # the schedule's values at `steps`, in one compiled program
        schedule = make_schedule(name, 0.1, total_steps=100)
        return [float(v) for v in jax.jit(lambda: [schedule(step) for step in steps])()]

    assert at("constant", 100) == pytest.approx([0.1])
    assert at("cosine", 0, 100) == pytest.approx([0.1, 0.0])
    assert at("exponential", 100) == pytest.approx([1e-3])
    assert at("warmup_cosine", 0, 5) == pytest.approx([0.0, 0.1])
    assert set(SCHEDULES) == {"constant", "cosine", "exponential", "warmup_cosine"}


def test_unknown_optimizer_and_schedule_list_the_valid_names():
    with pytest.raises(ValueError, match="valid optimizers: adam, adamw, momentum, sgd"):
        make_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="valid schedules:"):
        make_schedule("linear", 0.1, total_steps=10)
    with pytest.raises(ValueError, match="learning rate must be > 0"):
        make_optimizer("sgd", 0.0)


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.mark.slow  # matplotlib renders four figures (plot_history runs in every fnn train)
def test_plots_write_png_files(tmp_path):
    history = {
        "train_loss": [1.0, 0.5, 0.3],
        "test_loss": [1.1, 0.6, 0.5],
        "train_accuracy": [0.5, 0.8, 0.9],
        "test_accuracy": [0.5, 0.7, 0.85],
    }
    assert _is_png(plot_history(history, tmp_path / "curves.png", title="t"))
    regression = {"train_loss": [1.0, 0.5], "test_loss": [1.0, 0.7], "test_r2": [0.1, 0.4]}
    assert _is_png(plot_history(regression, tmp_path / "sub" / "r2.png"))
    both = {"manual": history, "autodiff": history}
    assert _is_png(plot_histories(both, tmp_path / "both.png"))
    sweep = {0.01: [1.0, 0.9, 0.8], 0.1: [1.0, 0.5, 0.2], 10.0: [1.0, 50.0, float("nan")]}
    assert _is_png(plot_lr_sweep(sweep, tmp_path / "sweep.png"))


# ----------------------------------------------------------------------------- runs


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, bound",
    [
        (dict(dataset="breast_cancer", hidden=(5, 4), activation="sigmoid", lr=1e-2), 0.92),
        (dict(dataset="diabetes", hidden=(16,), activation="tanh", optimizer="adamw"), 0.35),
        (dict(dataset="iris", hidden=(16,), lr=1e-2, batch_size=16), 0.85),
    ],
    ids=["breast_cancer", "diabetes", "iris"],
)
def test_small_runs_reach_loose_quality_bounds(overrides, bound):
    config = experiment.TrainConfig(**overrides, epochs=25)
    run = experiment.prepare(config)
    data = run.data
    result = experiment.fit_run(run, progress=False, eval_train=False)
    metric = "test_r2" if data.task == "regression" else "test_accuracy"
    assert result.history[metric][-1] >= bound
    if data.task == "binary":
        assert run.loss.name == "sigmoid_binary_cross_entropy"
        assert run.net.name == "serial(dense(5), sigmoid, dense(4), sigmoid, dense(1))"


def test_run_keeps_the_last_good_checkpoint_when_the_loss_diverges(tmp_path):
    from fnn.train.checkpoint import load_checkpoint

    config = experiment.TrainConfig(dataset="iris", hidden=(4,), epochs=6, batch_size=24)
    run = experiment.prepare(config)
    optimizer = _jump_optimizer(safe_steps=8)  # 120 train / 24 = 5 steps an epoch
    run = run._replace(
        optimizer=optimizer, train_state=fnn.TrainState.create(run.net, run.params, optimizer)
    )
    with pytest.raises(NonFiniteLossError) as info:
        experiment.train(run, tmp_path, checkpoint_every=0, progress=False)
    assert info.value.epoch == 2
    saved = load_checkpoint(
        tmp_path / experiment.CHECKPOINT, params_like=run.params, opt_state_like=run.opt_state
    )
    assert saved.epoch == 1
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(saved.params))


def test_config_round_trips_and_rejects_bad_values():
    config = experiment.TrainConfig(hidden=(7, 5), loss="huber")
    assert experiment.TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown config keys"):
        experiment.TrainConfig.from_dict({"layers": [3]})
    with pytest.raises(ValueError, match="valid activations"):
        dataclasses.replace(config, activation="swish").validate()
    with pytest.raises(ValueError, match="does not fit the classification"):
        experiment.loss_name(config, "classification")
    assert isinstance(FitResult(fnn.TrainState((), ()), {}, 0), tuple)

"""The checker must catch wrong backward passes: bugs are planted and must be reported."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.planted import planted_bug

import fnn
from fnn.cli import main


def with_backward(layer: fnn.Layer, backward, name: str) -> fnn.Layer:
    return layer._replace(backward=backward, name=name)


def dense_bug(kind: str, width: int = 3) -> fnn.Layer:
    """fnn.dense(width) with one classic backprop mistake planted in its backward."""
    good = fnn.dense(width)

    def backward(params, x, dy):
        W = params["W"]
        dW, db, dx = x.T @ dy, jnp.sum(dy, axis=0), dy @ W.T
        if kind == "sign_flip":
            dx = -dx
        elif kind == "missing_transpose":
            dx = dy @ W  # should be dy @ Wᵀ (square W, so the shapes still agree)
        elif kind == "dropped_bias_gradient":
            db = jnp.zeros_like(db)
        elif kind == "factor_of_two":
            dW = 2 * dW
        return {"W": dW, "b": db}, dx

    return with_backward(good, backward, f"dense[{kind}]")


def sigmoid_at_input() -> fnn.Layer:
    """sigmoid whose derivative is taken at the input: x(1 − x) instead of y(1 − y)."""

    def forward(params, x):
        return jax.nn.sigmoid(x), x  # keeps x

    def backward(params, x, dy):
        return (), dy * x * (1 - x)  # wrong: σ'(x) = σ(x)(1 − σ(x)), not x(1 − x)

    return fnn.Layer(fnn.sigmoid().init, forward, backward, "sigmoid[at_input]")


def mse_missing_mean() -> fnn.Loss:
    """mean_squared_error whose gradient forgets the 1/m of the mean."""
    good = fnn.mean_squared_error()
    return good._replace(backward=lambda r, dvalue=1.0: dvalue * 2 * r, name="mse[missing_1/m]")


@planted_bug("dense")
@pytest.mark.parametrize(
    "kind", ["sign_flip", "missing_transpose", "dropped_bias_gradient", "factor_of_two"]
)
def test_checker_catches_planted_dense_bugs(kind):
    result = fnn.check_layer(dense_bug(kind), (3,))  # square W: a missing ᵀ keeps shapes
    assert not result.passed
    assert result.max_rel_err > 0.1
    assert result.finite_differences.startswith("failed")


def test_checker_catches_missing_transpose_with_wrong_shape():
    result = fnn.check_layer(dense_bug("missing_transpose", width=2), (3,))
    assert not result.passed
    assert "shape" in result.error


@planted_bug("sigmoid")
def test_checker_catches_derivative_at_the_input():
    result = fnn.check_layer(sigmoid_at_input(), (5,))
    assert not result.passed
    assert result.leaves["x"]["rel"] > 0.1


@planted_bug("mean_squared_error")
def test_checker_catches_missing_one_over_m():
    pred, target = jnp.ones((8, 2)), jnp.zeros((8, 2))
    result = fnn.check_loss(mse_missing_mean(), pred, target)
    assert not result.passed
    assert result.max_rel_err == pytest.approx(16 - 1)  # off by the N = 16 elements


def test_checker_catches_a_dropped_gradient_leaf():
    good = fnn.dense(3)

    def backward(params, x, dy):
        return {"W": x.T @ dy}, dy @ params["W"].T  # "b" forgotten altogether

    result = fnn.check_layer(with_backward(good, backward, "dense[no_b]"), (4,))
    assert not result.passed
    assert "structure" in result.error


def test_checker_catches_a_bug_inside_a_network():
    net = fnn.serial(fnn.dense(4), fnn.tanh(), dense_bug("factor_of_two", width=4))
    result = fnn.check_layer(net, (4,))
    assert not result.passed
    bad = {leaf for leaf, e in result.leaves.items() if e["rel"] > 1e-10}
    assert bad == {"params[2]['W']"}  # the report points at the wrong leaf


@functools.cache
def _dense_checked():
    """The correct dense(3)'s check at (3,): two tests read it, one compile."""
    return fnn.check_layer(fnn.dense(3), (3,))


def test_checker_passes_the_correct_versions_of_the_same_layers():
    assert _dense_checked().passed
    assert fnn.check_layer(fnn.sigmoid(), (5,)).passed
    assert fnn.check_loss(fnn.mean_squared_error(), jnp.ones((8, 2)), jnp.zeros((8, 2))).passed


def test_check_result_serialises_and_reads_well():
    result = _dense_checked()
    record = result.to_dict()
    assert {"name", "dtype", "max_abs_err", "max_rel_err", "passed"} <= set(record)
    assert {"per_example", "per_example_rel_err", "ties"} <= set(record)
    assert record["name"] == "dense(3)" and record["dtype"] == "float64"
    assert set(record["leaves"]) == {"params['W']", "params['b']", "x"}
    assert record["per_example"] == "passed" and record["per_example_rel_err"] <= 1e-10
    assert record["ties"] == "passed"
    assert "passed" in str(result)
    assert "per-example passed (max rel err" in str(result) and "ties passed" in str(result)
    bad = str(_per_example_bug_checked("factor_of_two"))
    assert "FAILED" in bad and "per-example failed: over tolerance" in bad


def test_unknown_check_dtype_lists_valid_ones():
    with pytest.raises(ValueError, match="float64, float32|float32, float64"):
        fnn.check_layer(fnn.dense(2), (3,), dtype="float16")


def test_cli_check_writes_json_and_exits_zero(tmp_path, capsys):
    path = tmp_path / "check.json"
    code = main(["check", "dense", "softmax_cross_entropy_labels", "--json", str(path)])
    assert code == 0
    records = json.loads(path.read_text())
    assert [r["name"] for r in records] == ["dense", "softmax_cross_entropy_labels"]
    assert all(r["passed"] and r["max_rel_err"] <= 1e-10 for r in records)
    assert [(r["per_example"], r["ties"]) for r in records] == [("passed",) * 2, ("n/a",) * 2]
    out = capsys.readouterr().out
    assert "2 passed, 0 failed" in out
    assert "without a reference" not in out  # both items asked for have one
    header, _, dense, loss = out.splitlines()[:4]
    assert header.split()[-4:] == ["fd", "per-ex", "ties", "result"]
    assert dense.split()[-4:] == ["passed", "passed", "passed", "ok"]
    assert loss.split()[-4:] == ["passed", "n/a", "n/a", "ok"]


def test_cli_check_exits_one_on_failure(monkeypatch, capsys):
    from fnn.check import CASES, LayerCase

    monkeypatch.setitem(CASES, "dense", LayerCase(lambda: dense_bug("sign_flip"), (3,)))
    monkeypatch.setitem(CASES, "max_pool", LayerCase(lambda: max_pool_2x2("every"), (4, 4, 1)))
    monkeypatch.setitem(CASES, "relu", LayerCase(lambda: dense_per_example_bug("batch_mean"), (3,)))
    assert main(["check", "dense", "max_pool", "relu"]) == 1
    out, _, forwards = capsys.readouterr().out.partition("\n\n")  # the gradient table first
    assert "forwards against independent references (float64)" in forwards
    verdicts = {line.split()[0]: line.split()[-1] for line in forwards.splitlines()[3:-1]}
    assert verdicts == {"dense": "ok", "max_pool": "ok", "relu": "FAIL"}  # a dense is no relu
    assert "FAIL" in out and "0 passed, 3 failed" in out
    assert "    finite differences failed" in out
    assert "    ties failed: at integer inputs (ties, zeros)" in out
    assert "    per-example failed: over tolerance" in out
    rows = {line.split()[0]: line.split()[-4:] for line in out.splitlines()[2:-1] if line[0] != " "}
    assert rows["max_pool"] == ["passed", "n/a", "failed", "FAIL"]
    assert rows["relu"] == ["passed", "failed", "passed", "FAIL"]


def test_cli_check_unknown_name_exits_two(capsys):
    assert main(["check", "no_such_layer"]) == 2
    assert "unknown item(s)" in capsys.readouterr().err


def test_cli_check_float32(capsys):
    assert main(["check", "tanh", "--dtype", "float32"]) == 0
    assert "float32" in capsys.readouterr().out


def test_custom_layer_example_passes_and_its_bug_is_caught():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "custom_layer.py"
    spec = importlib.util.spec_from_file_location("custom_layer", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with jax.numpy_rank_promotion("allow"):  # user code, JAX's default broadcasting
        assert fnn.check_layer(example.prelu(), (6,)).passed
        bad = fnn.check_layer(example.prelu_with_a_bug(), (6,))
    assert not bad.passed and bad.leaves["params['a']"]["rel"] > 0.1


# --------------------------------------------------------------- the point in general position


def _layer_norm_dividing_by_scale() -> fnn.Layer:
    """layer_norm whose backward divides the cotangent by `scale` where it should multiply:
    right at the initial scale of ones, wrong anywhere else."""
    from fnn.layers.normalization import _normalized_backward

    good = fnn.layer_norm()

    def backward(params, residuals, dy):
        x_hat, inv_sigma = residuals
        grads = {"scale": jnp.sum(dy * x_hat, axis=0), "bias": jnp.sum(dy, axis=0)}
        g = dy / params["scale"][None, :]  # wrong: g = dy ⊙ scale
        return grads, _normalized_backward(g, x_hat, inv_sigma, -1)

    return good._replace(backward=backward, name="layer_norm[divides by scale]")


def _soft_targets_without_their_sum() -> fnn.Loss:
    """softmax_cross_entropy whose soft-target gradient drops the Σt factor: right when
    every row of targets sums to 1, wrong otherwise."""
    good = fnn.softmax_cross_entropy()

    def backward(residuals, dvalue=1.0):
        logp, target = residuals
        return dvalue / logp.shape[0] * (jnp.exp(logp) - target)  # wrong: softmax·Σt − t

    return good._replace(backward=backward, name="softmax_cross_entropy[no Σt]")


def test_the_general_point_catches_a_bug_the_initial_params_hide():
    bug = _layer_norm_dividing_by_scale()
    assert fnn.check_layer(bug, (5,), at_init=True).passed  # scale = 1: the bug is invisible
    result = fnn.check_layer(bug, (5,))  # scales drawn from U(0.5, 1.5)
    assert not result.passed and result.leaves["x"]["rel"] > 1e-3, str(result)


@planted_bug("softmax_cross_entropy")
def test_unnormalised_soft_targets_catch_a_dropped_sum():
    bug = _soft_targets_without_their_sum()
    rng = np.random.default_rng(0)
    logits, t = rng.normal(size=(6, 5)), rng.random((6, 5))
    assert fnn.check_loss(bug, logits, t / t.sum(-1, keepdims=True)).passed  # rows sum to 1
    assert not fnn.check_loss(bug, logits, 2 * t).passed  # what the catalogue draws
    (case,) = [fnn.check.CASES["softmax_cross_entropy_soft"]]
    _, target = case.inputs(np.random.default_rng(0))
    assert not np.allclose(target.sum(-1), 1)


def test_the_catalogues_labels_cover_every_class():
    _, labels = fnn.check.CASES["softmax_cross_entropy_labels"].inputs(np.random.default_rng(0))
    assert set(labels.tolist()) == set(range(5))


def test_drawn_params_are_away_from_their_initial_values():
    from fnn.check import draw_params

    shapes = jax.eval_shape(lambda k: fnn.layer_norm().init(k, (7,))[1], jax.random.PRNGKey(0))
    params = draw_params(shapes, np.random.default_rng(0))
    assert np.all(params["scale"] != 1) and np.all(params["bias"] != 0)
    assert np.all((params["scale"] >= 0.5) & (params["scale"] <= 1.5))
    W = draw_params(jax.ShapeDtypeStruct((400, 3), jnp.float64), np.random.default_rng(0))
    assert abs(float(np.std(W)) - 1 / np.sqrt(400)) < 0.01  # N(0, 1/fan_in)


def test_a_check_compiles_for_one_run_and_survives_a_jaxlib_without_those_options(monkeypatch):
    """The checker's programs get XLA:CPU's quick-compile options; an option a jaxlib
    lacks makes it compile as usual, with the same verdict."""
    from fnn import core

    assert fnn.check_layer(fnn.tanh(), (3,)).passed
    monkeypatch.setattr(core, "ONE_SHOT_CPU_OPTIONS", {"xla_no_such_option_in_any_jaxlib": 1})
    assert fnn.check_layer(fnn.tanh(), (3,)).passed
    assert not fnn.check_layer(_layer_norm_dividing_by_scale(), (5,)).passed


@pytest.mark.parametrize(
    "net",
    [fnn.mlp([32, 16, 4], "relu"), fnn.serial(fnn.embedding(11, 8), fnn.layer_norm())],
    ids=["mlp_glorot", "embedding_normal"],
)
def test_an_init_compiled_for_one_run_draws_the_same_bits(net):
    """`fnn train` compiles its init for one run: the params must be the usual ones."""
    from fnn.core import one_shot_jit

    key, shape = jax.random.PRNGKey(3), (8,)
    usual = jax.jit(net.init, static_argnums=(1, 2))(key, shape, jnp.float32)[1]
    quick = one_shot_jit(net.init, static_argnums=(1, 2))(key, shape, jnp.float32)[1]
    for a, b in zip(jax.tree.leaves(usual), jax.tree.leaves(quick), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------- per-example backward


def dense_per_example_bug(kind: str) -> fnn.Layer:
    """fnn.dense(3) whose per-example backward has one mistake planted; its batch
    backward stays right, so only the per-example comparison can see it."""
    good = fnn.dense(3)

    def per_example_backward(params, x, dy):
        grads, dx = good.per_example_backward(params, x, dy)
        if kind == "factor_of_two":
            grads = {**grads, "W": 2 * grads["W"]}
        elif kind == "batch_mean":  # the sum over examples right, each example wrong
            grads = jax.tree.map(
                lambda g: jnp.broadcast_to(jnp.mean(g, axis=0, keepdims=True), g.shape), grads
            )
        elif kind == "summed":  # the batch gradient: no batch axis
            grads, _ = good.backward(params, x, dy)
        elif kind == "dx_sign_flip":
            dx = -dx
        elif kind == "raises":
            raise ValueError("per-example backward not written yet")
        return grads, dx

    return good._replace(per_example_backward=per_example_backward, name=f"dense[pe {kind}]")


@functools.cache
def _per_example_bug_checked(kind: str):
    """The check of `dense_per_example_bug(kind)` at (3,) (two tests read factor_of_two's)."""
    return fnn.check_layer(dense_per_example_bug(kind), (3,))


@pytest.mark.parametrize(
    "kind", ["factor_of_two", "batch_mean", "summed", "dx_sign_flip", "raises"]
)
def test_checker_catches_planted_per_example_bugs(kind):
    result = _per_example_bug_checked(kind)
    assert not result.passed, str(result)
    assert result.per_example.startswith("failed"), result.per_example
    # the batch backward is right: only the per-example comparison fails
    assert result.max_rel_err <= 1e-10 and result.finite_differences == "passed"
    assert result.ties == "passed"
    if kind == "summed":
        assert "gradient shape (3, 3), expected (4, 3, 3)" in result.per_example
    elif kind == "raises":
        assert "raised ValueError: per-example backward not written yet" in result.per_example
        assert result.per_example_rel_err is None
    else:
        assert result.per_example_rel_err > 0.1
        bad = "x" if kind == "dx_sign_flip" else "params['W']"
        assert bad in result.per_example


@pytest.mark.slow  # two networks; test_random_networks checks many such in training mode
def test_per_example_under_batch_wide_randomness():
    """Dropout in training draws its mask for the whole batch: example i's share of the
    batch's vjp is the reference, and a per-example bug before it still shows."""
    ctx = fnn.Ctx(train=True, key=jax.random.PRNGKey(3))
    good = fnn.serial(fnn.dense(3), fnn.dropout(0.5))
    result = fnn.check_layer(good, (3,), ctx=ctx)
    assert result.passed and result.per_example == "passed", str(result)
    bad = fnn.check_layer(
        fnn.serial(dense_per_example_bug("batch_mean"), fnn.dropout(0.5)), (3,), ctx=ctx
    )
    assert not bad.passed and "params[0]['W']" in bad.per_example, str(bad)


# --------------------------------------------------------------- the tie point


def max_pool_2x2(rule: str) -> fnn.Layer:
    """A 2×2 max pool (NHWC, stride 2) whose backward routes each window's dy by `rule`:
    "first" (fnn's), "even" (split among tied maxima), "every" (the whole dy to each
    tied maximum: creates gradient), "none" (nothing to a tied maximum: loses it). All four
    agree where the maximum is unique, as it is at a random continuous input."""

    def windows(x):  # (B, H, W, C) -> (B, H/2, W/2, C, 4)
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
        return x.reshape(b, h // 2, w // 2, c, 4)

    def unwindows(t, shape):
        b, h, w, c = shape
        t = t.reshape(b, h // 2, w // 2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
        return t.reshape(shape)

    def forward(params, x):
        return jnp.max(windows(x), axis=-1), x

    def backward(params, x, dy):
        w = windows(x)
        tied = w == jnp.max(w, axis=-1, keepdims=True)
        count = jnp.sum(tied, axis=-1, keepdims=True)
        share = {
            "first": tied & (jnp.cumsum(tied, axis=-1) == 1),
            "even": tied / count,
            "every": tied,
            "none": tied & (count == 1),
        }[rule]
        return (), unwindows(share * dy[..., None], x.shape)

    return fnn.Layer(fnn.max_pool(2).init, forward, backward, f"max_pool[{rule}]")


def relu_at_zero(passes_dy: bool) -> fnn.Layer:
    """relu whose backward at x = 0 passes dy (passes_dy) or 0: both are subgradients."""

    def forward(params, x):
        return jnp.maximum(x, 0), x

    def backward(params, x, dy):
        return (), jnp.where(x >= 0 if passes_dy else x > 0, dy, 0)  # dx = dy ⊙ [x ≥ 0] or [x > 0]

    return fnn.Layer(fnn.relu().init, forward, backward, f"relu[at 0: {passes_dy}]")


@planted_bug("max_pool")
@pytest.mark.parametrize(
    "layer, ties",
    [
        (max_pool_2x2("first"), "passed"),
        (max_pool_2x2("even"), "passed"),
        (max_pool_2x2("every"), "failed"),
        (max_pool_2x2("none"), "failed"),
        (relu_at_zero(True), "passed"),
        (relu_at_zero(False), "passed"),
    ],
    ids=lambda p: p.name if isinstance(p, fnn.Layer) else p,
)
def test_the_tie_point_passes_every_valid_split_and_fails_created_or_lost_gradient(layer, ties):
    result = fnn.check_layer(layer, (4, 4, 2) if "pool" in layer.name else (7,))
    assert result.ties.startswith(ties), str(result)
    assert result.passed == (ties == "passed")
    # at the random continuous point every rule is right: only the tie point tells them apart
    assert result.max_rel_err <= 1e-10 and result.finite_differences == "passed"
    if ties == "failed":
        assert result.ties.startswith("failed: at integer inputs (ties, zeros)")


def test_a_kink_away_from_zero_is_set_aside_not_failed():
    """hard_tanh's kinks sit at ±1, which the integer point hits and the directions move:
    not differentiable there, so no verdict rather than a false failure."""

    def forward(params, x):
        return jnp.clip(x, -1, 1), x

    def backward(params, x, dy):
        return (), jnp.where(jnp.abs(x) < 1, dy, 0)  # dx = dy ⊙ [|x| < 1]

    result = fnn.check_layer(fnn.Layer(fnn.relu().init, forward, backward, "hard_tanh"), (7,))
    assert result.passed and result.ties.startswith("n/a (not differentiable"), str(result)


def _tie_outputs(slopes_plus, slopes_minus):
    """Outputs at the tie point and ±TIE_EPS along each direction, of a one-output
    function whose one-sided derivatives along direction k are the given slopes."""
    from fnn.check.ties import TIE_EPS

    rows = [[0.0]]
    for plus, minus in zip(slopes_plus, slopes_minus, strict=True):
        rows += [[plus * TIE_EPS], [-minus * TIE_EPS]]
    return np.array(rows)


def test_tie_verdict_sets_kinked_directions_aside_and_fails_a_wrong_one():
    from fnn.check.ties import tie_verdict

    dy = np.ones(1)
    directions = [((), np.ones(1))] * 3
    manual = ((), np.array([2.0]))  # ⟨backward(dy), v⟩ = 2 along every direction
    assert tie_verdict(manual, directions, dy, _tie_outputs([2, 2, 2], [2, 2, 2])) == "passed"
    partly = tie_verdict(manual, directions, dy, _tie_outputs([2, 2, 5], [2, 2, 0]))
    assert partly == "passed (2 of 3 directions)"
    assert tie_verdict(manual, directions, dy, _tie_outputs([1, 2, 2], [1, 2, 2])).startswith(
        "failed"
    )
    assert tie_verdict(manual, directions, dy, _tie_outputs([5, 5, 5], [0, 0, 0])).startswith(
        "n/a (not differentiable"
    )
    nan = ((), np.array([np.nan]))
    assert tie_verdict(nan, directions, dy, _tie_outputs([2, 2, 2], [2, 2, 2])).startswith("failed")


def test_the_tie_directions_keep_ties_and_zeros():
    from fnn.check.ties import TIE_DIRECTIONS, draw_tie_point

    x, directions = draw_tie_point(
        {"b": np.zeros(3)}, (50, 4), np.float64, np.random.default_rng(0)
    )
    assert set(np.unique(x).tolist()) == {-2, -1, 0, 1, 2}
    assert len(directions) == TIE_DIRECTIONS
    for v_params, v_x in directions:
        assert np.all(v_x[x == 0] == 0)  # h(0) = 0
        for value in (-2, -1, 1, 2):  # one number per value, not zero
            assert np.unique(v_x[x == value]).size == 1 and v_x[x == value][0] != 0
        assert v_params["b"].shape == (3,) and np.all(v_params["b"] != 0)

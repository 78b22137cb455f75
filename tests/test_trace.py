"""Seeing the backward pass: `fnn.backward_trace` against `jax.vjp` of the network split
at each layer, `fit(track_gradients=True)`'s history against a trace, and
`fnn.bench.summary`'s figures against XLA and the residual pytrees (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
import fnn.cli
from fnn.bench.measure import count_kept

LAYERS = (
    fnn.dense(6),
    fnn.tanh(),
    fnn.residual(fnn.serial(fnn.dense(6), fnn.relu())),
    fnn.dense(3),
)
NET = fnn.serial(*LAYERS)
LOSS = fnn.mean_squared_error()


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    params = fnn.init(NET, jax.random.PRNGKey(1), (4,), jnp.float64)
    x = rng.standard_normal((5, 4))
    y = rng.standard_normal((5, 3))
    return params, x, y


@pytest.fixture(scope="module")
def trace(problem):
    return fnn.backward_trace(NET, LOSS, *problem)


def test_trace_matches_jax_vjp_of_the_network_split_at_each_layer(problem, trace):
    params, x, y = problem

    @jax.jit
    def split(params, x, y):
        """Per top-level layer i: (∂L/∂y_i, ∂L/∂params_i) by jax.vjp of the rest."""
        out, h = [], x
        for i, layer in enumerate(LAYERS):
            h = fnn.apply(layer, params[i], h)
            rest = fnn.serial(*LAYERS[i + 1 :]) if i + 1 < len(LAYERS) else None

            def loss_from(h, rest=rest, i=i):
                pred = h if rest is None else fnn.apply(rest, params[i + 1 :], h)
                return LOSS.forward(pred, y)[0]

            out.append(jax.grad(loss_from)(h))
        grads = jax.grad(lambda p: LOSS.forward(fnn.apply(NET, p, x), y)[0])(params)
        return out, grads

    dys, grads = split(params, x, y)
    for i, (dy, g) in enumerate(zip(dys, grads, strict=True)):
        layer = trace[f"net[{i}]"]
        np.testing.assert_allclose(layer.dy, dy, rtol=1e-12, atol=1e-15)
        for mine, ref in zip(jax.tree.leaves(layer.grads), jax.tree.leaves(g), strict=True):
            np.testing.assert_allclose(mine, ref, rtol=1e-12, atol=1e-15)
    value, net_grads = fnn.value_and_grad(NET, LOSS)(params, x, y)
    assert trace.loss == pytest.approx(float(value), rel=1e-14)
    mine_ref = zip(jax.tree.leaves(trace["net"].grads), jax.tree.leaves(net_grads), strict=True)
    for mine, ref in mine_ref:
        np.testing.assert_allclose(mine, ref, rtol=1e-14)


def test_trace_reaches_layers_inside_combinators(trace):
    paths = [layer.path for layer in trace.layers]
    assert paths[0] == "net" and trace.layers[0].depth == 0
    assert {"net[2]", "net[2][0]", "net[2][0][0]", "net[2][0][1]"} <= set(paths)
    inner = trace["net[2][0][1]"]  # the relu inside the residual block
    assert inner.leaf and inner.name == "relu"
    # A residual block passes dy down its chain and around it: dx = dy + the chain's dx.
    block, chain = trace["net[2]"], trace["net[2][0]"]
    np.testing.assert_allclose(block.dx, block.dy + chain.dx, rtol=1e-14)
    with pytest.raises(KeyError, match="paths"):
        trace["net[9]"]


def test_update_ratio_is_the_sgd_step_over_the_weights(problem, trace):
    params, _, _ = problem
    lr = 0.1
    updates = jax.tree.map(lambda g: -lr * g, trace["net"].grads)
    rows = {row["path"]: row for row in trace.summaries(updates)}
    w, g = params[0], trace["net[0]"].grads
    expected = lr * np.sqrt(sum(np.sum(np.square(leaf)) for leaf in jax.tree.leaves(g)))
    expected /= np.sqrt(sum(np.sum(np.square(leaf)) for leaf in jax.tree.leaves(w)))
    assert rows["net[0]"]["update_ratio"] == pytest.approx(expected, rel=1e-12)
    assert rows["net[1]"]["update_ratio"] is None  # tanh has no params


@pytest.mark.slow  # a fit with the probe
def test_fit_tracks_each_layers_gradient_flow(problem):
    params, x, y = problem
    lr = 0.05
    result = fnn.train.fit(
        NET, LOSS, optax.sgd(lr), params, (x, y), None, key=jax.random.PRNGKey(0),
        epochs=2, batch_size=5, progress=False, track_gradients=True,
    )  # fmt: skip
    history = result.history
    for key in (
        "delta_rms/net[0] dense(6)",
        "grad_rms/net[0] dense(6)",
        "update_ratio/net[0] dense(6)",
        "delta_rms/net[1] tanh",
        "grad_rms/net[2][0][0] dense(6)",
        "delta_rms/net[2][0][1] relu",
    ):
        assert len(history[key]) == 2 and np.all(np.isfinite(history[key])), key
    assert "grad_rms/net[1] tanh" not in history  # no params, no gradient row
    # The last epoch's row is the trace of the params that epoch ended with.
    trace = fnn.backward_trace(NET, LOSS, result.params, x, y)
    layer = trace["net[3]"]
    assert history["delta_rms/net[3] dense(3)"][-1] == pytest.approx(layer.rms_dy, rel=1e-10)
    assert history["grad_rms/net[3] dense(3)"][-1] == pytest.approx(layer.rms_grads, rel=1e-10)
    updates = jax.tree.map(lambda g: -lr * g, trace["net"].grads)
    ratio = layer.update_ratio(trace["net[3]"].select(updates))
    assert history["update_ratio/net[3] dense(3)"][-1] == pytest.approx(ratio, rel=1e-6)


# ---------------------------------------------------------------------------------------
# fnn.bench.summary


@pytest.fixture(scope="module")
def table():
    return fnn.bench.summary(fnn.serial(fnn.dense(8), fnn.tanh(), fnn.dense(3)), (5,), batch=4,
                             dtype="float64")  # fmt: skip


def test_summary_rows_params_and_flops(table):
    assert [row.name for row in table.rows] == ["dense(8)", "tanh", "dense(3)"]
    assert [row.params for row in table.rows] == [5 * 8 + 8, 0, 8 * 3 + 3]
    assert table.total_params == sum(row.params for row in table.rows)
    assert [row.out_shape for row in table.rows] == [(8,), (8,), (3,)]
    dense = table.rows[0]  # XLA's cost analysis: a matmul is 2·in·out FLOPs per example
    assert 2 * 5 * 8 <= dense.forward_flops <= 2 * 5 * 8 + 2 * 8
    assert 2 * (2 * 5 * 8) <= dense.backward_flops <= 2 * (2 * 5 * 8) + 4 * 8  # dW and dx
    text = str(table)
    assert "dense(8)" in text and "tanh" in text and "jax.grad" in text


def test_summary_counts_each_kept_array_once_where_it_is_first_kept(table):
    first, tanh, last = table.rows
    assert (first.kept_arrays, first.kept_bytes) == (1, 5 * 8)  # dense(8) keeps its input x
    assert (tanh.kept_arrays, tanh.kept_bytes) == (1, 8 * 8)  # y, float64, per example
    assert (last.kept_arrays, last.kept_bytes) == (0, 0)  # its x is tanh's y, counted there
    assert tanh.autodiff_arrays >= tanh.kept_arrays
    assert table.kept_bytes == sum(row.kept_bytes for row in table.rows) == (5 + 8) * 8
    net = fnn.serial(fnn.dense(8), fnn.tanh(), fnn.dense(3))
    params = fnn.init(net, jax.random.PRNGKey(0), (5,), jnp.float64)
    x = jnp.zeros((4, 5))
    arrays, nbytes = count_kept(lambda p, x: fnn.forward(net, p, x)[1], params, x)
    assert table.kept_bytes == (nbytes + x.nbytes) / 4  # the network's residuals and its input
    assert table.temp_bytes_manual is not None and table.temp_bytes_autodiff is not None


@pytest.mark.slow
def test_summary_shows_what_each_gpt_recompute_mode_keeps():
    ids = np.random.default_rng(0).integers(0, 7, (2, 5))
    kept = {mode: fnn.bench.summary(fnn.gpt(7, 6, 4, 2, 2, recompute=mode), x=ids,
                                    dtype="float64").kept_bytes
            for mode in ("none", "gelu", "all")}  # fmt: skip
    # per token and block: "gelu" drops g (4·D floats), "all" x̂₁, a, x̂₂, b (4·D) for x, x₂
    # and two σs (2·D + 2): float64, 2 blocks, 5 tokens per example
    assert kept["none"] - kept["gelu"] == 8 * 2 * 5 * 4 * 4
    assert kept["gelu"] - kept["all"] == 8 * 2 * 5 * (4 * 4 - 2 * 4 + 2)


def test_cli_bench_summary_of_your_layer(tmp_path, capsys):
    (tmp_path / "mine.py").write_text(
        "import fnn\n\ndef layer():\n    return fnn.serial(fnn.dense(4), fnn.tanh())\n"
    )
    spec = f"{tmp_path / 'mine.py'}:layer"
    code = fnn.cli.main(["bench", "--summary", "--layer", spec, "--in-shape", "3",
                         "--batch", "2", "--out", str(tmp_path / "o")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "dense(4)" in out and "tanh" in out and "kept (jax.grad)" in out
    assert not (tmp_path / "o").exists()  # a summary writes nothing


def test_cli_summary_takes_fnn_trains_model_flags(capsys):
    code = fnn.cli.main(["summary", "--dataset", "iris", "--hidden", "4", "--batch-size", "8"])
    out = capsys.readouterr().out
    assert code == 0
    assert "iris" in out and "dense(4)" in out and "batch 8" in out
    assert fnn.summary is fnn.bench.summary

"""Seeing the backward pass: `fnn.backward_trace` against `jax.vjp` of the network split
at each layer, at every depth of a network nested six deep; `fit(track_gradients=True)`'s
history against a trace; and `fnn.bench.summary`'s figures against XLA and the residual
pytrees (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
import fnn.cli
from fnn.bench.measure import count_kept
from fnn.walk import combinator

# The network as a spec: a Layer, ("serial", *specs) or ("residual", spec). The reference
# walks the spec (a residual's inner layer is not reachable from the built Layer).
SPEC = (
    "serial",
    fnn.dense(6),  # net[0]
    fnn.tanh(),  # net[1]
    (
        "residual",  # net[2]
        (
            "serial",  # net[2][0]
            fnn.dense(6),  # net[2][0][0], depth 3
            fnn.relu(),  # net[2][0][1]
            (
                "residual",  # net[2][0][2]
                (
                    "serial",  # net[2][0][2][0], depth 4
                    fnn.layer_norm(),  # net[2][0][2][0][0], depth 5
                    fnn.dense(6),
                    fnn.tanh(),
                    ("residual", fnn.dense(6)),  # net[2][0][2][0][3]; its dense at depth 6
                ),
            ),
        ),
    ),
    fnn.dense(3),  # net[3]
)
LOSS = fnn.mean_squared_error()


def _build(spec, plant=None, path=()):
    """The Layer of `spec`; the serial chain at path `plant` gets `_doubling_first_record`."""
    if isinstance(spec, fnn.Layer):
        return spec
    kind, *children = spec
    if kind == "residual":
        return fnn.residual(_build(children[0], plant, (*path, 0)))
    chain = fnn.serial(*(_build(c, plant, (*path, i)) for i, c in enumerate(children)))
    return _doubling_first_record(chain) if path == plant else chain


def _doubling_first_record(chain):
    """`chain` with a wrong walk: its backward sends its first layer 2·dy and halves the
    dx that comes back, so that layer's dy, dx and gradients are doubled while the dx
    handed on is the true one. The trace pins the mistake to that layer; above it, only
    the gradients of the combinators holding it are off (they hold its gradients)."""
    walk = chain.walk

    def backward(call, dy):
        def call_wrongly(i, dy_i):
            return call(i, 2 * dy_i) / 2 if i == 0 else call(i, dy_i)  # planted: 2·dy

        return walk.backward(call_wrongly, dy)

    return combinator(walk._replace(backward=backward), chain.name)


NET = _build(SPEC)


def _points(spec, params, x, rest, path=()):
    """`(path, layer, params, x, rest)` for the layer of `spec` and every layer inside it:
    its params, its input `x` and `rest(y)`, the loss as a function of its output `y`,
    everything after it composed (a serial chain's later layers, then a residual's skip
    `x_block + y` with the block's input fixed, then what follows the block, up to the
    loss)."""
    points = [(path, _build(spec), params, x, rest)]
    if isinstance(spec, fnn.Layer):
        return points
    kind, *children = spec
    if kind == "residual":  # y_block = x + inner(x): the inner layer's y enters as x + y
        return points + _points(children[0], params, x, lambda y: rest(x + y), (*path, 0))
    h = x
    for i, child in enumerate(children):

        def after(y, i=i):  # the chain's layers after i, then whatever follows the chain
            for j in range(i + 1, len(children)):
                y = fnn.apply(_build(children[j]), params[j], y)
            return rest(y)

        points += _points(child, params[i], h, after, (*path, i))
        h = fnn.apply(_build(child), params[i], h)
    return points


@jax.jit
def _reference(params, x, y):
    """Per layer, at every depth, by JAX alone: the network split at the layer, its input
    from the layers before it, `jax.vjp` of the layer, and `dy = jax.grad(rest)` at its
    output: `{path: (dy, dx, grads)}`, and the loss."""
    rows = {}
    for path, layer, p, x_in, rest in _points(
        SPEC, params, x, lambda pred: LOSS.forward(pred, y)[0]
    ):
        out, vjp = jax.vjp(lambda p, x, layer=layer: fnn.apply(layer, p, x), p, x_in)
        dy = jax.grad(rest)(out)  # ∂L/∂(its output), through everything after it
        grads, dx = vjp(dy)  # ∂L/∂(its params), ∂L/∂(its input)
        rows["net" + "".join(f"[{i}]" for i in path)] = (dy, dx, grads)
    return rows, LOSS.forward(fnn.apply(NET, params, x), y)[0]


def trace_mismatches(trace, reference, params, rtol=1e-12):
    """Where `trace` disagrees with `reference` (`_reference`'s rows): a list of
    `(path, what, error)`, `what` one of dy, dx, grads (a leaf's max|trace − ref| over
    max|ref|) and params (the layer's params against `select` of the network's), or
    `("paths", missing, extra)` when the layers differ; empty when all agree."""
    paths = [layer.path for layer in trace.layers]
    if sorted(paths) != sorted(reference) or len(set(paths)) != len(paths):
        return [("paths", sorted(set(reference) - set(paths)), sorted(set(paths) - set(reference)))]
    found = []
    for layer in trace.layers:
        dy, dx, grads = reference[layer.path]
        pairs = [("dy", layer.dy, dy), ("dx", layer.dx, dx), ("grads", layer.grads, grads),
                 ("params", layer.params, layer.select(params))]  # fmt: skip
        for what, mine, ref in pairs:
            if jax.tree.structure(mine) != jax.tree.structure(ref):
                found.append((layer.path, what, "structure"))
                continue
            for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(ref), strict=True):
                a, b = np.asarray(a), np.asarray(b)
                scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
                error = (
                    float(np.max(np.abs(a - b), initial=0.0)) / scale
                    if a.shape == b.shape
                    else np.inf
                )
                if not error <= rtol:
                    found.append((layer.path, what, error))
    return found


@pytest.fixture(scope="module")
def problem():
    """Params in general position (not init's zeros and ones), float64; numpy arrays (an
    eager jax add would compile once per shape)."""
    rng = np.random.default_rng(0)
    params = fnn.init(NET, jax.random.PRNGKey(1), (4,), jnp.float64)
    params = jax.tree.map(lambda p: np.asarray(p) + 0.3 * rng.standard_normal(p.shape), params)
    x = rng.standard_normal((5, 4))
    y = rng.standard_normal((5, 3))
    return params, x, y


@pytest.fixture(scope="module")
def trace(problem):
    return fnn.backward_trace(NET, LOSS, *problem)


@pytest.fixture(scope="module")
def reference(problem):
    return _reference(*problem)


def test_trace_matches_jax_vjp_of_the_network_split_at_every_layer_at_every_depth(
    problem, trace, reference
):
    params, x, y = problem
    rows, value = reference
    assert max(layer.depth for layer in trace.layers) == 6 and len(rows) == 15
    assert trace_mismatches(trace, rows, params) == []
    assert trace.loss == pytest.approx(float(value), rel=1e-14)
    _, net_grads = jax.jit(fnn.value_and_grad(NET, LOSS))(params, x, y)  # one compile
    mine_ref = zip(jax.tree.leaves(trace["net"].grads), jax.tree.leaves(net_grads), strict=True)
    for mine, ref in mine_ref:
        np.testing.assert_allclose(mine, ref, rtol=1e-14)


def test_the_comparison_catches_a_trace_wrong_only_at_depth_3(problem, reference):
    """The planted chain at net[2][0] walks its first layer (net[2][0][0], depth 3) with
    2·dy: every dy and dx above and beside it stays right, so only the gradients of the
    layers holding it say something is off; the comparison at every depth names the
    layer."""
    params, x, y = problem
    planted = _build(SPEC, plant=(2, 0))
    wrong = fnn.backward_trace(planted, LOSS, params, x, y)
    found = trace_mismatches(wrong, reference[0], params)
    assert {(path, what) for path, what, _ in found} == {
        ("net[2][0][0]", "dy"),
        ("net[2][0][0]", "dx"),
        ("net[2][0][0]", "grads"),
        ("net[2][0]", "grads"),  # the chain, its block and the network hold its gradients
        ("net[2]", "grads"),
        ("net", "grads"),
    }
    at_layer = [error for path, _, error in found if path == "net[2][0][0]"]
    assert all(error == pytest.approx(1.0, rel=1e-9) for error in at_layer)  # 2× - 1×
    assert wrong["net[2][0][0]"].depth == 3
    assert trace_mismatches(wrong, {**reference[0], "net[9]": ()}, params)[0][0] == "paths"


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
    updates = jax.tree.map(lambda g: -lr * np.asarray(g), trace["net"].grads)
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
    state = fnn.TrainState.create(NET, params, optax.sgd(lr))
    result = fnn.fit(
        NET, LOSS, optax.sgd(lr), state, (x, y), None, key=jax.random.PRNGKey(0),
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
    trace = fnn.backward_trace(NET, LOSS, result.state.params, x, y)
    layer = trace["net[3]"]
    assert history["delta_rms/net[3] dense(3)"][-1] == pytest.approx(layer.rms_dy, rel=1e-10)
    assert history["grad_rms/net[3] dense(3)"][-1] == pytest.approx(layer.rms_grads, rel=1e-10)
    updates = jax.tree.map(lambda g: -lr * np.asarray(g), trace["net"].grads)
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
    with pytest.warns(DeprecationWarning, match="fnn.bench.summary"):
        assert fnn.summary is fnn.bench.summary  # a deprecated alias, for one release

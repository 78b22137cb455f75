"""Subprocess worker for tests/train/test_parallel.py: runs with its own XLA_FLAGS (forced CPU
devices) or as one of several `jax.distributed` processes, and prints one JSON line of
measured differences for the test to judge.

    python tests/helpers/parallel_worker.py mesh OUT_DIR             # 8 forced devices
    python tests/helpers/parallel_worker.py distributed N I OUT train ARGS...  # process I of N

A distributed process first runs `fnn train ARGS...` (`fnn.cli.main`, in this process, with
64-bit types still off, as in a fresh `fnn` process): its --coordinator flags join the
processes, and the measurements after it run over the processes it joined (one pair of
processes for both, each importing jax once).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fnn
from fnn.check import draw_params
from fnn.train import parallel

jax.config.update("jax_numpy_rank_promotion", "raise")


def rel_err(a, b) -> float:
    """max over leaves of max|a − b| / max|b|."""
    errs = [
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / max(np.max(np.abs(y)), 1e-300))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    ]
    return max(errs)


def tree_rel_err(a, b) -> float:
    """max|a − b| / max|b| over the whole tree: for trees with a leaf that is zero up to
    rounding (a dense bias right before batch_norm gets a gradient of ~1e-17)."""
    diff = max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    return diff / max(float(np.max(np.abs(np.asarray(y)))) for y in jax.tree.leaves(b))


def params_for(net, in_shape, dtype, seed=0):
    """Params in general position drawn with numpy (`fnn.check.draw_params`), as device
    arrays: `init` is only traced for the shapes (its random draws would compile once per
    weight shape)."""
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    shapes = jax.eval_shape(lambda k: net.init(k, in_shape, jnp.dtype(dtype))[1], key)
    return jax.device_put(draw_params(shapes, np.random.default_rng(seed)))


def batch_of(seed: int, batch: int, features: int, dtype, classes: int = 10):
    """Inputs N(0, 1) and integer labels, drawn with numpy (nothing compiles)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, features)).astype(jnp.dtype(dtype))
    return x, rng.integers(0, classes, (batch,))


def problem(dtype: str, batch: int = 64):
    net = fnn.mlp([32, 10])
    loss = fnn.softmax_cross_entropy()
    params = params_for(net, (20,), dtype)
    x, y = batch_of(1, batch, 20, dtype)
    return net, loss, params, x, y


def step_errors(mesh) -> dict:
    """One SGD step and one Adam step, sharded vs one device, per dtype and grad mode."""
    out = {}
    for dtype in ("float32", "float64"):
        for mode in ("manual", "autodiff"):
            net, loss, params, x, y = problem(dtype)
            for name, opt in (("sgd", optax.sgd(0.1)),):  # Adam: below and in fnn train
                start = fnn.TrainState.create(net, params, opt)
                plain = fnn.make_train_step(net, loss, opt, mode)
                sharded = parallel.make_sharded_train_step(net, loss, opt, mode, mesh=mesh)
                t1, m1 = plain(start, (x, y))
                replicated = parallel.replicate(start, mesh)
                t2, m2 = sharded(replicated, parallel.shard_batch((x, y), mesh, 64))
                p2 = t2.params
                out[f"{dtype}/{mode}/{name}/params"] = rel_err(p2, t1.params)
                out[f"{dtype}/{mode}/{name}/loss"] = rel_err(m2["loss"], m1["loss"])
            grads_1 = jax.jit(fnn.value_and_grad(net, loss, mode))(params, x, y)[1]
            grad_fn = jax.jit(
                fnn.value_and_grad(net, loss, mode),
                in_shardings=(parallel.replicated(mesh), parallel.data_sharding(mesh), None),
                out_shardings=parallel.replicated(mesh),
            )
            out[f"{dtype}/{mode}/grads"] = rel_err(grad_fn(params, x, y)[1], grads_1)
            out["replicated_spec"] = str(p2[0]["W"].sharding.spec)
    try:
        sharded(replicated, (x[:60], y[:60]))
        out["indivisible_error"] = None
    except ValueError as error:
        out["indivisible_error"] = str(error)
    return out


def fsdp_errors(mesh) -> dict:
    """Three Adam steps with weight rows sharded over "data" vs the replicated step."""
    out = {}
    for mode in ("manual", "autodiff"):
        net = fnn.mlp([64, 10])
        loss = fnn.softmax_cross_entropy()
        params = params_for(net, (48,), "float64", seed=3)
        opt = optax.adam(1e-2)
        step, t_fsdp = parallel.make_fsdp_train_step(net, loss, opt, mode, mesh=mesh, params=params)
        W0 = t_fsdp.params[0]["W"]
        out["fsdp_W0_spec"] = str(W0.sharding.spec)
        out["fsdp_W0_shard_shape"] = list(W0.addressable_shards[0].data.shape)
        plain = fnn.make_train_step(net, loss, opt, mode)
        t_plain = fnn.TrainState.create(net, params, opt)
        for k in range(3):
            x, y = batch_of(10 + k, 32, 48, "float64")
            t_plain, _ = plain(t_plain, (x, y))
            t_fsdp, _ = step(t_fsdp, parallel.shard_batch((x, y), mesh, 32))
        out[f"fsdp/{mode}"] = rel_err(t_fsdp.params, t_plain.params)
    return out


def stateful_errors(mesh) -> dict:
    """batch_norm and dropout under data parallelism, float64: three steps of the sharded
    stateful step vs the one-device step (params, running statistics, loss), and two
    epochs of `fit(mesh=...)` vs plain `fit`."""
    out = {}
    net = fnn.mlp([32, 10], batch_norm=True, dropout=0.3)
    loss = fnn.softmax_cross_entropy()
    params = params_for(net, (20,), "float64")
    # SGD, not Adam: the gradient of a dense bias right before batch_norm is zero up to
    # rounding, and Adam would scale that rounding noise up to full-size steps.
    opt = optax.sgd(0.1)
    for mode in ("manual", "autodiff"):
        plain = fnn.make_train_step(net, loss, opt, mode)
        sharded = parallel.make_sharded_train_step(net, loss, opt, mode, mesh=mesh)
        one = fnn.TrainState.create(net, params, opt)
        many = parallel.replicate(one, mesh)
        for k in range(3):
            x, y = batch_of(10 + k, 64, 20, "float64")
            key = jax.random.PRNGKey(30 + k)
            one, m1 = plain(one, (x, y), key)
            many, m8 = sharded(many, parallel.shard_batch((x, y), mesh, 64), key)
        out[f"stateful/{mode}/params"] = tree_rel_err(many.params, one.params)
        out[f"stateful/{mode}/state"] = rel_err(many.state, one.state)
        out[f"stateful/{mode}/loss"] = rel_err(m8["loss"], m1["loss"])
        moved = jax.tree.map(
            lambda a, b: np.max(np.abs(np.asarray(a) - np.asarray(b))),
            one.state,
            fnn.init_state(net, params),
        )
        out[f"stateful/{mode}/state_moved"] = float(max(jax.tree.leaves(moved)))
    x, y = batch_of(5, 96, 20, "float64")
    kwargs = dict(key=jax.random.PRNGKey(7), epochs=2, batch_size=16, progress=False)
    start = fnn.TrainState.create(net, params, opt)
    a = fnn.fit(net, loss, opt, start, (x, y), (x, y), **kwargs)
    b = fnn.fit(net, loss, opt, start, (x, y), (x, y), mesh=mesh, **kwargs)
    out["stateful/fit/params"] = tree_rel_err(b.state.params, a.state.params)
    out["stateful/fit/state"] = rel_err(b.state.state, a.state.state)
    out["stateful/fit/test_loss"] = rel_err(b.history["test_loss"], a.history["test_loss"])
    return out


def cli_errors(out_dir: Path) -> dict:
    """`fnn train` for 2 epochs on the tutorial's data (bundled: no scikit-learn to import;
    8 hidden units, 5 steps of 32 an epoch) over 8 devices and over 1, in float64 (the
    float32 sharded step is compared with the one-device step by `step_errors`)."""
    from fnn.cli import main

    out = {}
    for dtype in ("float64",):
        runs = {}
        for devices in (8, 1):
            run_dir = out_dir / f"{dtype}-{devices}"
            argv = ["train", "--dataset", "tutorial", "--hidden", "8", "--epochs", "2"]
            argv += ["--no-progress", "--dtype"]
            argv += [dtype, "--devices", str(devices), "--out", str(run_dir)]
            code = main(argv)
            assert code == 0, (argv, code)
            metrics = json.loads((run_dir / "metrics.json").read_text())
            with np.load(run_dir / "checkpoint.npz") as saved:  # params and optimiser state
                arrays = [saved[k] for k in sorted(saved.files) if saved[k].dtype.kind == "f"]
            runs[devices] = (metrics["history"], arrays)
        out[f"cli/{dtype}/train_loss"] = rel_err(runs[8][0]["train_loss"], runs[1][0]["train_loss"])
        out[f"cli/{dtype}/test_accuracy"] = rel_err(
            runs[8][0]["test_accuracy"], runs[1][0]["test_accuracy"]
        )
        out[f"cli/{dtype}/params"] = rel_err(runs[8][1], runs[1][1])
    return out


def main_mesh(out_dir: str) -> dict:
    jax.config.update("jax_enable_x64", True)
    mesh = parallel.make_data_mesh()
    result = {"devices": mesh.size}
    result.update(step_errors(mesh))
    result.update(fsdp_errors(mesh))
    result.update(stateful_errors(mesh))
    result.update(cli_errors(Path(out_dir)))
    return result


def global_batches(k: int, batch: int):
    """The same K global batches in every process: digits-like random data."""
    pairs = [batch_of(7 + i, batch, 20, "float64") for i in range(k)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def cli_run(argv: list[str]) -> dict:
    """`fnn train ARGS...` in this process (it joins the processes): its exit code and what
    it printed on stdout (captured here, so that this worker's own RESULT line stays apart;
    process i > 0 sends stdout to os.devnull itself, undone when the capture ends)."""
    from fnn.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    return {"cli_code": code, "cli_stdout": printed.getvalue()}


def main_distributed(num_processes: int, process_id: int, out_dir: str, argv) -> dict:
    cli = cli_run(argv)  # joins the processes: before any other computation
    assert jax.process_count() == num_processes, cli
    jax.config.update("jax_enable_x64", True)  # the measurements below are float64
    mesh = parallel.make_data_mesh()
    net, loss, params, _, _ = problem("float64")
    opt = optax.adam(1e-2)
    batch, k = 16, 5
    xs, ys = global_batches(k, batch)
    rows = parallel.process_rows(batch, mesh)
    step = parallel.make_sharded_train_step(net, loss, opt, "manual", mesh=mesh)
    sharded = parallel.replicate(fnn.TrainState.create(net, params, opt), mesh)
    for x, y in zip(xs, ys, strict=True):  # each process feeds its rows of every batch
        local = (np.asarray(x)[rows], np.asarray(y)[rows])
        sharded, _ = step(sharded, parallel.shard_batch(local, mesh, batch))
    # The same K global batches on one device, in this process alone.
    plain = fnn.make_train_step(net, loss, opt, "manual")
    one = fnn.TrainState.create(net, params, opt)
    for x, y in zip(xs, ys, strict=True):
        one, _ = plain(one, (x, y))
    # fit over the mesh (sharded epochs, local evaluation) vs fit on one device.
    x_all = np.concatenate(xs)
    y_all = np.concatenate(ys)
    common = dict(key=jax.random.PRNGKey(5), epochs=2, batch_size=16, progress=False)
    start = fnn.TrainState.create(net, params, opt)
    fit_mesh = fnn.fit(net, loss, opt, start, (x_all, y_all), **common, mesh=mesh)
    fit_one = fnn.fit(net, loss, opt, start, (x_all, y_all), **common)
    result = {
        **cli,
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "devices": mesh.size,
        "rows": [rows.start, rows.stop],
        "step_params": rel_err(parallel.local_copy(sharded.params), one.params),
        "fit_params": rel_err(parallel.local_copy(fit_mesh.state.params), fit_one.state.params),
        "fit_train_loss": rel_err(fit_mesh.history["train_loss"], fit_one.history["train_loss"]),
    }
    Path(out_dir, f"process{process_id}.json").write_text(json.dumps(result))
    return result


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "mesh":
        result = main_mesh(args[0])
    elif command == "distributed":
        result = main_distributed(int(args[0]), int(args[1]), args[2], args[3:])
    else:
        raise SystemExit(f"unknown command {command!r}")
    print("RESULT " + json.dumps(result), flush=True)

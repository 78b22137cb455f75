"""Data parallel over a mesh and over several processes: every run that forces devices or
joins processes is a subprocess with its own environment (forced CPU devices,
jax.distributed on 127.0.0.1), always ended by a timeout; this process never forces devices
nor joins (a process that gives up on an unreachable coordinator, before JAX is touched,
runs here). tests/helpers/parallel_worker.py does the work and prints its measurements; the
tests judge them. The subprocess tests are slow."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers.battery import normal, params_for

from fnn.train import distributed, parallel

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "helpers" / "parallel_worker.py"
FNN = [sys.executable, "-c", "import sys; from fnn.cli import main; sys.exit(main(sys.argv[1:]))"]


def free_port() -> int:
    """A port nobody listens on now (bound to 0 on 127.0.0.1 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int | None = None) -> dict[str, str]:
    """This process's environment (its XLA flags included), on the CPU, with `devices`
    forced CPU devices."""
    values = dict(os.environ, JAX_PLATFORMS="cpu")
    if devices is not None:
        flags = values.get("XLA_FLAGS", "")
        values["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}"
    return values


def result_of(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.fixture(scope="module")
def mesh_run(tmp_path_factory):
    """One subprocess with 8 forced CPU devices: steps, FSDP and `fnn train` runs."""
    out = tmp_path_factory.mktemp("mesh")
    done = subprocess.run(
        [sys.executable, str(WORKER), "mesh", str(out)],
        env=env(8),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return result_of(done.stdout)


TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["manual", "autodiff"])
def test_eight_device_step_equals_one_device_step(mesh_run, dtype, mode):
    assert mesh_run["devices"] == 8
    assert mesh_run["replicated_spec"] == "P()"
    for what in ("sgd/params", "sgd/loss", "grads"):
        assert mesh_run[f"{dtype}/{mode}/{what}"] <= TOLERANCE[dtype], what


@pytest.mark.slow
def test_batch_not_divisible_by_devices_names_both_numbers(mesh_run):
    message = mesh_run["indivisible_error"]
    assert message is not None
    assert "batch size 60" in message and "8 devices" in message


@pytest.mark.slow
def test_fsdp_step_shards_weights_and_equals_the_replicated_step(mesh_run):
    assert mesh_run["fsdp_W0_spec"] == "P('data', None)"
    assert mesh_run["fsdp_W0_shard_shape"] == [48 // 8, 64]  # each device: 1/8 of the rows
    assert mesh_run["fsdp/manual"] <= 1e-12
    assert mesh_run["fsdp/autodiff"] <= 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["manual", "autodiff"])
def test_batch_norm_and_dropout_step_on_eight_devices_equals_one_device(mesh_run, mode):
    """Batch statistics over the global batch, dropout masks drawn for the global batch:
    three sharded steps equal three one-device steps, running statistics included."""
    for what in ("params", "state", "loss"):
        assert mesh_run[f"stateful/{mode}/{what}"] <= 1e-12, what
    assert mesh_run[f"stateful/{mode}/state_moved"] > 1e-3  # the statistics did update


@pytest.mark.slow
def test_fit_with_batch_norm_and_dropout_on_eight_devices_equals_one_device(mesh_run):
    for what in ("params", "state", "test_loss"):
        assert mesh_run[f"stateful/fit/{what}"] <= 1e-12, what


@pytest.mark.slow
def test_fnn_train_on_eight_devices_equals_one_device(mesh_run):
    """In float64 (the float32 sharded step: test_eight_device_step_equals_one_device_step)."""
    assert mesh_run["cli/float64/train_loss"] <= TOLERANCE["float64"]
    assert mesh_run["cli/float64/test_accuracy"] == 0.0
    assert mesh_run["cli/float64/params"] <= TOLERANCE["float64"]


def _run_processes(commands: list[list[str]], timeout: float) -> list[subprocess.CompletedProcess]:
    """Starts every command at once; kills them all if any is still running at `timeout`."""
    procs = [
        subprocess.Popen(
            c, env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in commands
    ]
    done = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return done


def write_blobs_csv(path: Path) -> Path:
    """150 examples of 4 features in 3 separated classes, as a CSV with a header (a data
    set that needs no scikit-learn: each process would spend seconds importing it)."""
    rng = np.random.default_rng(0)
    labels = np.arange(150) % 3
    x = 3.0 * np.eye(3, 4)[labels] + rng.standard_normal((150, 4))
    rows = [
        ",".join(f"{v:.4f}" for v in row) + f",{label}"
        for row, label in zip(x, labels, strict=True)
    ]
    path.write_text("\n".join(["x0,x1,x2,x3,label", *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Two processes started together, each running the worker's `distributed` command:
    first `fnn train` over both (its --coordinator flags join them; out dirs p0 and p1),
    then the worker's measurements over the processes joined. (tmp dir, [result 0, 1])."""
    tmp_path = tmp_path_factory.mktemp("two")
    port = free_port()
    data = ["--dataset", "csv", "--csv", str(write_blobs_csv(tmp_path / "blobs.csv"))]
    commands = [
        [sys.executable, str(WORKER), "distributed", "2", str(i), str(tmp_path)]
        + ["train", *data, "--hidden", "8", "--lr", "0.05", "--epochs", "2"]
        + ["--no-progress", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
        + ["--process-id", str(i), "--out", str(tmp_path / f"p{i}")]
        for i in range(2)
    ]
    done = _run_processes(commands, timeout=180)
    for d in done:
        assert d.returncode == 0, d.stderr[-3000:]
    return tmp_path, [result_of(d.stdout) for d in done]


@pytest.mark.slow
def test_two_processes_reach_the_one_process_params(two_processes):
    _, results = two_processes
    assert [r["process"] for r in results] == [0, 1]
    assert all(r["processes"] == 2 and r["devices"] == 2 for r in results)
    assert [r["rows"] for r in results] == [[0, 8], [8, 16]]  # each feeds half of a batch
    for r in results:
        assert r["step_params"] <= 1e-12  # 5 Adam steps, float64
        assert r["fit_params"] <= 1e-12  # 2 epochs of fit over the mesh
        assert r["fit_train_loss"] <= 1e-12


@pytest.mark.slow
def test_fnn_train_on_two_processes_writes_from_process_zero_only(two_processes):
    tmp_path, results = two_processes
    assert [r["cli_code"] for r in results] == [0, 0]
    assert "data-parallel over 2 cpu devices on 2 processes" in results[0]["cli_stdout"]
    assert results[1]["cli_stdout"] == ""  # process 1 prints nothing of its own
    outs = [tmp_path / "p0", tmp_path / "p1"]
    metrics = json.loads((outs[0] / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["test_accuracy"] > 0.5
    assert metrics["data_parallel"] == {"devices": 2, "processes": 2, "axis": "data"}
    assert (outs[0] / "checkpoint.npz").exists()
    assert not outs[1].exists()


@pytest.fixture(scope="module")
def lone_processes():
    """Two `fnn train` processes of two, each alone, run at the same time (each mostly
    waits out its 3 s timeout): process 0 (the coordinator) whose process 1 never comes, a
    subprocess (JAX's runtime aborts it); and, in this process meanwhile, process 1 with
    nobody at its coordinator's address (it gives up before JAX is touched: waiting for
    the address is plain sockets, so `fnn.cli.main` returns its exit code here).
    {case: (port, result)}."""
    from fnn.cli import main

    unreachable = free_port()  # nobody listens there
    alone = free_port()
    while alone == unreachable:
        alone = free_port()
    common = ["--num-processes", "2", "--coordinator-timeout", "3"]
    zero = [*FNN, "train", "--coordinator", f"127.0.0.1:{alone}", "--process-id", "0", *common]
    proc = subprocess.Popen(
        zero, env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        argv = ["train", "--coordinator", f"127.0.0.1:{unreachable}", "--process-id", "1"]
        stdout, stderr = io.StringIO(), io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main([*argv, *common])
        one = subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())
        one.wall_s = time.monotonic() - started
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    zero_done = subprocess.CompletedProcess(zero, proc.returncode, out, err)
    return {"unreachable": (unreachable, one), "alone": (alone, zero_done)}


@pytest.mark.slow
def test_unreachable_coordinator_is_a_clear_error_within_the_timeout(lone_processes):
    port, done = lone_processes["unreachable"]
    assert done.returncode == 2
    assert f"could not reach the coordinator at 127.0.0.1:{port} within 3 s" in done.stderr
    assert done.wall_s < 30  # its 3 s of waiting, then the error


@pytest.mark.slow
def test_process_zero_alone_ends_within_the_timeout_saying_what_it_waited_for(lone_processes):
    port, done = lone_processes["alone"]
    assert done.returncode != 0  # JAX's runtime aborts (SIGABRT: -6 here, 134 in a shell)
    assert "process 0 of 2: joining 127.0.0.1" in done.stderr
    assert "waiting up to 3 s for all 2 processes" in done.stderr


# In-process checks that need no devices beyond the one this process has.


def test_bad_addresses_and_ids_are_value_errors():
    with pytest.raises(ValueError, match="HOST:PORT"):
        distributed.parse_address("localhost")
    with pytest.raises(ValueError, match="HOST:PORT"):
        distributed.parse_address("localhost:99999")
    with pytest.raises(ValueError, match=r"process id must be in \[0, 2\)"):
        distributed.initialize_distributed("127.0.0.1:1234", 2, 2)


def test_mesh_of_more_devices_than_there_are_names_the_count():
    local = jax.local_device_count()
    with pytest.raises(ValueError, match=f"has {local} local cpu device"):
        parallel.make_data_mesh(local + 1)


def test_one_device_mesh_step_equals_the_plain_step():
    import optax

    import fnn

    mesh = parallel.make_data_mesh(1)
    net, loss = fnn.mlp([8, 3]), fnn.softmax_cross_entropy()
    params = params_for(net, (4,))
    x = normal((6, 4), seed=1)
    y = np.array([0, 1, 2, 0, 1, 2])
    opt = optax.sgd(0.1)
    start = fnn.TrainState.create(net, params, opt)
    one, _ = fnn.make_train_step(net, loss, opt)(start, (x, y))
    step = parallel.make_sharded_train_step(net, loss, opt, mesh=mesh)
    sharded, _ = step(parallel.replicate(start, mesh), (x, y))
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(sharded.params), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-14, atol=0)


def test_fnn_train_scale_flags_are_checked_before_anything_runs(tmp_path, capsys):
    from fnn.cli import main

    out = str(tmp_path / "run")
    assert main(["train", "--coordinator", "127.0.0.1:1234", "--out", out]) == 2
    assert "got only --coordinator" in capsys.readouterr().err
    devices = jax.local_device_count() + 1
    assert main(["train", "--devices", str(devices), "--out", out]) == 2
    err = capsys.readouterr().err
    assert f"devices={devices}: this process has" in err and "(set with --devices)" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # two fits; the eight-device fits (slow too) check the same, harder
def test_fit_over_a_one_device_mesh_equals_plain_fit():
    import optax

    import fnn

    net, loss = fnn.mlp([8, 3], "tanh"), fnn.softmax_cross_entropy()
    params = params_for(net, (4,))
    x = normal((40, 4), seed=1)
    y = np.arange(40) % 3
    common = dict(key=jax.random.PRNGKey(2), epochs=2, batch_size=8, progress=False)
    opt = optax.adam(1e-2)
    start = fnn.TrainState.create(net, params, opt)
    plain = fnn.fit(net, loss, opt, start, (x, y), (x, y), **common)
    meshed = fnn.fit(
        net, loss, opt, start, (x, y), (x, y), **common, mesh=parallel.make_data_mesh(1)
    )
    pairs = zip(
        jax.tree.leaves(plain.state.params), jax.tree.leaves(meshed.state.params), strict=True
    )
    for a, b in pairs:
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-15)
    for name, values in plain.history.items():
        if name != "epoch_s":
            np.testing.assert_allclose(meshed.history[name], values, rtol=1e-12)

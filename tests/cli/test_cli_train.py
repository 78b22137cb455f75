"""`fnn train`, in process through `fnn.cli.main` (plus one subprocess run of the entry
point). Every in-process run costs its compiles (gradient check, init, epoch, evaluation)
and a PNG whatever its size, so runs whose point is the CLI's behaviour (messages, exit
codes, files, resume) train iris (120 training examples) with 8 hidden units for a few
epochs, and tests that inspect the same run share it (`iris_run`). The default network on
the default data set (digits) trains in one slow test."""

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fnn.cli import main

IRIS = ["--dataset", "iris", "--hidden", "8"]


def _train(capsys, *args):
    code = main(["train", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _main_captured(argv):
    """`main(argv)` with stdout and stderr captured (for module-scoped fixtures, which
    cannot use capsys): (code, out, err)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """`fnn train` on iris, 8 hidden units, 6 epochs, with the progress bar: the run the
    tests below inspect, and the uninterrupted run the resume test compares with."""
    out = tmp_path_factory.mktemp("iris") / "run"
    code, stdout, stderr = _main_captured(["train", *IRIS, "--epochs", "6", "--out", str(out)])
    return code, stdout, stderr, out


def _gradient_check_error(out):
    """The max relative error a run reports on its second line (the first names the
    data set's recipe and the flags that override it)."""
    recipe, first_line = out.splitlines()[:2]
    assert recipe.startswith("recipe: ")
    assert first_line.startswith(
        "gradient check: the network's hand-written gradients match jax.grad"
    )
    assert "max relative error" in first_line
    return float(first_line.split("max relative error ")[1].split(" ")[0])


def test_run_checks_gradients_first_then_trains(iris_run):
    code, out, err, _ = iris_run
    assert code == 0, err
    assert _gradient_check_error(out) < 1e-10
    assert out.startswith("recipe: iris's (16 relu, adam lr 0.01, batch 16, 100 epochs)")
    assert "overridden by --epochs, --hidden" in out.splitlines()[0]
    assert "iris: test accuracy" in out
    assert "manual gradients" in out
    assert "epoch" in err  # the progress bar, on stderr


def test_run_writes_metrics_curves_and_checkpoint(iris_run):
    code, _, _, out = iris_run
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "iris"
    assert metrics["grad_mode"] == "manual"
    assert metrics["epochs"] == 6
    assert metrics["status"] == "completed"
    history = metrics["history"]
    for key in ("train_loss", "test_loss", "test_accuracy", "train_accuracy", "epoch_s"):
        assert len(history[key]) == 6, key
    assert metrics["test_accuracy"] == history["test_accuracy"][-1]
    assert metrics["wall_s"] > 0
    assert metrics["device"]["platform"] == "cpu" and metrics["device"]["kind"]
    assert metrics["config"]["hidden"] == [8]
    assert metrics["recipe"]["dataset"] == "iris"
    assert metrics["recipe"]["overridden"] == ["epochs", "hidden"]
    assert metrics["recipe"]["fields"]["lr"] == 0.01  # iris's recipe, not digits'
    assert metrics["gradient_check"]["passed"] is True
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (out / "checkpoint.npz").stat().st_size > 0


@pytest.mark.slow
def test_default_run_on_digits_reaches_095_in_8_epochs(tmp_path):
    """The defaults (digits, 256-128 relu): the data set and network the run records, and
    the quality they reach (>= 0.97 after the default 30 epochs)."""
    code, out, err = _main_captured(
        ["train", "--epochs", "8", "--no-progress", "--out", str(tmp_path)]
    )
    assert code == 0, err
    assert _gradient_check_error(out) < 1e-10
    assert "digits: test accuracy" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["dataset"] == "digits" and metrics["config"]["hidden"] == [256, 128]
    assert metrics["test_accuracy"] >= 0.95


def _params(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k.startswith(("params/", "opt_state/", "state/"))}


def _assert_resumed_equals_straight(capsys, straight, split, extra):
    """`fnn train --epochs 3` into `split`, then `--resume --epochs 6`: the checkpoint
    (params, optimiser state, running statistics) and the history equal those of the
    uninterrupted 6-epoch run in `straight`, bit for bit."""
    code, _, err = _train(
        capsys, *IRIS, *extra, "--no-progress", "--epochs", "3", "--out", str(split)
    )
    assert code == 0, err
    code, out, err = _train(
        capsys, "--resume", "--epochs", "6", "--out", str(split), "--no-progress"
    )
    assert code == 0, err
    assert "resuming after epoch 3" in out
    a, b = _params(straight / "checkpoint.npz"), _params(split / "checkpoint.npz")
    assert a.keys() == b.keys() and a
    assert any(k.startswith("state/") for k in a) == bool(extra)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    ha = json.loads((straight / "metrics.json").read_text())["history"]
    hb = json.loads((split / "metrics.json").read_text())["history"]
    assert ha["train_loss"] == hb["train_loss"] and len(hb["train_loss"]) == 6
    assert ha["test_accuracy"] == hb["test_accuracy"]


@pytest.mark.slow  # two more whole runs
def test_resume_three_then_six_equals_six_bit_for_bit(iris_run, tmp_path, capsys):
    """The uninterrupted run is `iris_run`'s (the progress bar changes nothing)."""
    assert iris_run[0] == 0
    _assert_resumed_equals_straight(capsys, iris_run[3], tmp_path / "split", ())


@pytest.mark.slow
def test_resume_with_batch_norm_and_dropout_equals_the_uninterrupted_run(tmp_path, capsys):
    """The running statistics come back from the checkpoint and the dropout keys depend
    only on the key and the epoch."""
    extra = ("--batch-norm", "--dropout", "0.2")
    straight = tmp_path / "straight"
    code, _, err = _train(
        capsys, *IRIS, *extra, "--no-progress", "--epochs", "6", "--out", str(straight)
    )
    assert code == 0, err
    _assert_resumed_equals_straight(capsys, straight, tmp_path / "split", extra)


def test_resume_refuses_flags_that_change_the_run(iris_run, tmp_path, capsys):
    out = iris_run[3]
    code, _, err = _train(capsys, "--resume", "--out", str(out), "--hidden", "32")
    assert code == 2
    assert "--hidden (32,) (the checkpoint has (8,))" in err
    code, _, err = _train(capsys, *IRIS, "--epochs", "1", "--out", str(out))
    assert code == 2 and "already holds a run" in err
    code, _, err = _train(capsys, "--resume", "--out", str(tmp_path / "nothing"))
    assert code == 2 and "no checkpoint at" in err


def test_corrupt_checkpoint_on_resume_is_exit_2(iris_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(iris_run[3], out)  # a copy: iris_run's own checkpoint stays intact
    path = out / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code, _, err = _train(capsys, "--resume", "--out", str(out), "--epochs", "7")
    assert code == 2
    assert "checkpoint" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "flag, value, listed",
    [
        ("--dataset", "cifar", "digits"),
        ("--optimizer", "rmsprop", "adamw"),
        ("--activation", "swish", "relu"),
        ("--grad", "numeric", "autodiff"),
    ],
)
def test_unknown_choices_exit_2_listing_valid_ones(capsys, flag, value, listed):
    with pytest.raises(SystemExit) as info:
        main(["train", flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and value in err and listed in err


def test_batch_larger_than_the_data_is_exit_2(tmp_path, capsys):
    code, out, err = _train(
        capsys, "--dataset", "iris", "--batch-size", "1000", "--out", str(tmp_path)
    )
    assert code == 2
    assert "batch size 1000 is larger than the 120 training examples" in err
    assert "(set with --batch-size)" in err
    assert out == ""


def test_missing_data_dir_files_are_named(tmp_path, capsys):
    code, _, err = _train(
        capsys, "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")
    )
    assert code == 2
    assert "train-images-idx3-ubyte" in err and "Traceback" not in err


def test_wrong_loss_for_the_task_is_exit_2(tmp_path, capsys):
    code, _, err = _train(capsys, "--loss", "mean_squared_error", "--out", str(tmp_path))
    assert code == 2 and "does not fit the classification data set" in err


def test_diverging_run_exits_1_naming_epoch_and_learning_rate(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = _train(
        capsys,
        *IRIS,
        "--no-progress",
        "--batch-size",
        "16",
        "--optimizer",
        "sgd",
        "--lr",
        "10000",
        "--epochs",
        "3",
        "--out",
        str(out),
    )
    assert code == 1
    assert "at epoch 1 (learning rate 10000)" in err
    assert "--lr" in err and "--clip-norm" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and "error" in metrics


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory):
    """`fnn train` on diabetes (regression), 8 hidden units, 2 epochs, in float64 with
    autodiff gradients: one run for the two tests below (the dtype and the grad mode
    change nothing of what a regression run reports, nor the task what float64 keeps)."""
    out = tmp_path_factory.mktemp("diabetes") / "run"
    argv = ["train", "--dataset", "diabetes", "--hidden", "8", "--no-progress", "--epochs", "2"]
    argv += ["--dtype", "float64", "--grad", "autodiff", "--out", str(out)]
    code, stdout, stderr = _main_captured(argv)
    return code, stdout, stderr, out


@pytest.mark.slow  # the diabetes_run fixture: a whole run
def test_float64_run_keeps_float64_params(diabetes_run):
    code, stdout, err, out = diabetes_run
    assert code == 0, err
    assert "float64" in stdout and "autodiff gradients" in stdout
    params = _params(out / "checkpoint.npz")
    assert params and all(
        v.dtype == np.float64 for k, v in params.items() if k.startswith("params/")
    )


@pytest.mark.slow  # the diabetes_run fixture: a whole run
def test_regression_run_reports_r2(diabetes_run):
    code, stdout, err, out = diabetes_run
    assert code == 0, err
    assert "diabetes: test R²" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test_r2" in metrics and "test_r2" in metrics["history"]
    assert metrics["loss"] == "mean_squared_error"


def _fnn_command():
    """The installed `fnn` script next to this Python, else the same entry point via -c."""
    script = Path(sys.executable).with_name("fnn")
    if script.exists():
        return [str(script)]
    found = shutil.which("fnn")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from fnn.cli import main; sys.exit(main())"]


@pytest.mark.slow  # a subprocess (it mostly imports jax and fnn)
def test_entry_point_help_and_a_wrong_flag(capsys):
    """The installed entry point, in a process of its own, given a wrong flag: exit status
    2 and argparse's message. Its help, in this process (the same parser and epilog)."""
    wrong = subprocess.run(
        [*_fnn_command(), "train", "--bogus"], capture_output=True, text=True, timeout=120
    )
    assert wrong.returncode == 2
    assert "unrecognized arguments: --bogus" in wrong.stderr
    with pytest.raises(SystemExit) as helped:
        main(["train", "--help"])
    assert helped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal width
    for flag in ("--dataset", "--hidden", "--grad", "--resume", "--checkpoint-every", "exit codes"):
        assert flag in text


def test_a_write_that_fails_mid_run_names_the_path_keeps_the_checkpoint_and_exits_1(
    tmp_path, monkeypatch
):
    """The disk fills up while the curves are drawn (after the last checkpoint): the error
    names the path and the reason, the checkpoint stays readable, the exit code is 1."""
    import errno

    from fnn.experiment import outputs
    from fnn.train.checkpoint import read_metadata

    def disk_full(history, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(outputs, "plot_history", disk_full)
    out = tmp_path / "run"
    code, _, err = _main_captured(
        ["train", *IRIS, "--epochs", "2", "--no-progress", "--out", str(out)]
    )
    assert code == 1
    assert f"could not write {out / 'curves.png'}: No space left on device" in err
    assert f"the last good checkpoint is {out / 'checkpoint.npz'}" in err
    assert read_metadata(out / "checkpoint.npz")["epoch"] == 2
    assert "Traceback" not in err


def test_a_network_whose_gradient_check_fails_is_not_trained(tmp_path, monkeypatch, capsys):
    """A built-in layer with a wrong backward (dense's dW off by a factor 1.5, planted
    in the factory `fnn.mlp` builds from): the check before training fails, the run
    exits 1 naming the wrong leaves, and nothing is trained or written."""
    from fnn.layers import models

    right_dense, built = models.dense, []

    def wrong_dense(*args, **kwargs):
        layer = right_dense(*args, **kwargs)

        def backward(params, residuals, dy):
            dparams, dx = layer.backward(params, residuals, dy)
            return {**dparams, "W": 1.5 * dparams["W"]}, dx  # wrong: dW = 1.5·xᵀ·dy

        built.append(layer.name)
        return layer._replace(backward=backward)

    monkeypatch.setattr(models, "dense", wrong_dense)
    out = tmp_path / "run"
    code, stdout, err = _train(capsys, *IRIS, "--epochs", "1", "--no-progress", "--out", str(out))
    assert built == ["dense(8)", "dense(3)"]  # the planted factory built the network
    assert code == 1
    assert "hand-written gradients DO NOT match jax.grad" in stdout
    assert "max relative error 5.0e-01 (tolerance 1e-10)" in stdout
    assert "FAILED" in err and "params[0]['W']" in err  # the wrong leaf, named
    assert "fnn train: error: the gradient check failed: not training" in err
    assert "training serial" not in stdout  # the line a run prints as it starts to fit
    assert not out.exists() or list(out.iterdir()) == []  # no checkpoint, metrics, curves

"""The text data set, `fnn train --dataset text --model gpt`, and `fnn sample`.

A language-model run compiles a gpt (gradient check, init, epoch, evaluation), so the CLI
tests share one tiny run (`text_run`: context 16, width 16, 1 block, 2 epochs on a 6 kB
file) and check its outputs, its resume and its samples; the bad inputs exit before any
compile."""

import contextlib
import io
import json

import numpy as np
import pytest

from fnn.cli import main
from fnn.data import DataError, load_dataset
from fnn.data.text import text_windows

TINY = ["--context", "16", "--width", "16", "--heads", "2", "--blocks", "1", "--batch-size", "8"]


def _main(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


def _text(n: int) -> bytes:
    """`n` bytes of a repetitive little program: learnable in a few steps."""
    line = b"def f(x):\n    return x + 1\n\nprint(f(2))\n"
    return (line * (n // len(line) + 1))[:n]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_bytes(_text(6000))
    return path


# ----------------------------------------------------------------------------- the data


def test_windows_are_next_byte_pairs_split_by_position(tmp_path):
    path = tmp_path / "t.txt"
    data = bytes(range(256)) * 8  # 2048 bytes whose position is readable from the value
    path.write_bytes(data)
    x_train, y_train, x_test, y_test = text_windows(path, context=10, test_fraction=0.25)
    assert x_train.shape == y_train.shape == (len(data) * 3 // 4 // 10, 10)
    assert x_train.dtype == np.int32
    np.testing.assert_array_equal(x_train[:, 1:], y_train[:, :-1])  # y is x shifted by one
    np.testing.assert_array_equal((x_train + 1) % 256, y_train)
    ids = np.frombuffer(data, np.uint8)
    n_train = len(data) * 3 // 4
    # test windows are consecutive and come from the held-out end only
    np.testing.assert_array_equal(x_test[0], ids[n_train : n_train + 10])
    np.testing.assert_array_equal(x_test[1], ids[n_train + 10 : n_train + 20])
    assert len(x_test) == (len(data) - n_train - 10 - 1) // 10 + 1
    # train windows start at offsets drawn with the seed, inside the train part
    starts = {int(w[0]) for w in x_train}
    assert len(starts) > 1
    again = text_windows(path, context=10, test_fraction=0.25)[0]
    np.testing.assert_array_equal(again, x_train)
    other = text_windows(path, context=10, test_fraction=0.25, seed=1)[0]
    assert not np.array_equal(other, x_train)


def test_load_dataset_text_is_a_language_model_set(text_file):
    data = load_dataset("text", text_path=text_file, context=16, test_fraction=0.1)
    assert data.task == "language_model" and data.num_classes == 256
    assert data.feature_shape == (16,) and data.x_train.shape[1:] == (16,)


@pytest.mark.parametrize(
    "content, context, message",
    [
        (None, 8, "not found"),
        (b"", 8, "is empty"),
        (b"short text", 8, "too short"),
        (b"x" * 100, 0, "context must be a positive int"),
    ],
)
def test_bad_text_files_raise_a_data_error_naming_the_fix(tmp_path, content, context, message):
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        text_windows(path, context=context)
    assert caught.value.settings in (("path",), ("path", "context"), ("context",))


def test_a_directory_is_not_a_text_file(tmp_path):
    with pytest.raises(DataError, match="a directory"):
        text_windows(tmp_path, context=4)


# ----------------------------------------------------------------------------- fnn train


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, text_file):
    out = tmp_path_factory.mktemp("run") / "text"
    argv = ["train", "--dataset", "text", "--text", str(text_file), *TINY, "--epochs", "2",
            "--lr", "3e-3", "--out", str(out), "--no-progress"]  # fmt: skip
    code, stdout, stderr = _main(argv)
    return code, stdout, stderr, out


@pytest.mark.slow  # the text_run fixture: a whole training run
def test_text_run_checks_trains_and_reports_bits_per_byte(text_run):
    code, stdout, stderr, out = text_run
    assert code == 0, stderr
    assert "match jax.grad on 4 text windows of 16 tokens" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "language_model" and metrics["loss"].startswith("lm_cross_entropy")
    bpb = metrics["test_bits_per_byte"]
    assert bpb == pytest.approx(metrics["test_loss"] / np.log(2), rel=1e-6)
    assert len(metrics["history"]["test_bits_per_byte"]) == 2
    assert bpb < 8.0  # below a uniform guess over 256 bytes after two epochs
    assert f"test bits per byte {bpb:.4f}" in stdout
    assert metrics["recipe"]["overridden"] == ["batch_size", "blocks", "context", "epochs",
                                               "heads", "lr", "width"]  # fmt: skip
    assert (out / "checkpoint.npz").exists() and (out / "curves.png").exists()


@pytest.mark.slow
def test_text_run_resumes_from_its_checkpoint(text_run):
    code, _, _, out = text_run
    assert code == 0
    code, stdout, stderr = _main(["train", "--resume", "--out", str(out), "--epochs", "3",
                                  "--no-progress"])  # fmt: skip
    assert code == 0, stderr
    assert "resuming after epoch 2" in stdout
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert len(history["test_bits_per_byte"]) == 3


@pytest.mark.slow  # the text_run fixture: a whole training run
def test_sample_is_deterministic_per_seed_and_starts_with_the_prompt(text_run):
    out = text_run[3]
    argv = ["sample", "--checkpoint", str(out), "--prompt", "def ", "--tokens", "20"]
    first, second = _main(argv), _main(argv)
    assert first[0] == 0, first[2]
    assert first[1] == second[1]
    assert first[1].startswith("def ") and len(first[1].encode()) >= 20
    greedy = _main([*argv, "--temperature", "0"])
    window = _main([*argv, "--temperature", "0", "--no-kv-cache"])
    assert greedy[1] == window[1]  # the cache changes the speed, not the text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--text", "{missing}"], "not found"),
        (["--text", "{empty}"], "is empty"),
        (["--text", "{short}"], "too short"),
        (["--text", "{corpus}", "--model", "mlp"], "the gpt model trains on the text data set"),
        (["--text", "{corpus}", "--heads", "3"], "divisible by heads"),
    ],
)
def test_bad_text_runs_exit_2_before_any_work(tmp_path, text_file, argv, message):
    files = {"missing": tmp_path / "none.txt", "empty": tmp_path / "empty.txt",
             "short": tmp_path / "short.txt", "corpus": text_file}  # fmt: skip
    files["empty"].write_bytes(b"")
    files["short"].write_bytes(b"abc" * 5)
    argv = [a.format(**files) for a in argv]
    code, stdout, stderr = _main(["train", "--dataset", "text", *TINY, *argv,
                                  "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 2
    assert message in stderr and "Traceback" not in stderr
    assert "gradient check" not in stdout
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


@pytest.mark.slow  # the text_run fixture: a whole training run
def test_sample_bad_inputs_exit_2(text_run, tmp_path, capsys):
    out = str(text_run[3])
    cases = [
        (["--checkpoint", str(tmp_path)], "no checkpoint"),
        (["--checkpoint", out, "--tokens", "0"], "expected a positive int"),
        (["--checkpoint", out, "--temperature", "-1"], "expected a number >= 0"),
        (["--checkpoint", out, "--top-k", "-2"], "expected an int >= 0"),
        (["--checkpoint", out, "--prompt", "x" * 17], "longer than the model's context of 16"),
        (["--checkpoint", out, "--prompt", ""], "--prompt is empty"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) if "expected a" in message else contextlib.nullcontext():
            code = main(["sample", *argv])
            assert code == 2
        assert message in capsys.readouterr().err, argv


def test_sample_refuses_a_checkpoint_that_is_not_a_language_model(tmp_path, capsys):
    from fnn import experiment
    from fnn.train.checkpoint import save_checkpoint

    config = experiment.TrainConfig.for_dataset("iris")
    save_checkpoint(tmp_path / "checkpoint.npz", params={"w": np.zeros(2, np.float32)},
                    opt_state=(), epoch=1, key=np.zeros(2, np.uint32),
                    config=config.to_dict(), history={})  # fmt: skip
    assert main(["sample", "--checkpoint", str(tmp_path)]) == 2
    assert "holds the mlp model trained on iris, not a language model" in capsys.readouterr().err

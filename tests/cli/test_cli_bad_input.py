"""Every flag of `fnn train`, `fnn check` and `fnn bench` given a bad value: a wrong type,
out of range, an unknown name, a missing or unreadable file, an unwritable output. Each
exits 2 with a short message on stderr that names the problem, and no traceback; none
trains or benchmarks anything first."""

import pytest

from fnn.cli import main


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A working directory with a small CSV, a plain file and an empty directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.csv").write_text("a,b,label\n" + "".join(
        f"{i},{i % 3},{i % 2}\n" for i in range(20)))  # fmt: skip
    (tmp_path / "plain").write_text("not a directory")
    (tmp_path / "empty").mkdir()
    return tmp_path


TRAIN = [
    (["--dataset", "nope"], "invalid choice: 'nope'"),
    (["--dataset", "mnist", "--data-dir", "empty"], "no data files found in empty"),
    (["--dataset", "mnist", "--data-dir", "missing"], "missing does not exist"),
    (["--dataset", "csv", "--csv", "missing.csv"], "missing.csv"),
    (["--dataset", "csv", "--csv", "small.csv", "--target-column", "zz"], "no column 'zz'"),
    (["--model", "rnn"], "invalid choice: 'rnn'"),
    (["--model", "cnn", "--dataset", "iris"], "the cnn model needs an image data set"),
    (["--hidden", "a,b"], "expected comma-separated layer widths"),
    (["--hidden", "0"], "layer widths must be positive"),
    (["--activation", "swish"], "invalid choice: 'swish'"),
    (["--batch-norm", "3"], "unrecognized arguments: 3"),
    (["--dropout", "1.5"], "a dropout rate in [0, 1)"),
    (["--loss", "nope"], "invalid choice: 'nope'"),
    (["--loss", "huber"], "does not fit the classification data set"),
    (["--grad", "numeric"], "invalid choice: 'numeric'"),
    (["--dtype", "float16"], "invalid choice: 'float16'"),
    (["--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
    (["--lr", "-1"], "expected a positive number, got -1"),
    (["--lr", "fast"], "expected a positive number, got 'fast'"),
    (["--schedule", "linear"], "invalid choice: 'linear'"),
    (["--clip-norm", "0"], "expected a positive number"),
    (["--epochs", "0"], "expected a positive int, got 0"),
    (["--batch-size", "100000"], "larger than the 1438 training examples"),
    (["--patience", "-2"], "expected a positive int"),
    (["--seed", "x"], "invalid int value: 'x'"),
    (["--out", "plain/run"], "cannot write to plain/run"),
    (["--resume"], "--resume needs --out DIR"),
    (["--resume", "--out", "empty"], "no checkpoint at empty/checkpoint.npz"),
    (["--checkpoint-every", "-1"], "expected an int >= 0"),
    (["--devices", "0"], "expected a positive int, got 0"),
    (["--devices", "64"], "this process has 1 local cpu device"),
    (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "1"], "HOST:PORT"),
    (["--coordinator", "127.0.0.1:1"], "need --coordinator, --num-processes and --process-id"),
    (["--num-processes", "0"], "expected a positive int, got 0"),
    (
        ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "5"],
        "process id must be in [0, 2)",
    ),  # fmt: skip
    (["--coordinator-timeout", "0"], "expected a positive number"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]
CHECK = [
    (["nope"], "unknown item(s) nope"),
    (["--dtype", "float16"], "invalid choice: 'float16'"),
    (["dense", "--json", "plain/out.json"], "cannot write to plain"),
    (["dense", "--json", "empty"], "cannot write empty: it is a directory"),
]
BENCH = [
    (["--workloads", "nope"], "unknown workload 'nope'"),
    (["--impls", "manual,nope"], "unknown impl 'nope'"),
    (["--dtype", "float16"], "unknown dtype 'float16'"),
    (["--repeats", "0"], "repeats must be positive, got 0"),
    (["--repeats", "x"], "invalid int value: 'x'"),
    (["--steps", "-3"], "steps must be positive"),
    (["--out", "plain/results"], "cannot write to plain/results"),
    (["--model", "missing.py:model"], "there is no file missing.py"),
    (["--layer", "small.csv"], "takes FILE.py:FUNCTION"),
    (["--in-shape", "a"], "expected positive ints such as 64"),
    (["--batch", "0", "--layer", "x.py:f"], "batch must be positive, got 0"),
]


@pytest.mark.parametrize(
    "command, argv, message",
    [("train", a, m) for a, m in TRAIN]
    + [("check", a, m) for a, m in CHECK]
    + [("bench", a, m) for a, m in BENCH],
)
def test_a_bad_value_exits_2_with_a_message_and_no_traceback(files, capsys, command, argv, message):
    try:
        code = main([command, *argv, *(["--no-progress"] if command == "train" else [])])
    except SystemExit as done:  # argparse's own errors
        code = done.code
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert message in err, (argv, err)
    assert err.startswith(("fnn: error: ", f"fnn {command}: error: ")), err
    assert "Traceback" not in err, err
    assert not (files / "runs").exists()  # nothing was trained

"""Every flag of `fnn train`, `fnn check` and `fnn bench` given a bad value: a wrong type,
out of range, an unknown name, a missing or unreadable file, an unwritable output. Each
exits 2 with a short message on stderr that names the problem, and no traceback; none
trains or benchmarks anything first."""

import pytest

from fnn.cli import COMMANDS, main


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
    (["--csv", "small.csv"], "csv is for the csv data set; got data set 'digits'"),
    (["--text", "small.csv"], "text is for the text data set; got data set 'digits'"),
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
    (["--seed", "-1"], "seed must be in [0, 2**31), got -1 (set with --seed)"),
    (["--seed", "2147483648"], "seed must be in [0, 2**31), got 2147483648"),
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
    assert err.startswith(f"fnn {command}: error: "), err  # the command says it, not fnn
    assert "Traceback" not in err, err
    assert not (files / "runs").exists()  # nothing was trained


# ------------------------------------------------------- a bug is not the user's mistake


@pytest.mark.parametrize("error", [ZeroDivisionError("division by zero"), RuntimeError("boom")])
def test_an_internal_error_exits_1_with_its_traceback_and_says_it_is_a_bug(
    files, capsys, monkeypatch, error
):
    """An exception fnn did not raise on purpose (here planted in the library function
    `fnn train` calls first) is no usage error: exit 1, the traceback, then one line."""
    from fnn import experiment

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(experiment, "prepare", broken)
    code = main(["train", "--dataset", "iris", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" in err and "in broken" in err
    last = err.strip().splitlines()
    bug = f"fnn: this is a bug in fnn (or in your code): {type(error).__name__}: {error}"
    assert bug in last[-2] and "report" in last[-1], last[-2:]
    assert not (files / "runs").exists()


def test_an_fnn_error_from_inside_the_library_exits_2_with_its_flags(files, capsys, monkeypatch):
    """Any `fnn.errors.FnnError`, wherever it is raised, is the input's fault: exit 2, one
    line, the flags that fix it."""
    from fnn import experiment
    from fnn.errors import SettingError

    def refuse(*args, **kwargs):
        raise SettingError("planted: the batch does not fit", settings=("batch_size",))

    monkeypatch.setattr(experiment, "prepare", refuse)
    assert main(["train", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == "fnn train: error: planted: the batch does not fit (set with --batch-size)\n"


def test_fnn_alone_lists_its_commands_and_exits_0(capsys):
    from fnn.cli import COMMANDS

    assert main([]) == 0
    out, err = capsys.readouterr()
    assert not err and out.startswith("usage: fnn COMMAND")
    section = out.split("commands:\n")[1].split("\n\n")[0].splitlines()
    listed = [line.split()[0] for line in section if not line.startswith("   ")]
    assert listed == [command.__name__.rsplit(".", 1)[1] for command in COMMANDS]
    assert "generate text from a language model" in out  # each with its one-line help


@pytest.mark.parametrize("command", [c.__name__.rsplit(".", 1)[1] for c in COMMANDS])
def test_an_unknown_flag_is_said_by_its_command(command, capsys):
    """argparse leaves flags no parser knows to the top-level parser; fnn has the command
    say it, with the help that lists its flags."""
    argv = [command, "--bogus", *(["--checkpoint", "run"] if command == "sample" else [])]
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert err == (
        f"fnn {command}: error: unrecognized arguments: --bogus\n"
        f"(`fnn {command} --help` lists the flags)\n"
    )

"""The type checker over fnn/: mypy, with the settings of pyproject.toml's `[tool.mypy]`,
finds no error in the library, and the same checker reports a type error planted in a
small module that uses fnn's types.

mypy keeps what it learnt in .mypy_cache/ (ignored by git): the first run reads fnn and
the parts of JAX and NumPy it uses (about 17 s of CPU here; matplotlib's types are not
read, see pyproject.toml), a later run only what changed since (a few seconds).
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (it comes with the dev extra: pip install -e '.[dev]')",
)

# Two mistakes the aliases of fnn.core make visible: a shape holds ints, and an Array is
# jax.Array (not Any), so returning one where a str is promised is an error.
PLANTED = """\
from fnn.core import Array, Shape

SHAPE: Shape = (3, "4")


def name_of(x: Array) -> str:
    return x
"""


def mypy(*args: str) -> subprocess.CompletedProcess:
    """Runs mypy from the repository root, which holds its configuration and its cache."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_fnn_has_no_type_errors():
    run = mypy()  # the files and settings of [tool.mypy]
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("Success: no issues found"), run.stdout


def test_mypy_reports_a_planted_type_error(tmp_path):
    module = tmp_path / "planted.py"
    module.write_text(PLANTED)
    run = mypy("--config-file", str(ROOT / "pyproject.toml"), str(module))
    assert run.returncode == 1, run.stdout + run.stderr
    errors = re.findall(r"planted\.py:(\d+): error: .*\[([\w-]+)\]", run.stdout)
    assert errors == [("3", "assignment"), ("7", "return-value")], run.stdout

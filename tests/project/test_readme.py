"""The README's Python snippets run as written."""

import re
from pathlib import Path

import jax
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.slow  # each block compiles its own programs (2-3 s)
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what a block writes lands in a temporary directory
    # user code runs with JAX's default rank promotion ("allow"), not the suite's "raise"
    with jax.numpy_rank_promotion("allow"):
        exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})


def test_readme_has_the_two_quick_start_commands():
    text = README.read_text()
    assert "pip install . && .venv/bin/fnn train" in text
    assert 'pip install -e ".[dev]" && .venv/bin/python -m pytest -q' in text

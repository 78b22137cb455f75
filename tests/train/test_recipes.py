"""Per-data-set recipes: what `fnn train --dataset NAME` takes unless a flag overrides it,
and the compilation cache's directory."""

from __future__ import annotations

import pytest

from fnn.cli import main
from fnn.cli.cache import cache_dir
from fnn.data import DATASETS
from fnn.experiment import RECIPE_FIELDS, RECIPES, TrainConfig, recipe_fields


def test_every_data_set_has_a_recipe_that_sets_every_recipe_field():
    assert set(RECIPES) == set(DATASETS)
    for name, recipe in RECIPES.items():
        assert set(recipe) == set(recipe_fields(name)), name
    assert set(recipe_fields("text")) > set(RECIPE_FIELDS)  # the gpt's shape too


@pytest.mark.parametrize("name", ["diabetes", "breast_cancer", "wine", "iris", "tutorial"])
def test_for_dataset_takes_the_recipe_and_flags_override_it(name):
    config = TrainConfig.for_dataset(name)
    for field in RECIPE_FIELDS:
        assert getattr(config, field) == RECIPES[name][field], (name, field)
    changed = TrainConfig.for_dataset(name, lr=0.5, epochs=3)
    assert (changed.lr, changed.epochs) == (0.5, 3)
    assert changed.hidden == config.hidden and changed.activation == config.activation


def test_diabetes_recipe_is_not_the_digits_one():
    """The regression set gets its own network (the cause of R² 0.34 with digits' one)."""
    diabetes, digits = TrainConfig.for_dataset("diabetes"), TrainConfig.for_dataset("digits")
    assert (diabetes.hidden, diabetes.activation) == ((16,), "tanh")
    assert diabetes.hidden != digits.hidden


def test_list_datasets_prints_each_recipe(capsys):
    assert main(["train", "--list-datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(RECIPES)
    diabetes = next(line for line in lines if line.startswith("diabetes"))
    assert "16 tanh, adamw lr 0.001, batch 32, 100 epochs" in diabetes


def test_the_cache_directory_follows_fnn_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FNN_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    for off in ("off", "none", "0", ""):
        monkeypatch.setenv("FNN_CACHE_DIR", off)
        assert cache_dir() is None
    monkeypatch.delenv("FNN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "fnn" / "jax"


def test_the_test_suite_never_caches_in_the_users_home():
    import os
    from pathlib import Path

    chosen = cache_dir()
    assert chosen is None or Path.home() / ".cache" not in chosen.parents, os.environ


@pytest.mark.slow  # two subprocesses in turn
def test_a_repeated_command_loads_its_programs_from_the_cache(tmp_path):
    """The first `fnn check` writes its compiled programs to FNN_CACHE_DIR; the second
    finds them there (JAX logs a cache hit) and prints the same verdict."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache"
    env = {**os.environ, "FNN_CACHE_DIR": str(cache), "JAX_LOG_COMPILES": "1"}
    command = [sys.executable, "-c", "import sys; from fnn.cli import main; sys.exit(main())"]
    runs = [
        subprocess.run(
            [*command, "check", "tanh"], capture_output=True, text=True, env=env, timeout=180
        )  # fmt: skip
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout and "1 passed" in runs[0].stdout
    assert any(cache.iterdir())
    assert "Persistent compilation cache hit" in runs[1].stderr
    assert "Persistent compilation cache hit" not in runs[0].stderr


def test_off_leaves_the_cache_off(monkeypatch, tmp_path):
    from fnn.cli.cache import use_compilation_cache

    monkeypatch.setenv("FNN_CACHE_DIR", "off")
    assert use_compilation_cache() is None


# ------------------------------------------------------------------ trust boundaries, said


@pytest.mark.parametrize(
    "host, private",
    [("127.0.0.1", True), ("localhost", True), ("10.1.2.3", True), ("192.168.0.7", True),
     ("::1", True), ("8.8.8.8", False), ("no-such-host.invalid", False)],
)  # fmt: skip
def test_the_coordinator_may_listen_on_loopback_or_a_private_network_only(host, private):
    from fnn.train.distributed import is_private

    assert is_private(host) is private


def test_a_public_coordinator_is_warned_about_before_joining(monkeypatch, capsys):
    """The warning comes before the join (here refused at once, instead of waiting)."""
    from fnn.train import distributed

    def refuse(*args, **kwargs):
        raise distributed.DistributedError("coordinator unreachable (test)")

    monkeypatch.setattr(distributed, "initialize_distributed", refuse)
    argv = ["train", "--coordinator", "8.8.8.8:1234", "--num-processes", "2", "--process-id", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "neither loopback nor a private network" in err and "no authentication" in err
    assert err.index("no authentication") < err.index("coordinator unreachable (test)")

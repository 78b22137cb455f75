"""The public API: everything in __all__ imports and is documented."""

import inspect

import pytest

import fnn


def test_all_names_exist_and_have_docstrings():
    for name in fnn.__all__:
        obj = getattr(fnn, name)
        assert inspect.getdoc(obj), f"fnn.{name} has no docstring"


def test_all_is_sorted_and_unique():
    assert list(fnn.__all__) == sorted(set(fnn.__all__))


def test_every_layer_factory_returns_a_layer_and_every_loss_a_loss():
    from fnn.layers import ACTIVATIONS
    from fnn.losses import LOSSES

    assert all(isinstance(factory(), fnn.Layer) for factory in ACTIVATIONS.values())
    assert all(isinstance(factory(), fnn.Loss) for factory in LOSSES.values())


@pytest.mark.slow  # a subprocess: a fresh interpreter imports jax and fnn
def test_importing_fnn_starts_no_jax_backend():
    """`jax.distributed.initialize` must come before any computation: importing fnn (the
    CLI and every module included) must not run one, e.g. by building a PRNG key."""
    import subprocess
    import sys

    code = (
        "import jax._src.xla_bridge as xb; import fnn, fnn.cli, fnn.check, fnn.experiment; "
        "print(xb.backends_are_initialized())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"

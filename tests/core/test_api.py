"""The public API: every name in `fnn.__all__` imports, is documented and appears once;
no module is exported; the lists that can be derived are (a new layer, loss or error is
exported without editing `fnn/__init__.py`); the old names stay importable."""

import inspect
import types

import pytest

import fnn


def test_all_names_exist_and_have_docstrings():
    for name in fnn.__all__:
        obj = getattr(fnn, name)
        assert inspect.getdoc(obj), f"fnn.{name} has no docstring"
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, f"fnn.{name} has no docstring of its own"


def test_every_name_is_exported_once_and_no_module_is():
    assert len(fnn.__all__) == len(set(fnn.__all__)), sorted(
        name for name in fnn.__all__ if fnn.__all__.count(name) > 1
    )
    modules = [name for name in fnn.__all__ if isinstance(getattr(fnn, name), types.ModuleType)]
    assert not modules, f"modules in fnn.__all__: {modules}"


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from fnn import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(fnn.__all__)


def test_all_is_derived_from_the_parts():
    """Every layer in `fnn.layers.__all__`, every loss factory in `fnn.losses.LOSSES` and
    every error in `fnn.errors.__all__` is exported, as the same object."""
    from fnn import errors, layers
    from fnn.losses import LOSSES

    for module in (layers, errors):
        missing = sorted(set(module.__all__) - set(fnn.__all__))
        assert not missing, f"{module.__name__} exports {missing}, fnn does not"
        for name in module.__all__:
            assert getattr(fnn, name) is getattr(module, name), name
    losses = {factory.__name__ for factory in LOSSES.values()}
    assert losses <= set(fnn.__all__), sorted(losses - set(fnn.__all__))
    assert all(getattr(fnn, f.__name__) is f for f in LOSSES.values())


def test_every_fnn_error_is_exported():
    from fnn import errors

    defined = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, errors.FnnError)
    }
    assert defined <= set(fnn.__all__), sorted(defined - set(fnn.__all__))


def test_the_contract_gradients_checker_training_and_inspection_are_exported():
    wanted = {
        *("Layer", "Loss", "Ctx", "Walk", "combinator", "forward", "apply", "init"),
        *("init_state", "update_state", "value_and_grad", "value_grad_and_state"),
        *("as_custom_vjp", "loss_as_custom_vjp", "per_example_grads"),
        *("check_layer", "check_loss", "check_model", "CheckResult", "run_checks"),
        *("TrainState", "make_train_step", "fit", "FitResult", "EarlyStopping"),
        *("backward_trace", "Trace", "gpt", "gpt_block", "generate", "lm_cross_entropy"),
        *("HeadInput", "FnnError", "NonFiniteLossError", "SettingError"),
    }
    assert wanted <= set(fnn.__all__), sorted(wanted - set(fnn.__all__))


def test_submodules_and_old_names_stay_importable():
    for name in ("initializers", "train", "per_example", "parallel", "layers", "errors"):
        assert isinstance(getattr(fnn, name), types.ModuleType), name
    for name in ("bench", "data", "experiment", "plot"):  # loaded on first use
        assert isinstance(getattr(fnn, name), types.ModuleType), name
    assert fnn.parallel is fnn.train.parallel
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        fnn.nonexistent  # noqa: B018


def test_fnn_summary_is_a_deprecated_alias_of_fnn_bench_summary():
    with pytest.warns(DeprecationWarning, match="fnn.bench.summary"):
        alias = fnn.summary
    assert alias is fnn.bench.summary
    assert "summary" not in fnn.__all__


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

"""fnn's errors: one base class (`fnn.errors.FnnError`), a typed subclass for each kind of
fault that is also the builtin it replaces, and two rules held against the source with
`ast`: fnn raises no builtin exception on purpose, and nothing under `fnn/` outside the
command line changes `jax.config` behind its caller's back. Each scan is shown to catch a
planted offence."""

import ast
import builtins
import importlib
import inspect
import pickle
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from helpers.battery import params_for

import fnn
from fnn import errors
from fnn.errors import (
    ArgumentError,
    CheckpointError,
    DataError,
    DistributedError,
    DTypeError,
    FnnError,
    NonFiniteLossError,
    NotFoundError,
    SettingError,
    ShapeError,
    UserCodeError,
    renamed_settings,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fnn"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------------ the classes

BUILTIN_BASES = {
    SettingError: ValueError,
    ShapeError: ValueError,
    DTypeError: TypeError,
    DataError: ValueError,
    CheckpointError: ValueError,
    NonFiniteLossError: FloatingPointError,
    UserCodeError: ValueError,
    DistributedError: RuntimeError,
    ArgumentError: TypeError,
    NotFoundError: KeyError,
}


@pytest.mark.parametrize("cls", BUILTIN_BASES, ids=lambda cls: cls.__name__)
def test_each_error_is_an_fnn_error_and_the_builtin_it_replaces(cls):
    assert issubclass(cls, FnnError) and issubclass(cls, BUILTIN_BASES[cls])


def test_every_exported_error_is_listed_and_a_data_error_is_a_setting_error():
    exported = {getattr(errors, name) for name in errors.__all__}
    assert exported == {FnnError, *BUILTIN_BASES}
    assert issubclass(DataError, SettingError)


@pytest.mark.parametrize(
    "module, name",
    [
        ("fnn.core", "SettingError"),
        ("fnn.data", "DataError"),
        ("fnn.data.raw", "DataError"),
        ("fnn.train", "NonFiniteLossError"),
        ("fnn.train.fitting", "NonFiniteLossError"),
        ("fnn.train.checkpoint", "CheckpointError"),
        ("fnn.train.checkpoint_file", "CheckpointError"),
        ("fnn.train.distributed", "DistributedError"),
        ("fnn.cli.user_code", "UserCodeError"),
    ],
)
def test_the_old_import_paths_give_the_same_classes(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_every_exception_class_fnn_defines_derives_from_fnn_error():
    """The classes themselves, imported: a new `class MyError(ValueError)` fails here."""
    strays = []
    for path in SOURCES:
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == name
                and not issubclass(obj, FnnError)
            ):
                strays.append(f"{name}.{obj.__qualname__}")
    assert not strays, f"exception classes outside FnnError: {strays}"


def test_settings_travel_and_errors_pickle():
    error = SettingError("bad", settings=("batch_size",))
    assert error.settings == ("batch_size",) and str(error) == "bad"
    assert FnnError("plain").settings == ()
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is SettingError and again.settings == ("batch_size",)
    diverged = NonFiniteLossError(
        epoch=3, loss_value=float("nan"), learning_rate=0.1, split="train", last_good=None
    )
    again = pickle.loads(pickle.dumps(diverged))
    assert str(again) == str(diverged) and again.epoch == 3 and again.settings == ()


def test_renamed_settings_turns_a_callee_s_names_into_the_caller_s():
    with pytest.raises(DataError) as info, renamed_settings({"path": "csv_path"}):
        raise DataError("no file", settings=("path", "target_column"))
    assert info.value.settings == ("csv_path", "target_column")
    with pytest.raises(ZeroDivisionError), renamed_settings({"path": "csv_path"}):
        raise ZeroDivisionError  # not an FnnError: passes through untouched


# ----------------------------------------------------------------- raised in practice


def test_a_bad_shape_is_a_shape_error_and_a_value_error():
    with pytest.raises(ShapeError, match="pred and target must have the same shape"):
        fnn.mean_squared_error().forward(jnp.ones((4, 2)), jnp.ones((4, 3)))
    net = fnn.dense(3)
    params = params_for(net, (5,), jnp.float32)
    with pytest.raises(ValueError, match=r"dense\(3\)"):  # the old spelling still catches it
        fnn.apply(net, params, np.ones((2, 4), np.float32))


def test_integer_inputs_are_a_dtype_error_and_a_type_error():
    params = params_for(fnn.dense(3), (5,), jnp.float32)
    with pytest.raises(DTypeError, match="expected a floating-point input"):
        fnn.apply(fnn.dense(3), params, np.ones((2, 5), np.int32))
    assert issubclass(DTypeError, TypeError)


def test_a_bad_argument_names_the_parameter_of_the_function_called():
    with pytest.raises(SettingError) as info:
        fnn.dense(0)
    assert info.value.settings == ("out_features",) and isinstance(info.value, ValueError)
    with pytest.raises(SettingError) as info:
        fnn.gpt(256, 16, 30, 4, 1)
    assert info.value.settings == ("width", "heads")
    with pytest.raises(ArgumentError, match="fnn Layer"):
        fnn.serial(fnn.dense(2), lambda x: x)


def test_token_ids_out_of_range_are_a_data_error():
    layer = fnn.embedding(5, 2)
    params = params_for(layer, (3,), jnp.float32)
    with pytest.raises(DataError, match=r"token ids must lie in \[0, 5\)"):
        fnn.apply(layer, params, np.array([[0, 1, 7]]))


def test_a_missing_csv_names_csv_path_and_the_experiment_names_its_csv_field():
    from fnn import experiment
    from fnn.data import load_dataset

    with pytest.raises(DataError) as info:
        load_dataset("csv")
    assert info.value.settings == ("csv_path",) and "--" not in str(info.value)
    with pytest.raises(DataError) as info:
        experiment.prepare(experiment.TrainConfig(dataset="csv"))
    assert info.value.settings == ("csv",)


def test_float64_without_64_bit_types_is_refused_saying_what_to_call_and_a_scope_is_enough():
    import jax

    from fnn import experiment

    config = experiment.TrainConfig.for_dataset("iris", dtype="float64", hidden=(4,))
    with jax.enable_x64(False), pytest.raises(SettingError, match="jax_enable_x64") as info:
        experiment.prepare(config)
    assert info.value.settings == ("dtype",) and "jax.enable_x64(True)" in str(info.value)
    with jax.enable_x64(True):
        run = experiment.prepare(config)
        assert jax.tree.leaves(run.params)[0].dtype == jnp.float64


def test_a_trace_path_that_names_no_layer_reads_plainly():
    with pytest.raises(KeyError) as info:
        raise NotFoundError("no layer at 'net[9]'")
    assert str(info.value) == "no layer at 'net[9]'"  # a KeyError would add quotes


# -------------------------------------------------- the scan: no builtin raised on purpose

BUILTIN_EXCEPTIONS = {
    name
    for name, obj in vars(builtins).items()
    if inspect.isclass(obj) and issubclass(obj, BaseException)
}
# (file, exception): why fnn raises that builtin on purpose
ALLOWED_RAISES = {
    ("fnn/__init__.py", "AttributeError"): "a module's __getattr__ must raise AttributeError "
    "for a name it does not have: Python's protocol, which hasattr and import rely on",
    ("fnn/bench/__init__.py", "AttributeError"): "the same protocol, for the old names "
    "`fnn.bench` resolves with a DeprecationWarning",
    ("fnn/check/mutants.py", "AssertionError"): "an invariant of fnn's own code (a node "
    "taken from a tree is in that tree): reaching it is a bug in fnn, and says so",
}


def builtin_raises(source: str) -> list[tuple[int, str]]:
    """`(line, name)` of each `raise` of a builtin exception class in `source`, called or
    not (`raise ValueError(...)`, `raise ValueError`, `raise builtins.ValueError(...)`),
    `from` or not. A bare `raise` and a raise of a caught variable are not flagged."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            name = target.attr if target.value.id == "builtins" else None
        else:
            name = target.id if isinstance(target, ast.Name) else None
        if name in BUILTIN_EXCEPTIONS:
            found.append((node.lineno, name))
    return sorted(found)


@pytest.mark.parametrize("path", SOURCES, ids=relative)
def test_fnn_raises_no_builtin_exception_on_purpose(path):
    offences = [
        f"{relative(path)}:{line}: raise {name}"
        for line, name in builtin_raises(path.read_text())
        if (relative(path), name) not in ALLOWED_RAISES
    ]
    assert not offences, (
        "raise an fnn.errors class (each is also the builtin it stands for): " + "; ".join(offences)
    )


def test_the_raise_scan_catches_a_planted_builtin_and_spares_the_rest():
    planted = """
import builtins
from fnn.errors import SettingError

def f(x):
    if x < 0:
        raise ValueError(f"x must be >= 0, got {x}")
    if x > 9:
        raise SettingError("too large", settings=("x",))
    try:
        return 1 / x
    except ZeroDivisionError as error:
        if x is None:
            raise
        if x == 0.0:
            raise error
        raise TypeError("zero") from error

def g():
    raise builtins.KeyError
"""
    assert builtin_raises(planted) == [(7, "ValueError"), (17, "TypeError"), (20, "KeyError")]


def test_each_allowed_builtin_raise_is_still_there():
    """An allowance outlives its reason otherwise."""
    for (file, name), reason in ALLOWED_RAISES.items():
        assert reason
        assert name in {n for _, n in builtin_raises((ROOT / file).read_text())}, file


# --------------------------------------------- the scan: no jax.config switch in the library

# (file, flag): why the library changes that piece of JAX's configuration
ALLOWED_SWITCHES = {
    ("fnn/train/distributed.py", "jax_cpu_collectives_implementation"): "joining processes "
    "(jax.distributed.initialize) is process-wide by nature; its docstring says so",
}
X64 = ("jax_enable_x64", "JAX_ENABLE_X64")


def _dotted(node: ast.AST) -> str:
    """`jax.config.update` for that attribute chain; "" for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def config_switches(source: str) -> list[tuple[int, str]]:
    """`(line, flag)` of each change to JAX's configuration in `source`: a call to
    `jax.config.update(flag, ...)` (or `config.update`), an assignment to
    `jax.config.jax_enable_x64`, or setting the `JAX_ENABLE_X64` environment variable.
    Reading the flag (`jax.config.jax_enable_x64`) and scoping it
    (`with jax.enable_x64(...)`) are not changes."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _dotted(node.func).endswith("config.update"):
            first = node.args[0] if node.args else None
            flag = first.value if isinstance(first, ast.Constant) else "?"
            found.append((node.lineno, str(flag)))
        elif isinstance(node, ast.Call) and _dotted(node.func) in (
            "os.environ.setdefault",
            "os.environ.update",
            "os.putenv",
        ):
            if any(isinstance(a, ast.Constant) and a.value in X64 for a in node.args):
                found.append((node.lineno, "JAX_ENABLE_X64"))
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr in X64:
                    found.append((node.lineno, target.attr))
                key = target.slice if isinstance(target, ast.Subscript) else None
                if isinstance(key, ast.Constant) and key.value in X64:
                    found.append((node.lineno, key.value))
    return sorted(found)


LIBRARY = [p for p in SOURCES if not relative(p).startswith("fnn/cli/")]


@pytest.mark.parametrize("path", LIBRARY, ids=relative)
def test_the_library_changes_no_jax_configuration(path):
    offences = [
        f"{relative(path)}:{line}: sets {flag}"
        for line, flag in config_switches(path.read_text())
        if (relative(path), flag) not in ALLOWED_SWITCHES
    ]
    assert not offences, (
        "configuration belongs to the caller: scope float64 with `jax.enable_x64(...)`, "
        "or raise a SettingError saying what to call; the command line sets what it "
        "needs in fnn/cli/config.py: " + "; ".join(offences)
    )


def test_the_config_scan_catches_planted_switches_and_spares_reads_and_scopes():
    planted = """
import os
import jax

def run(dtype):
    if dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    with jax.enable_x64(True):
        pass
    os.environ["JAX_ENABLE_X64"] = "1"
    jax.config.jax_enable_x64 = True
    from jax import config
    config.update("jax_platforms", "cpu")
"""
    assert config_switches(planted) == [
        (7, "jax_enable_x64"),
        (10, "JAX_ENABLE_X64"),
        (11, "jax_enable_x64"),
        (13, "jax_platforms"),
    ]


def test_each_allowed_switch_is_still_there():
    for (file, flag), reason in ALLOWED_SWITCHES.items():
        assert reason
        assert flag in {f for _, f in config_switches((ROOT / file).read_text())}, file

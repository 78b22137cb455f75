"""Which factories fnn exports, and which tests plant a bug in each one's backward
(`from helpers.planted import planted_bug`).

`@planted_bug("layer_norm")` marks a test that plants a likely mistake in that factory's
backward (a missing term, a transpose, a sum that should be a mean) and asserts that a
check fails it. `planted_bug_tests()` finds the marked tests by reading the test files
(nothing imported, so the whole suite's marks are seen whichever tests run), and
tests/check/test_planted_bugs.py holds every factory with a backward of its own to have
one: a new layer or loss without a planted-bug test fails there.
"""

from __future__ import annotations

import ast
import functools
import inspect
from collections.abc import Callable
from pathlib import Path

import fnn.layers
import fnn.layers.models
import fnn.losses

TESTS = Path(__file__).resolve().parents[1]

# Exported functions that look a layer or a loss up by name: not factories of their own.
LOOKUPS = {
    "get_activation": "returns one of fnn.layers.ACTIVATIONS by name (each has an item)",
    "get_loss": "returns one of fnn.losses.LOSSES by name (each has an item)",
}


def planted_bug(*factories: str) -> Callable:
    """Marks a test as the planted-bug test of each of `factories` (names as fnn exports
    them: "dense", "softmax_cross_entropy"); the names are read from the source, so give
    them as strings, or as `*NAME` for a module-level dict or list of strings."""

    def mark(test):
        test.planted_bug = factories
        return test

    return mark


def returns(function: Callable, kind: str) -> bool:
    """Whether `function` is annotated to return `kind` ("Layer", "Loss")."""
    annotation = inspect.signature(function).return_annotation
    return annotation == kind or getattr(annotation, "__name__", None) == kind


def layer_factories() -> dict[str, Callable]:
    """The functions `fnn.layers` exports (its constants and the lookups left out)."""
    named = {name: getattr(fnn.layers, name) for name in fnn.layers.__all__}
    return {n: f for n, f in named.items() if inspect.isfunction(f) and n not in LOOKUPS}


def loss_factories() -> dict[str, Callable]:
    """The public functions of `fnn.losses` that return a `Loss` (the lookups left out)."""
    return {
        name: f
        for name, f in vars(fnn.losses).items()
        if inspect.isfunction(f)
        and f.__module__ == fnn.losses.__name__
        and not name.startswith("_")
        and name not in LOOKUPS
        and returns(f, "Loss")
    }


def factories_with_a_backward() -> set[str]:
    """What must have a planted-bug test: every layer and loss factory, except the
    networks of `fnn.layers.models`, which are built from the others and have no backward
    of their own."""
    networks = set(fnn.layers.models.__all__)
    return (set(layer_factories()) - networks) | set(loss_factories())


def _names(node: ast.expr, constants: dict[str, list[str]], where: str) -> list[str]:
    """The factory names one argument of `planted_bug(...)` gives."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Starred) and isinstance(node.value, ast.Name):
        if node.value.id in constants:
            return constants[node.value.id]
    raise ValueError(f"{where}: planted_bug takes strings, or *NAME of a module-level dict or list")


def _constants(tree: ast.Module) -> dict[str, list[str]]:
    """The module-level dicts (their string keys) and lists or tuples of strings."""
    out = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        items = value.keys if isinstance(value, ast.Dict) else getattr(value, "elts", None)
        if isinstance(target, ast.Name) and items is not None:
            if all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in items):
                out[target.id] = [k.value for k in items]
    return out


def planted_bug_tests(root: Path = TESTS) -> dict[str, list[str]]:
    """Each factory name marked with `@planted_bug` in the test files under `root`, and
    the tests marked with it ("core/test_normalization.py::test_...")."""
    found: dict[str, list[str]] = {}
    for name, test in _marks(root):
        found.setdefault(name, []).append(test)
    return found


@functools.cache
def _marks(root: Path) -> tuple[tuple[str, str], ...]:
    """(factory name, test) for every `@planted_bug` mark under `root`, in file order."""
    marks = []
    for path in sorted(root.rglob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        constants = _constants(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for decorator in node.decorator_list:
                func = decorator.func if isinstance(decorator, ast.Call) else None
                if getattr(func, "id", getattr(func, "attr", None)) != "planted_bug":
                    continue
                test = f"{path.relative_to(root).as_posix()}::{node.name}"
                marks += [
                    (name, test) for arg in decorator.args for name in _names(arg, constants, test)
                ]
    return tuple(marks)


def unplanted(factories: set[str], tests: dict[str, list[str]]) -> list[str]:
    """What the marks miss: factories without a planted-bug test, then marked names that
    are no factory (misspelt, or the factory removed)."""
    missing = [f"{n} (no planted-bug test)" for n in sorted(factories - set(tests))]
    stale = sorted(set(tests) - factories)
    return missing + [f"{n} (marked in {tests[n][0]}, not a factory)" for n in stale]

"""The plan of the house (docs/architecture.md), held against the code: which part of fnn
may import which, no import cycle between modules, and modules of a readable size.

Imports are read from the source with `ast` (those inside functions included), so the
test sees every import the code can make, not only those one run happens to make.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fnn"

# Each part of fnn and the parts it may import (besides itself). Imports point down:
# the maths core (core … check) never imports training, data, the harness, runs or the
# CLI; training never imports the harness, runs or the CLI. docs/architecture.md draws
# the same table.
ALLOWED: dict[str, set[str]] = {
    "version": set(),
    "errors": set(),  # the errors every floor raises (fnn/errors.py)
    "core": {"errors"},
    "walk": {"errors", "core"},  # combinators from their walks (fnn/walk.py)
    "initializers": {"errors", "core"},
    "layers": {"errors", "core", "walk", "initializers"},
    "losses": {"errors", "core"},
    "lm": {"errors", "core", "walk", "initializers", "layers"},
    "tasks": {"errors", "core"},
    "grad": {"errors", "core"},
    "per_example": {"errors", "core", "walk"},
    "trace": {"errors", "core", "walk"},
    "check": {"errors", "core", "walk", "initializers", "layers", "losses", "lm", "grad"},
    "train": {"errors", "core", "walk", "grad", "tasks", "trace"},
    "data": {"errors", "core", "tasks"},
    "plot": set(),
    "bench": {"errors", "core", "walk", "initializers", "layers", "losses", "grad", "per_example"}
    | {"trace", "lm", "check", "train"},
    "experiment": {
        "errors",
        "version",
        "core",
        "walk",
        "layers",
        "losses",
        "tasks",
        "grad",
        "check",
    }
    | {"train", "lm", "data", "plot"},
    "cli": {"errors", "core", "walk", "layers", "losses", "tasks", "grad", "check", "train", "data"}
    | {"bench", "lm", "experiment"},
}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def part_of(module: str) -> str:
    """`fnn.train.step` -> "train"; `fnn` (the public face) -> ""."""
    return module.split(".")[1] if module.count(".") else ""


def imports_of(path: Path) -> set[str]:
    """The fnn modules `path` imports, resolved to module files (`from fnn.train import
    parallel` is the module fnn.train.parallel; `from fnn.layers import dense`, a name, is
    the package fnn.layers)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "fnn"}
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fnn"
        ):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def test_every_part_is_in_the_plan():
    parts = {part_of(m) for m in MODULES} - {""}
    assert parts == set(ALLOWED), parts ^ set(ALLOWED)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part_of(m)))
def test_imports_point_down(module):
    part = part_of(module)
    for target in sorted(GRAPH[module]):
        other = part_of(target)
        assert other, f"{module} imports the package face `fnn` itself; import the module"
        assert other == part or other in ALLOWED[part], (
            f"{module} imports {target}: the {part} part may import only "
            f"{sorted(ALLOWED[part]) or 'nothing else'}"
        )


def test_no_import_cycle():
    """Depth-first search over the module graph; a module met again on the current path
    closes a cycle."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                cycle = path[path.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_the_checks_above_catch_an_upward_import_and_a_cycle():
    """The rules are not vacuous: a planted upward import and a planted cycle fail them."""
    saved = {k: set(v) for k, v in GRAPH.items()}
    try:
        GRAPH["fnn.layers.dense"].add("fnn.train.step")
        with pytest.raises(AssertionError, match="the layers part may import only"):
            test_imports_point_down("fnn.layers.dense")
        GRAPH["fnn.layers.dense"] = saved["fnn.layers.dense"] | {"fnn.layers.models"}
        with pytest.raises(AssertionError, match="import cycle"):
            test_no_import_cycle()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_readable(module):
    lines = MODULES[module].read_text().count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by what it holds"

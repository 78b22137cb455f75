"""Mutation testing: how many classic backward mistakes a check catches.

A check is only as good as the mistakes it catches. `mutation_test(layer, in_shape)`
plants mistakes in a layer's own backward code, one at a time (a sign flip, a factor of
2, a missing transpose, a dropped term, a wrong reduction axis: `fnn.check.mutants`),
runs `check_layer` on each mutant, and reports which mutants the check caught and which
survived. A survivor is a mistake the check point cannot see: make the check stronger
(another input, params in general position, a larger batch) or declare it equivalent
(no observable change at all) with its reason.

`builtin_mutants` and `run_mutant` do the same for fnn's own backward code against the
catalogue (`benchmarks/mutation.py`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fnn.check.backward_code import (
    Exercised,
    Site,
    backward_sites,
    checks_running,
    exercise,
    named_sites,
    site_at,
    top_function,
)
from fnn.check.checker import CheckResult, check_layer
from fnn.check.mutants import Mutant, applied, mutants_of
from fnn.core import Layer, SettingError
from fnn.errors import ArgumentError

FNN_DIR = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class MutantResult:
    """What became of one mutant.

    Attributes:
      mutant: the mutant (file, function, line, operator, the line before and after).
      status: "caught", "survived" or "equivalent".
      how: for a caught mutant, "wrong gradient" (the check's numbers disagree),
        "wrong shape" (the gradient's structure or shapes) or "crash" (the mutant does
        not compile, or raises when traced or run); else "".
      detail: the first failure's message, or why the mutant is equivalent or survived.
      checks: the checks run on it, in order (they stop at the first that fails).
    """

    mutant: Mutant
    status: str
    how: str = ""
    detail: str = ""
    checks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        m = self.mutant
        return {
            "file": _short(m.file),
            "function": m.function,
            "line": m.line,
            "operator": m.operator,
            "diff": f"- {m.before.strip()}\n+ {m.after.strip()}",
            "checks_run": list(self.checks),
            "caught": self.status == "caught",
            "status": self.status,
            "how": self.how,
            "detail": self.detail if len(self.detail) <= 300 else self.detail[:297] + "...",
        }


@dataclasses.dataclass(frozen=True)
class MutationReport:
    """The results of all mutants, with the score: caught / (caught + survived)."""

    results: tuple[MutantResult, ...]
    seconds: float = 0.0

    def count(self, status: str, how: str | None = None) -> int:
        return sum(r.status == status and how in (None, r.how) for r in self.results)

    @property
    def survivors(self) -> list[MutantResult]:
        return [r for r in self.results if r.status == "survived"]

    @property
    def score(self) -> float:
        """Caught over non-equivalent mutants (1.0 when there are none)."""
        caught, survived = self.count("caught"), self.count("survived")
        return caught / (caught + survived) if caught + survived else 1.0

    @property
    def passed(self) -> bool:
        return not self.survivors

    def summary(self) -> str:
        caught, survived = self.count("caught"), self.count("survived")
        hows = ", ".join(
            f"{self.count('caught', how)} {how}"
            for how in ("wrong gradient", "wrong shape", "crash")
            if self.count("caught", how)
        )
        return (
            f"mutation score {caught}/{caught + survived} = {self.score:.1%} "
            f"(caught: {hows or 'none'}; {survived} survived, "
            f"{self.count('equivalent')} equivalent)"
        )

    def table(self) -> str:
        """One line per mutant: where, what, and whether the check caught it."""
        lines = [f"{'line':>5}  {'operator':<13} {'result':<24} mutated line", "-" * 79]
        for r in self.results:
            m = r.mutant
            verdict = f"caught ({r.how})" if r.status == "caught" else r.status.upper()
            if r.status == "equivalent":
                verdict = "equivalent"
            lines.append(f"{m.line:>5}  {m.operator:<13} {verdict:<24} {m.after.strip()}")
            if r.status != "caught" and r.detail:
                lines.append(f"{'':>45}{r.detail}")
        return "\n".join([*lines, self.summary()])

    def __str__(self) -> str:
        return self.table()


def _key(code) -> tuple[str, str, int]:
    return code.co_filename, code.co_qualname, code.co_firstlineno


def _short(path: str) -> str:
    """`path` relative to the repository when it is fnn's own."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(FNN_DIR.parent)) if FNN_DIR in resolved.parents else path


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _verdict(result: CheckResult) -> tuple[str, str]:
    """How a failed check caught a mutant, and the check's own words."""
    if result.error.startswith("raised"):
        return "crash", result.error
    return ("wrong shape" if result.error else "wrong gradient"), str(result)


def run_mutant(
    mutant: Mutant,
    top: types.FunctionType,
    checks: Sequence[tuple[str, Callable[[], CheckResult]]],
    *,
    live: Iterable[Callable] = (),
    equivalent: str = "",
) -> MutantResult:
    """Runs `checks` in order with `mutant` in place (`top`: the module-level function
    it recompiles; `live`: existing closures of the mutated function to patch too) until
    one fails. `equivalent`: a reason the mutant cannot change anything (not run)."""
    if mutant.equivalent or equivalent:
        return MutantResult(mutant, "equivalent", detail=mutant.equivalent or equivalent)
    if mutant.code is None:
        return MutantResult(mutant, "caught", "crash", mutant.error)
    if not checks:
        return MutantResult(mutant, "survived", detail="no check runs this code")
    run: list[str] = []
    with applied(mutant, top, tuple(live)):
        for name, check in checks:
            run.append(name)
            try:
                result = check()
            except Exception as error:  # noqa: BLE001  (a mutant that raises is caught)
                return MutantResult(mutant, "caught", "crash", _first_line(error), tuple(run))
            if not result.passed:
                return MutantResult(mutant, "caught", *_verdict(result), tuple(run))
    return MutantResult(mutant, "survived", detail="every check passed", checks=tuple(run))


# --------------------------------------------------------------------------- your layer


def _own_functions(layer: Layer) -> list[Callable]:
    """The backward functions of `layer` and its sublayers that are not fnn's own."""
    found: list[Callable] = []
    stack = [layer]
    while stack:
        one = stack.pop()
        stack.extend(one.sublayers)
        for fn in (one.backward, one.per_example_backward):
            code = getattr(fn, "__code__", None)
            if fn is None or code is None or fn in found:
                continue
            if _yours(code.co_filename):
                found.append(fn)
    return found


def _closures(roots: Iterable[Any], depth: int = 6) -> list[Callable]:
    """Every function reachable from `roots` through closure cells and sublayers."""
    seen: dict[int, Callable] = {}
    frontier = list(roots)
    for _ in range(depth):
        nxt = []
        for obj in frontier:
            if isinstance(obj, Layer):
                nxt.extend([*obj, *obj.sublayers])
            elif isinstance(obj, tuple | list):
                nxt.extend(obj)
            elif hasattr(obj, "__code__") and id(obj) not in seen:
                seen[id(obj)] = obj
                nxt.extend(c.cell_contents for c in obj.__closure__ or () if _filled(c))
        frontier = nxt
    return list(seen.values())


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # an empty cell
        return False
    return True


def _build(factory: Callable[[], Any]) -> Layer:
    layer = factory()
    if not isinstance(layer, Layer):
        name = getattr(factory, "__name__", repr(factory))
        raise ArgumentError(
            f"mutation_test: {name}() returned {type(layer).__name__}; expected an fnn Layer "
            "(a function with no arguments returning a Layer, or the Layer itself)"
        )
    return layer


def mutation_test(
    layer: Layer | Callable[[], Layer],
    in_shape: Sequence[int],
    *,
    equivalent: Mapping[str, str] | None = None,
    **check_layer_kwargs: Any,
) -> MutationReport:
    """Plants classic mistakes in `layer`'s own backward code, one at a time, and runs
    `check_layer(layer, in_shape, **check_layer_kwargs)` on each: the report says which
    mistakes your check point catches.

    Arguments:
      layer: a Layer, or a function with no arguments returning one (such as the
        README's `prelu`), whose backward (and per-example backward) you wrote; fnn's own
        layers inside it are left alone. The code is read from its source file.
      in_shape, check_layer_kwargs: as for `check_layer` (batch, key, ctx, make_input,
        at_init, ...).
      equivalent: `{mutant.key: reason}` for mutants that cannot change the result.

    The layer must pass its check before any mutation (a `SettingError`, a ValueError,
    says so otherwise).
    Each mutant is compiled from the edited source and swapped in for the function's
    code while its check runs, then restored: no file is touched.
    """
    factory = None if isinstance(layer, Layer) else layer
    built = layer if isinstance(layer, Layer) else _build(layer)
    own = _own_functions(built)  # its backward functions that are not fnn's
    reachable = [f for f in _closures([built]) if _yours(f.__code__.co_filename)]
    files = {f.__code__.co_filename for f in [*own, *reachable]}
    if not files:
        raise SettingError(
            f"mutation_test: {built.name} has no backward code of its own to mutate: all "
            "its code is fnn's (fnn's own is mutation-tested by benchmarks/mutation.py)"
        )
    start = time.perf_counter()

    def check() -> CheckResult:
        return check_layer(_build(factory) if factory else built, in_shape, **check_layer_kwargs)

    before = check()
    if not before.passed:
        raise SettingError(
            f"mutation_test: the layer fails its check before any mutation: {before}"
        )
    # fnn's files are watched too: code of yours that fnn's backward calls (the `grad`
    # of an `fnn.layers.elementwise`) is backward code, what fnn's forward calls is not
    fnn_files = builtin_files()
    exercised = exercise({"check_layer": check}, files | set(fnn_files))
    if exercised.failed:  # traced only, the check went another way: run it for real
        exercised = exercise({"check_layer": check}, files | set(fnn_files), traced=False)
    try:
        named = named_sites(fnn_files) + [site_at(*_key(fn.__code__)) for fn in own]
        sites = [s for s in backward_sites(named, exercised) if s.file in files]
    except (OSError, SyntaxError, LookupError) as error:
        raise SettingError(f"mutation_test: cannot read the layer's source: {error}") from None
    globals_ = {f.__code__.co_filename: f.__globals__ for f in [*own, *reachable]}
    live = [] if factory is not None else reachable
    results = []
    for site in sites:
        try:
            top = top_function(site, exercised.globals.get(site.file) or globals_[site.file])
        except LookupError as error:
            raise SettingError(f"mutation_test: cannot mutate {site.function}: {error}") from None
        patched = [f for f in live if _key(f.__code__) == site.key]
        freevars = patched[0].__code__.co_freevars if patched else ()
        checks = [("check_layer", check)] if site.key in exercised.checks["check_layer"] else []
        for mutant in mutants_of(site.file, site.function, site.start, top.__globals__, freevars):
            why = (equivalent or {}).get(mutant.key, "")
            results.append(run_mutant(mutant, top, checks, live=patched, equivalent=why))
    return MutationReport(tuple(results), time.perf_counter() - start)


def _yours(path: str) -> bool:
    """Whether `path` is a file of the user's: neither fnn's nor an installed package's."""
    resolved = Path(path).resolve()
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, FNN_DIR)}
    return resolved.is_file() and not installed & set(resolved.parents)


# --------------------------------------------------------------------------- fnn's own


def builtin_files() -> list[str]:
    """The source files of fnn's layers, losses and language models."""
    import fnn.layers  # noqa: F401  (every module of the package, imported)
    import fnn.lm  # noqa: F401
    import fnn.losses  # noqa: F401

    names = [
        n for n in sys.modules if n.startswith(("fnn.layers.", "fnn.lm.")) or n == "fnn.losses"
    ]
    return sorted({file for n in names if (file := getattr(sys.modules[n], "__file__", None))})


def builtin_mutants(
    checks: Mapping[str, Callable[[], Any]],
) -> tuple[list[tuple[Site, Mutant, Callable, list[str]]], Exercised]:
    """Every mutant of fnn's backward code: `(site, mutant, top-level function, checks
    running the site)`, with what `checks` (traced only) ran."""
    files = builtin_files()
    exercised = exercise(checks, files)
    modules = {
        m.__file__: vars(m)
        for m in list(sys.modules.values())
        if getattr(m, "__file__", None) in files
    }
    out = []
    for site in backward_sites(named_sites(files), exercised):
        top = top_function(site, modules[site.file])
        for mutant in mutants_of(site.file, site.function, site.start, modules[site.file]):
            out.append((site, mutant, top, checks_running(site, exercised)))
    return out, exercised

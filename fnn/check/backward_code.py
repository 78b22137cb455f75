"""Which code is backward code, and which checks run it.

Backward code is every function named `backward`, `per_example_backward`, `*_backward`
or `_bwd*` (with the functions nested in it), and every helper function called only
from backward code. Who calls what is recorded, once, while the checks trace their
programs (`exercise`: under `sys.setprofile`, the checks traced but neither compiled nor
run), which also tells which checks run each function.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np

from fnn.check import checker
from fnn.check.source import def_line, find_function, functions, name_of, parse_file
from fnn.errors import NotFoundError

BACKWARD_NAME = re.compile(r"(backward|per_example_backward|\w+_backward|_bwd\w*)$")

CodeKey = tuple[str, str, int]  # (file, qualified name, first line)


@dataclasses.dataclass(frozen=True)
class Site:
    """A function whose body is mutated: its file, qualified name, first and last line."""

    file: str
    function: str
    start: int
    end: int

    @property
    def key(self) -> CodeKey:
        return self.file, self.function, self.start

    def holds(self, key: CodeKey | None) -> bool:
        """Whether the code `key` is this function or nested in it."""
        return key is not None and key[0] == self.file and self.start <= key[2] <= self.end


@dataclasses.dataclass(frozen=True)
class Exercised:
    """What the checks ran: per check, the functions (of the files watched) that started;
    per function, the functions that called it (the nearest watched frame up the stack,
    None when there is none: a call from outside, such as the checker's); per file, the
    module globals its functions run in."""

    checks: dict[str, frozenset[CodeKey]]
    callers: dict[CodeKey, frozenset[CodeKey | None]]
    globals: dict[str, dict[str, Any]]
    failed: dict[str, str]


def _key(code) -> CodeKey:
    return code.co_filename, code.co_qualname, code.co_firstlineno


@contextlib.contextmanager
def traced_only():
    """Checks trace their programs but neither compile nor run them: the checker's
    `one_shot_jit` becomes `jax.eval_shape` with zeros for results (enough to record
    which code a check runs, at a fraction of a compile's cost)."""
    original = checker.one_shot_jit

    def shapes_only(fun, **_):
        def run(*args, **kwargs):
            shapes = jax.eval_shape(fun, *args, **kwargs)
            return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)

        return run

    checker.one_shot_jit = shapes_only
    try:
        yield
    finally:
        checker.one_shot_jit = original


def exercise(
    checks: Mapping[str, Callable[[], Any]], files: Iterable[str], *, traced: bool = True
) -> Exercised:
    """Runs each check (traced only, unless `traced` is False) under a profiler watching
    the functions of `files`."""
    files = set(files)
    started: dict[str, set[CodeKey]] = {}
    callers: dict[CodeKey, set[CodeKey | None]] = {}
    globals_: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    jax.clear_caches()  # a function JAX traced before is not called again: see them all
    for name, check in checks.items():
        seen = started[name] = set()

        def profile(frame, event, _arg, seen=seen):
            if event != "call" or frame.f_code.co_filename not in files:
                return
            key = _key(frame.f_code)
            seen.add(key)
            globals_.setdefault(key[0], frame.f_globals)
            caller = frame.f_back
            while caller is not None and caller.f_code.co_filename not in files:
                caller = caller.f_back
            callers.setdefault(key, set()).add(None if caller is None else _key(caller.f_code))

        sys.setprofile(profile)
        try:
            with traced_only() if traced else contextlib.nullcontext():
                check()
        except Exception as error:  # noqa: BLE001  (a check that fails traced only is noted)
            failed[name] = (
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            )
        finally:
            sys.setprofile(None)
    return Exercised(
        {n: frozenset(s) for n, s in started.items()},
        {k: frozenset(c) for k, c in callers.items()},
        globals_,
        failed,
    )


def site_at(file: str, function: str, start: int) -> Site:
    node, _ = find_function(file, function, start)
    assert node.end_lineno is not None  # a parsed node has its positions
    return Site(file, function, start, node.end_lineno)


def named_sites(files: Iterable[str]) -> list[Site]:
    """The functions of `files` named like a backward, outermost only."""
    out: list[Site] = []
    for file in files:
        for qualname, node, _ in functions(parse_file(file)[0]):
            name = qualname.rsplit(".", 1)[-1]
            assert node.end_lineno is not None  # a parsed node has its positions
            if BACKWARD_NAME.match(name) and not any(s.holds((file, "", node.lineno)) for s in out):
                out.append(Site(file, qualname, def_line(node), node.end_lineno))
    return out


def backward_sites(named: Iterable[Site], exercised: Exercised) -> list[Site]:
    """`named` and the helpers called only from backward code (from a function in a
    site, or from another such helper), in file and line order, outermost only."""
    sites = list(named)
    grew = True
    while grew:
        grew = False
        for key, called_by in exercised.callers.items():
            if any(s.holds(key) for s in sites) or not called_by:
                continue
            if all(any(s.holds(c) for s in sites) for c in called_by):
                sites.append(site_at(*key))
                grew = True
    outermost = [s for s in sites if not any(o is not s and o.holds(s.key) for o in sites)]
    return sorted(set(outermost), key=lambda s: (s.file, s.start))


def checks_running(site_: Site, exercised: Exercised) -> list[str]:
    """The checks that ran the function of `site_`."""
    return [name for name, keys in exercised.checks.items() if site_.key in keys]


def top_function(site_: Site, globals_: Mapping[str, Any]):
    """The module-level function holding `site_` (unwrapped of decorators), or a
    NotFoundError (a LookupError) when the module's name for it is not that function."""
    _, top = find_function(site_.file, site_.function, site_.start)
    if isinstance(top, ast.Lambda):  # no name of its own: nothing to swap its code into
        raise NotFoundError(
            f"{site_.file}:{site_.start}: a lambda at module level cannot be mutated; write "
            "it with def, or inside the function that builds the layer"
        )
    obj: Any = globals_.get(name_of(top))  # a function, maybe wrapped by decorators
    while hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
    code = getattr(obj, "__code__", None)
    if code is None or code.co_filename != site_.file or code.co_firstlineno != def_line(top):
        raise NotFoundError(
            f"{site_.file}: the module's {name_of(top)!r} is not the function defined there"
        )
    return obj

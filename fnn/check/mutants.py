"""Mutants of hand-written backward code: one classic mistake planted at one place of a
backward function's source, compiled, and swapped in for the real code while a check
runs.

The operators, each applied at one site of the function's syntax tree:

- **sign**: `a - b` ↔ `a + b`, `-x` → `x`, a returned gradient negated;
- **factor 2**: a gradient (an assignment to a name `d*` or `grad*`, or a returned
  expression) multiplied by 2;
- **transpose**: a `.T` or `.mT` dropped, a `swapaxes`/`transpose`/`matrix_transpose`/
  `moveaxis` dropped, the last two output subscripts of an `einsum` swapped;
- **dropped term**: `a + b` → `a` and → `b`, `a - b` → `a` and → `-b`, `a * b` → `a` and
  → `b`, `a / b` → `a`;
- **axis**: `axis=k` → another axis (`0` → `-1`, `-1` → `0`, `k > 0` → `0`, `k < -1` →
  `-1`, a tuple loses its last axis), `sum` ↔ `mean`.

Only the body of the mutated function (and the functions nested in it) changes, never
its defaults or decorators, nor the code around it. A mutant is applied without editing
any file: the top-level function that holds the mutated code (a layer's factory, such as
`dense`, for its nested `backward`) is recompiled from the mutated tree in its module's
globals, and the function's `__code__` is swapped, so every reference to it sees the
mutant; `applied` restores the original in a `finally`.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import dataclasses
import functools
import types
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import jax

from fnn.check import source
from fnn.check.source import def_line, find_function, functions, mutated_line, parse_file
from fnn.errors import SettingError

OPERATORS = ("sign", "factor 2", "transpose", "dropped term", "axis")
TRANSPOSES = {"swapaxes", "transpose", "matrix_transpose", "moveaxis"}
ZEROS = {"zeros", "zeros_like"}
_SKIP_RETURNED = (ast.Constant, ast.Tuple, ast.List, ast.Lambda, ast.Dict)


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One planted mistake.

    Attributes:
      file: the source file; function: the qualified name of the mutated function
        (`dense.<locals>.backward`); start: the first line of its code; line: the line
        of the mistake.
      operator: one of `OPERATORS`; before, after: the line as written and as mutated.
      top: the top-level function recompiled (`dense`); code: its mutated code object,
        None when the mutated tree does not compile (`error` then says why).
      equivalent: why the mutant cannot change anything ("" for a real mutant).
    """

    file: str
    function: str
    start: int
    line: int
    operator: str
    before: str
    after: str
    top: str
    code: types.CodeType | None = dataclasses.field(default=None, repr=False, compare=False)
    error: str = ""
    equivalent: str = ""

    @property
    def key(self) -> str:
        """A name that survives edits elsewhere in the file: the file's name, the
        function, the mutated line."""
        return f"{Path(self.file).name}:{self.function}: {self.after.strip()}"


# --------------------------------------------------------------------------- operators


def _neg(node: ast.expr) -> ast.expr:
    return ast.UnaryOp(ast.USub(), node)


def _twice(node: ast.expr) -> ast.expr:
    return ast.BinOp(ast.Constant(2), ast.Mult(), node)


def _is_gradient_name(node: ast.AST) -> bool:
    while isinstance(node, ast.Subscript):  # grads["b"] = ...
        node = node.value
    return isinstance(node, ast.Name) and (node.id.startswith(("d", "grad")) and node.id != "dtype")


def _axis_alternative(value: ast.expr) -> ast.expr | None:
    """Another axis for `axis=value`, or None when `value` is not a literal."""
    if isinstance(value, ast.Tuple):
        return ast.Tuple(value.elts[:-1], ast.Load()) if len(value.elts) >= 2 else None
    try:
        k = ast.literal_eval(value)
    except ValueError:
        return None
    if not isinstance(k, int):
        return None
    other = {0: -1, -1: 0}.get(k, 0 if k > 0 else -1)
    return ast.Constant(other) if other >= 0 else _neg(ast.Constant(-other))


def _einsum_swapped(call: ast.Call) -> ast.expr | None:
    spec = call.args[0] if call.args else None
    if not (isinstance(spec, ast.Constant) and isinstance(spec.value, str) and "->" in spec.value):
        return None
    inputs, output = spec.value.split("->")
    if len(output.strip()) < 2:
        return None
    out = output.strip()
    return ast.Constant(f"{inputs}->{out[:-2]}{out[-1]}{out[-2]}")


Make = Callable[..., source.Code]  # the mutated node from (a copy of) the original


def candidates(fn: source.Function) -> Iterator[tuple[source.Code, str, Make]]:
    """Every mutation of `fn`'s body: `(node, operator, make)`, `make(copy_of_node)` the
    node that replaces it."""
    body = [fn.body] if isinstance(fn, ast.Lambda) else fn.body
    nodes = [n for stmt in body for n in ast.walk(stmt)]
    not_arrays = {  # names a negation or a factor of 2 cannot apply to
        t.id
        for n in nodes
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Dict | ast.DictComp | ast.List)
        for t in n.targets
        if isinstance(t, ast.Name)
    } | {n.name for n in nodes if isinstance(n, ast.FunctionDef)}
    scaled = {  # names whose assignment already gets a factor of 2
        t.id
        for n in nodes
        if isinstance(n, ast.Assign | ast.AugAssign)
        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        if isinstance(t, ast.Name) and _is_gradient_name(t)
    }

    def scalable(e: ast.expr) -> bool:
        if isinstance(e, _SKIP_RETURNED) or (isinstance(e, ast.Name) and e.id in not_arrays):
            return False
        if isinstance(e, ast.BinOp) and _sequence(e):
            return False
        return not (
            isinstance(e, ast.Call)
            and isinstance(e.func, ast.Name)
            and e.func.id in {"tuple", "dict"}
        )

    for node in nodes:
        if isinstance(node, ast.BinOp) and not _sequence(node):
            consts = isinstance(node.left, ast.Constant), isinstance(node.right, ast.Constant)
            if isinstance(node.op, ast.Sub | ast.Add):
                other = ast.Add() if isinstance(node.op, ast.Sub) else ast.Sub()
                yield node, "sign", lambda n, o=other: ast.BinOp(n.left, o, n.right)
                yield node, "dropped term", lambda n: n.left
                if isinstance(node.op, ast.Add):
                    yield node, "dropped term", lambda n: n.right
                else:
                    yield node, "dropped term", lambda n: _neg(n.right)
            elif isinstance(node.op, ast.Mult):
                if not consts[1]:
                    yield node, "dropped term", lambda n: n.right
                if not consts[0]:
                    yield node, "dropped term", lambda n: n.left
            elif isinstance(node.op, ast.Div) and not consts[0]:
                yield node, "dropped term", lambda n: n.left
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            if not isinstance(node.operand, ast.Constant):
                yield node, "sign", lambda n: n.operand
        elif isinstance(node, ast.Attribute) and node.attr in {"T", "mT"}:
            yield node, "transpose", lambda n: n.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr, owner = node.func.attr, node.func.value
            if attr in TRANSPOSES:
                is_module = isinstance(owner, ast.Name) and owner.id in {"jnp", "np", "lax"}
                if is_module and node.args:
                    yield node, "transpose", lambda n: n.args[0]
                elif not is_module:
                    yield node, "transpose", lambda n: n.func.value
            elif attr == "einsum" and (swapped := _einsum_swapped(node)) is not None:
                yield (
                    node,
                    "transpose",
                    lambda n, s=swapped: ast.Call(n.func, [s, *n.args[1:]], n.keywords),
                )
            elif attr in {"sum", "mean"}:
                swap = "mean" if attr == "sum" else "sum"
                yield (
                    node,
                    "axis",
                    lambda n, o=swap: ast.Call(
                        ast.Attribute(n.func.value, o, ast.Load()), n.args, n.keywords
                    ),
                )
        if isinstance(node, ast.keyword) and node.arg == "axis":
            if (alternative := _axis_alternative(node.value)) is not None:
                yield node, "axis", lambda n, a=alternative: ast.keyword("axis", a)
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if len(targets) == 1 and _is_gradient_name(targets[0]):
                yield from _each_value(node.value, "factor 2", _twice, scalable)
        if isinstance(node, ast.Return) and node.value is not None:
            value = node.value
            for e in value.elts if isinstance(value, ast.Tuple) else [value]:
                yield from _each_value(e, "sign", _neg, scalable)
                if not (isinstance(e, ast.Name) and e.id in scaled):
                    yield from _each_value(e, "factor 2", _twice, scalable)


def _sequence(node: ast.BinOp) -> bool:
    """Whether `node` repeats or joins tuples or lists (`(x,) * 3`): no arithmetic."""
    return any(isinstance(side, ast.Tuple | ast.List) for side in (node.left, node.right))


def _each_value(e, operator, wrap, scalable):
    """`wrap` applied to `e`, or to each value of a dict or tuple literal `e`."""
    if isinstance(e, ast.Dict | ast.Tuple):
        for v in e.values if isinstance(e, ast.Dict) else e.elts:
            if scalable(v):
                yield v, operator, wrap
    elif scalable(e):
        yield e, operator, wrap


# --------------------------------------------------------------------------- mutants


def _number(node, value=None) -> bool:
    """Whether `node` is a number literal (equal to `value`, if given)."""
    is_number = isinstance(node, ast.Constant) and type(node.value) in (int, float)
    return is_number and (value is None or node.value == value)


def _zeros(node) -> bool:
    """Whether `node` is a call of `jnp.zeros` or `jnp.zeros_like` (numpy's may be of
    float0, which does not multiply)."""
    func = getattr(node, "func", None)
    jnp_call = isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "jnp"
    return isinstance(node, ast.Call) and jnp_call and getattr(func, "attr", None) in ZEROS


def _normal(tree: ast.AST) -> str:
    """`ast.dump` after folding `-(-x)` to `x`, `-(c)` to `-c`; `x * 1`, `1 * x`,
    `x / 1`, `x + 0`, `0 + x`, `x - 0` to `x`; `-jnp.zeros(...)` and `c * jnp.zeros(...)`
    (and `zeros_like`) to the zeros."""

    class Fold(ast.NodeTransformer):
        def visit_UnaryOp(self, node):
            self.generic_visit(node)
            if isinstance(node.op, ast.USub):
                if isinstance(node.operand, ast.UnaryOp) and isinstance(node.operand.op, ast.USub):
                    return node.operand.operand
                if _number(node.operand):
                    return ast.Constant(-node.operand.value)
                if _zeros(node.operand):
                    return node.operand
            return node

        def visit_BinOp(self, node):
            self.generic_visit(node)
            left, right = node.left, node.right
            for a, b in ((left, right), (right, left)):
                if isinstance(node.op, ast.Mult) and _zeros(a) and _number(b):
                    return a  # c · zeros
            if isinstance(node.op, ast.Mult | ast.Div) and _number(right, 1):
                return left
            if isinstance(node.op, ast.Add | ast.Sub) and _number(right, 0):
                return left
            if isinstance(node.op, ast.Mult) and _number(left, 1):
                return right
            if isinstance(node.op, ast.Add) and _number(left, 0):
                return right
            return node

    return ast.dump(Fold().visit(copy.deepcopy(tree)))


def _replace(root: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(root):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(v is old for v in value):
                value[[i for i, v in enumerate(value) if v is old][0]] = new
                return
    raise AssertionError("node not found")  # `old` was taken from `root`: unreachable


def _future_flags(globals_: dict) -> int:
    """The compiler flag of `from __future__ import annotations` when the module has it
    (the import binds the feature object, the one this module's own import bound)."""
    return annotations.compiler_flag if globals_.get("annotations") is annotations else 0


def mutants_of(path: str, qualname: str, line: int, globals_: dict, freevars=()) -> list[Mutant]:
    """Every mutant of the function `qualname` (code starting at `line`) of `path`, in
    the order of its source; identical mutants after the first are left out, and a
    mutant whose tree equals the original's is marked equivalent. `freevars`: the
    function's closure variables, kept in the mutant so its code can replace a live
    closure's (`applied(..., live=...)`)."""
    fn, top = find_function(path, qualname, line)
    lines = parse_file(path)[1]
    flat = list(ast.walk(top))
    original, seen, out = _normal(top), set(), []
    for node, operator, make in candidates(fn):
        index = next(i for i, n in enumerate(flat) if n is node)
        tree = copy.deepcopy(top)
        old = list(ast.walk(tree))[index]
        new = make(old)
        after = mutated_line(lines, node, new)
        _replace(tree, old, ast.copy_location(new, old))
        ast.fix_missing_locations(tree)
        dump = _normal(tree)
        if dump in seen and dump != original:  # the same mutant as one before
            continue
        seen.add(dump)
        mutant = functools.partial(Mutant, file=path, function=qualname, start=line,
            line=node.lineno, operator=operator, before=lines[node.lineno - 1], after=after,
            top=source.name_of(top))  # fmt: skip
        if dump == original:
            out.append(mutant(equivalent="the same code as the original, normalised"))
            continue
        try:
            code = _compile(tree, path, qualname, line, globals_, freevars)
        except (SyntaxError, ValueError) as error:
            out.append(mutant(error=f"{type(error).__name__}: {error}"))
            continue
        out.append(mutant(code=code))
    return out


def _compile(top, path, qualname, line, globals_, freevars) -> types.CodeType:
    if freevars:  # `if False: (a, b)` at the end keeps every closure variable free
        fn = next(
            n
            for q, n, _ in functions(ast.Module([top], []))
            if q == qualname and def_line(n) == line and not isinstance(n, ast.Lambda)
        )
        keep = ast.If(
            ast.Constant(False),
            [ast.Expr(ast.Tuple([ast.Name(v, ast.Load()) for v in freevars], ast.Load()))],
            [],
        )
        fn.body.append(ast.copy_location(keep, fn.body[-1]))
        ast.fix_missing_locations(top)
    module = compile(
        ast.Module([top], []), path, "exec", _future_flags(globals_), dont_inherit=True
    )
    return next(
        c for c in module.co_consts if isinstance(c, types.CodeType) and c.co_name == top.name
    )


def nested_code(code: types.CodeType, qualname: str, line: int) -> types.CodeType | None:
    """The code object `qualname` starting at `line` inside `code` (or `code` itself)."""
    if code.co_qualname == qualname and code.co_firstlineno == line:
        return code
    for const in code.co_consts:
        if isinstance(const, types.CodeType) and (found := nested_code(const, qualname, line)):
            return found
    return None


@contextlib.contextmanager
def applied(mutant: Mutant, top: types.FunctionType, live=()):
    """Runs the block with `mutant` in place: `top`'s code swapped for the mutant's, and
    that of each function in `live` (existing closures of the mutated function) for the
    mutated function's. When JAX may hold traces of these functions (something keeps a
    weak reference to one: JAX's caches of traced functions are weak-keyed), its caches
    are cleared on the way in and out, so that nothing traced from the other code is
    reused; otherwise every trace starts from fresh closures and nothing is cleared (a
    clear makes the next check retrace jax.numpy's own functions too)."""
    if mutant.code is None:
        raise SettingError(f"the mutant {mutant.key} does not compile: {mutant.error}")
    saved = [(top, top.__code__)] + [(f, f.__code__) for f in live]

    def clear_if_seen():
        if any(weakref.getweakrefcount(f) for f, _ in saved):
            jax.clear_caches()

    try:
        top.__code__ = mutant.code
        for f in live:
            f.__code__ = nested_code(mutant.code, mutant.function, mutant.start)
        clear_if_seen()
        yield
    finally:
        for f, code in saved:
            f.__code__ = code
        clear_if_seen()

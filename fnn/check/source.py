"""Reading backward code: a source file's functions by qualified name, and a mutated
line written back as source (with the original text of every part left as it was)."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

from fnn.errors import NotFoundError

Function = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda  # a function's syntax tree
# what `functions` gives as a function's top-level definition: a module-level def, class or
# lambda (a lambda has no name: no module-level function holds it)
Definition = Function | ast.ClassDef
Code = ast.expr | ast.keyword  # a part of an expression: what a mutation replaces

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.MatMult: "@"}
_BINDING = {ast.Add: 11, ast.Sub: 11, ast.Mult: 12, ast.Div: 12, ast.MatMult: 12}


@functools.cache
def parse_file(path: str) -> tuple[ast.Module, tuple[str, ...]]:
    """The syntax tree and the lines of a source file (read once)."""
    text = Path(path).read_text()
    return ast.parse(text, path), tuple(text.splitlines())


def def_line(node: Definition) -> int:
    """The first line of a function's code object (its first decorator's, if any)."""
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])


def name_of(node: Definition) -> str:
    """A definition's name as its code object has it (`co_name`): "<lambda>" for a lambda."""
    return "<lambda>" if isinstance(node, ast.Lambda) else node.name


def functions(tree: ast.Module) -> Iterator[tuple[str, Function, Definition]]:
    """Every function of a module: `(qualified name, node, top-level definition)`, named
    as Python names them (`dense.<locals>.backward`, `Class.method`)."""

    def visit(
        node: ast.AST, prefix: str, top: Definition | None
    ) -> Iterator[tuple[str, Function, Definition]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                name = name_of(child)
                yield prefix + name, child, top or child
                yield from visit(child, prefix + name + ".<locals>.", top or child)
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, prefix + child.name + ".", top or child)
            else:
                yield from visit(child, prefix, top)

    yield from visit(tree, "", None)


def find_function(path: str, qualname: str, line: int) -> tuple[Function, Definition]:
    """The function `qualname` of `path` whose code starts at `line`, and its top-level
    definition; a NotFoundError (a LookupError) when there is none."""
    for name, node, top in functions(parse_file(path)[0]):
        if name == qualname and def_line(node) == line:
            return node, top
    raise NotFoundError(f"{path} has no function {qualname} starting at line {line}")


def _segment(node: Code, lines: Sequence[str]) -> str | None:
    """The source text of a node read from the file (offsets are UTF-8 bytes)."""
    if getattr(node, "end_lineno", None) != getattr(node, "lineno", -1):
        return None
    line = lines[node.lineno - 1].encode()
    return line[node.col_offset : node.end_col_offset].decode()


def render(node: Code, lines: Sequence[str]) -> str:
    """`node` as source: the file's text for parts copied from it (they keep their
    positions), Python's for new parts."""
    if (text := _segment(node, lines)) is not None:
        return text
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return "-" + _grouped(node.operand, lines, _binding(node))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left = _grouped(node.left, lines, _binding(node))
        return f"{left} {_OPS[type(node.op)]} {_grouped(node.right, lines, _binding(node) + 1)}"
    if isinstance(node, ast.keyword):
        return f"{node.arg}={render(node.value, lines)}"
    if isinstance(node, ast.Attribute):
        return f"{render(node.value, lines)}.{node.attr}"
    if isinstance(node, ast.Call):
        parts: list[Code] = [*node.args, *node.keywords]
        args = [render(a, lines) for a in parts]
        return f"{render(node.func, lines)}({', '.join(args)})"
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and '"' not in node.value:
        return f'"{node.value}"'
    return ast.unparse(node)


def _binding(node: ast.AST) -> int:
    """How tightly an expression binds (Python's operator precedence; 100: an atom)."""
    if isinstance(node, ast.BinOp):
        return _BINDING.get(type(node.op), 14)
    if isinstance(node, ast.UnaryOp):
        return 13
    return 5 if isinstance(node, ast.BoolOp | ast.Compare | ast.IfExp | ast.Lambda) else 100


def _grouped(node: ast.expr, lines: Sequence[str], at_least: int) -> str:
    """`node` as source, in parentheses unless it binds at least `at_least` tightly."""
    text = render(node, lines)
    return f"({text})" if _binding(node) < at_least else text


def mutated_line(lines: Sequence[str], old: Code, new: Code) -> str:
    """The line of `old` with `old` replaced by `new` (rendered before `new` is given a
    position)."""
    assert old.end_lineno is not None and old.end_col_offset is not None  # parsed: positioned
    first, last = lines[old.lineno - 1].encode(), lines[old.end_lineno - 1].encode()
    head, tail = first[: old.col_offset].decode(), last[old.end_col_offset :].decode()
    return head + render(new, lines) + tail

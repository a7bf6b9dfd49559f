"""The mutants of one module: each a single small change found on the module's AST and applied to its text.

Only the changed expression or statement differs from the original file, so a mutant's line numbers, docstrings
and comments are the original's. What is changed (mutmut's and PIT's classic operators, plus the ones money code
needs):

- `compare`: a comparison's boundary or sense (`<` ↔ `<=`, `>` ↔ `>=`, `==` ↔ `!=`, `is` ↔ `is not`,
  `in` ↔ `not in`);
- `arithmetic`: `+` ↔ `-`, `*` ↔ `/`, `//` → `/`, `%` → `//`, `**` → `*`, `|` ↔ `&`, also in `+=` and friends;
- `boolean`: `and` ↔ `or`; `not x` → `x`; a condition `c` (not already a comparison) → `not (c)`;
- `constant`: a number `n` → `n + 1`, `True` ↔ `False` (strings are left alone: they are messages and SQL, whose
  every change is either cosmetic or a syntax error);
- `call`: a conversion dropped (`Decimal(str(x))` → `Decimal(x)`, `float(x)` → `x`, …), `min` ↔ `max`;
- `statement`: a call, an augmented assignment, an attribute or item assignment or a `raise` replaced by `pass`;
  `return x` → `return None`; `break` ↔ `continue`.

Never mutated: docstrings, type annotations, imports, `if TYPE_CHECKING:` blocks and f-strings (messages).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

COMPARE = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
ARITHMETIC = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.BitOr: ast.BitAnd,
    ast.BitAnd: ast.BitOr,
}
# Calls whose one argument is returned unconverted: `Decimal(str(x))` → `Decimal(x)` is the mutant that shows
# whether a float price is read as the decimal it was written as.
CONVERSIONS = {"str", "int", "float", "bool", "Decimal", "tuple", "list", "abs", "round"}


@dataclass(frozen=True)
class Mutant:
    """One change to one module.

    Attributes:
        module: The module's name in the mutation table ("prices"), which keys survive a move of the file.
        path: The file, relative to the repository root.
        line: The first line changed (1-based).
        qualname: The enclosing class and function ("PriceTable.lookup"), or "<module>".
        operator: The kind of change (see the module docstring).
        original: The source text replaced, on one line.
        replacement: The text that replaced it.
        ordinal: 1, or more where an earlier mutant in the same function has the same original and replacement.
        start: The byte offset where the change starts in the UTF-8 source.
        end: The byte offset where it ends.
        inserted: The exact text put there (the replacement, parenthesised where it is an operation).
        statement_line: The first line of the statement the change is in (where coverage records a multi-line
            statement as run).
    """

    module: str
    path: str
    line: int
    qualname: str
    operator: str
    original: str
    replacement: str
    ordinal: int
    start: int
    end: int
    inserted: str
    statement_line: int

    @property
    def key(self) -> str:
        """A name for the mutant that does not change when lines move: what explanations are filed under."""
        suffix = f" #{self.ordinal}" if self.ordinal > 1 else ""
        return f"{self.module}::{self.qualname}: {self.original} -> {self.replacement}{suffix}"

    def apply(self, source: bytes) -> bytes:
        """The module's source with this one change."""
        return source[: self.start] + self.inserted.encode() + source[self.end :]


@dataclass(frozen=True)
class _Change:
    node: ast.AST
    operator: str
    replacement: str
    qualname: str
    statement_line: int


class _Finder(ast.NodeVisitor):
    """Walks a module and lists every change the operators allow, with the enclosing qualified name."""

    def __init__(self) -> None:
        self.changes: list[_Change] = []
        self._scope: list[str] = []
        self._statement = 0

    def visit(self, node: ast.AST) -> None:
        if not isinstance(node, ast.stmt):
            super().visit(node)
            return
        outer, self._statement = self._statement, node.lineno
        try:
            super().visit(node)
        finally:
            self._statement = outer

    @property
    def qualname(self) -> str:
        return ".".join(self._scope) or "<module>"

    def _add(self, node: ast.AST, operator: str, replacement: ast.AST | str) -> None:
        text = replacement if isinstance(replacement, str) else ast.unparse(replacement)
        self.changes.append(_Change(node, operator, text, self.qualname, self._statement or node.lineno))  # type: ignore[attr-defined]

    # -- what is never mutated -----------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        return

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        return

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        self._condition(node.test)
        self.generic_visit(node)

    def _visit_scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self._scope.append(node.name)
        for decorator in node.decorator_list:
            self.visit(decorator)
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                self.visit(base)
        else:
            self._visit_arguments(node.args)
        for statement in _without_docstring(node.body):
            self.visit(statement)
        self._scope.pop()

    visit_FunctionDef = _visit_scope
    visit_AsyncFunctionDef = _visit_scope
    visit_ClassDef = _visit_scope

    def _visit_arguments(self, arguments: ast.arguments) -> None:
        # Defaults only: annotations are never evaluated (`from __future__ import annotations`).
        for default in [*arguments.defaults, *arguments.kw_defaults]:
            if default is not None:
                self.visit(default)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_Module(self, node: ast.Module) -> None:
        for statement in _without_docstring(node.body):
            self.visit(statement)

    # -- expressions ---------------------------------------------------------------------------------------

    def visit_Compare(self, node: ast.Compare) -> None:
        for index, op in enumerate(node.ops):
            swapped = COMPARE.get(type(op))
            if swapped is not None:
                ops = [*node.ops[:index], swapped(), *node.ops[index + 1 :]]
                self._add(node, "compare", ast.Compare(node.left, ops, node.comparators))
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        swapped = ARITHMETIC.get(type(node.op))
        if swapped is not None and not _is_string(node):
            self._add(node, "arithmetic", ast.BinOp(node.left, swapped(), node.right))
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self._add(node, "boolean", ast.BoolOp(other, node.values))
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self._add(node, "boolean", node.operand)
        elif isinstance(node.op, ast.USub) and not isinstance(node.operand, ast.Constant):
            self._add(node, "arithmetic", node.operand)
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._condition(node.test)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._condition(node.test)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        for condition in node.ifs:
            self._condition(condition)
        self.generic_visit(node)

    def _condition(self, test: ast.expr) -> None:
        if not isinstance(test, ast.Compare | ast.BoolOp | ast.UnaryOp | ast.Constant):
            self._add(test, "boolean", ast.UnaryOp(ast.Not(), test))

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self._add(node, "constant", repr(not value))
        elif isinstance(value, int | float):
            self._add(node, "constant", repr(value + 1))

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name in CONVERSIONS and len(node.args) == 1 and not node.keywords:
            argument = node.args[0]
            if not isinstance(argument, ast.Constant | ast.Starred):  # Decimal(0) → 0 changes nothing
                self._add(node, "call", argument)
        elif name in ("min", "max"):
            other = "max" if name == "min" else "min"
            self._add(node, "call", ast.Call(ast.Name(other), node.args, node.keywords))
        self.generic_visit(node)

    # -- statements ----------------------------------------------------------------------------------------

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Call | ast.Await):
            self._add(node, "statement", "pass")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._add(node, "statement", "pass")
        swapped = ARITHMETIC.get(type(node.op))
        if swapped is not None:
            self._add(node, "arithmetic", ast.AugAssign(node.target, swapped(), node.value))
        self.visit(node.value)

    def visit_Assign(self, node: ast.Assign) -> None:
        if all(isinstance(target, ast.Attribute | ast.Subscript) for target in node.targets):
            self._add(node, "statement", "pass")
        self.visit(node.value)

    def visit_Raise(self, node: ast.Raise) -> None:
        self._add(node, "statement", "pass")
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self._add(node, "statement", "return None")
        self.generic_visit(node)

    def visit_Break(self, node: ast.Break) -> None:
        self._add(node, "statement", "continue")

    def visit_Continue(self, node: ast.Continue) -> None:
        self._add(node, "statement", "break")


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return body[1:]
    return body


def _is_string(node: ast.BinOp) -> bool:
    """`"a" + "b"` and `"%s" % x`: string building, whose mutants are type errors or message changes."""
    return any(
        isinstance(side, ast.Constant | ast.JoinedStr) and isinstance(getattr(side, "value", ""), str)
        for side in (node.left, node.right)
    )


def _line_starts(source: bytes) -> list[int]:
    starts = [0]
    for index, byte in enumerate(source):
        if byte == 0x0A:
            starts.append(index + 1)
    return starts


def _one_line(text: str, limit: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def mutants(module: str, path: str, source: bytes, scopes: tuple[str, ...] = ()) -> Iterator[Mutant]:
    """Every mutant of `source` (the file `path`, named `module` in the table), in source order.

    Args:
        module: The module's name in the mutation table.
        path: The file, relative to the repository root (for reports).
        source: The file's bytes.
        scopes: When given, only code inside these top-level classes or functions is mutated.
    """
    tree = ast.parse(source)
    finder = _Finder()
    finder.visit(tree)
    starts = _line_starts(source)
    seen: dict[tuple[str, str, str], int] = {}
    produced: set[bytes] = set()
    changes = sorted(finder.changes, key=lambda c: (c.node.lineno, c.node.col_offset, c.operator, c.replacement))  # type: ignore[attr-defined]
    for change in changes:
        node = change.node
        if scopes and change.qualname.split(".")[0] not in scopes:
            continue
        start = starts[node.lineno - 1] + node.col_offset  # type: ignore[attr-defined]
        end = starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[attr-defined]
        original = source[start:end].decode()
        replacement = change.replacement
        lines = original.count("\n")
        if isinstance(node, ast.expr):
            if lines or not isinstance(node, ast.Constant | ast.Name | ast.Attribute | ast.Call):
                # Parenthesised, the change keeps its place whatever surrounds it, and may span the lines the
                # original did: every later line keeps its number.
                replacement = f"({replacement}{chr(10) * lines})"
        else:
            replacement += "\n" * lines
        mutated = source[:start] + replacement.encode() + source[end:]
        if mutated in produced or not _compiles(mutated):
            continue
        produced.add(mutated)
        shown = (_one_line(original), _one_line(change.replacement))
        same = (change.qualname, *shown)
        ordinal = seen[same] = seen.get(same, 0) + 1
        line = node.lineno  # type: ignore[attr-defined]
        yield Mutant(
            module, path, line, change.qualname, change.operator, *shown, ordinal, start, end, replacement,
            change.statement_line,
        )  # fmt: skip


def _compiles(source: bytes) -> bool:
    try:
        compile(source, "<mutant>", "exec", dont_inherit=True)
    except SyntaxError:
        return False
    return True

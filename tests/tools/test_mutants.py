"""The mutation run's mutants (tools/mutants.py): one change each, at the right place, never in what is not run."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parent.parent.parent / "tools"


def load(name: str) -> ModuleType:
    """A script's module from tools/ (not a package), under a name no other module has."""
    spec = importlib.util.spec_from_file_location(f"llmclient_tools_{name}", TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


mutants = load("mutants")

SOURCE = '''"""A module: its docstring is never mutated."""
from __future__ import annotations

from decimal import Decimal

if TYPE_CHECKING:
    from x import Y


class Price:
    """Nor a class's."""

    rate: Decimal | None = None
    currency = "USD"

    def total(self, tokens: int, value: float = 0.5) -> Decimal:
        if tokens < 0 or not self.rate:
            raise ValueError(f"{tokens} is negative")
        self.seen += 1
        return Decimal(str(value)) * tokens  # µ$ in a comment: offsets are bytes

    def spread(self) -> bool:
        raise ValueError(
            "over two lines"
        )
        return self.total(
            1
        ) > max(1,
                2)
'''


def changes(source: str = SOURCE) -> dict[str, list[tuple[int, str]]]:
    found = list(mutants.mutants("m", "m.py", source.encode()))
    by_change: dict[str, list[tuple[int, str]]] = {}
    for mutant in found:
        by_change.setdefault(f"{mutant.original} -> {mutant.replacement}", []).append((mutant.line, mutant.qualname))
    return by_change


def test_each_operator_makes_its_change_where_the_code_is() -> None:
    found = changes()
    assert found["str(value) -> value"] == [(20, "Price.total")]  # Decimal(str(x)) → Decimal(x)
    assert found["tokens < 0 -> tokens <= 0"] == [(17, "Price.total")]
    assert found["tokens < 0 or not self.rate -> tokens < 0 and (not self.rate)"] == [(17, "Price.total")]
    assert found["not self.rate -> self.rate"] == [(17, "Price.total")]
    assert found["0.5 -> 1.5"] == [(16, "Price.total")]  # a default: evaluated at import
    assert found['raise ValueError(f"{tokens} is negative") -> pass'] == [(18, "Price.total")]
    assert found["self.seen += 1 -> self.seen -= 1"] == [(19, "Price.total")]
    assert found["return Decimal(str(value)) * tokens -> return None"] == [(20, "Price.total")]
    assert found["Decimal(str(value)) * tokens -> Decimal(str(value)) / tokens"] == [(20, "Price.total")]


def test_docstrings_annotations_imports_strings_and_type_checking_blocks_are_left_alone() -> None:
    originals = " ".join(changes())
    # `Decimal | None` is an annotation (never evaluated), not an `|` to flip.
    for untouched in ("docstring", "Decimal | None", "TYPE_CHECKING", "from x", '"USD"', "is negative ->"):
        assert untouched not in originals, untouched


def test_a_mutant_changes_only_its_own_text_and_keeps_every_line_in_place() -> None:
    source = SOURCE.encode()
    for mutant in mutants.mutants("m", "m.py", source):
        mutated = mutant.apply(source)
        ast.parse(mutated)
        assert mutated != source
        assert mutated.count(b"\n") == source.count(b"\n")
        assert mutated[: mutant.start] == source[: mutant.start]
        assert mutated.endswith(source[mutant.end :])
        assert mutant.key.startswith(f"m::{mutant.qualname}: ")


def test_scopes_limit_the_mutants_to_some_classes() -> None:
    source = SOURCE.encode() + b"\n\ndef other(x: int) -> bool:\n    return x > 1\n"
    assert any(m.qualname == "other" for m in mutants.mutants("m", "m.py", source))
    assert {m.qualname.split(".")[0] for m in mutants.mutants("m", "m.py", source, ("Price",))} == {"Price"}


def test_a_change_inside_a_multi_line_statement_knows_where_the_statement_starts() -> None:
    # Coverage records a multi-line statement as run on its first line: tests are selected from there.
    [inner] = [m for m in mutants.mutants("m", "m.py", SOURCE.encode()) if m.key == "m::Price.spread: 1 -> 2"]
    assert (inner.line, inner.statement_line) == (27, 26)

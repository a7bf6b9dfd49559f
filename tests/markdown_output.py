"""A docs example shows what it prints: the `#>` lines under each `print(...)` are checked on every test run.

A pytest plugin for the fences pytest-markdown-docs runs from the `.md` files (as pydantic's docs do with
pytest-examples):

```python
print(1 + 1)
#> 2
```

The fence's globals get a `print` that records what each call wrote (by the fence line that called it) instead of
writing to the terminal. After the fence ran, each statement that calls `print` must be followed directly by `#>`
lines holding exactly that text, one per printed line (trailing spaces aside); a print with none, or lines that
differ, fails the test with a diff. `LLMCLIENT_UPDATE_DOCS=1` rewrites the `#>` lines in the `.md` files instead,
at the end of the session (so earlier rewrites do not move the lines later fences were collected at).
"""

from __future__ import annotations

import ast
import builtins
import difflib
import os
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

UPDATE = "LLMCLIENT_UPDATE_DOCS"
WIDTH = 88  # the columns a code block shows on the docs site (tests/test_docs_match.py holds every fence to it)


@dataclass
class _Recording:
    filename: str
    texts: list[tuple[int, str]] = field(default_factory=list)  # (fence line, in the file's numbering; text), in order


_recording: _Recording | None = None
# file -> {a statement's last line: (its first line, how many #> lines are there, the lines to show)}
_edits: dict[Path, dict[int, tuple[int, int, list[str]]]] = {}


def _print(
    *values: object, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    recording = _recording
    if recording is None or (file is not None and file is not sys.stdout):
        builtins.print(*values, sep=sep, end=end, file=file, flush=flush)
        return
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename != recording.filename:
        frame = frame.f_back  # a print inside a function the fence defined and a library called
    if frame is None:
        builtins.print(*values, sep=sep, end=end, file=file, flush=flush)
        return
    text = (" " if sep is None else sep).join(map(str, values)) + ("\n" if end is None else end)
    recording.texts.append((frame.f_lineno, text))


@pytest.hookimpl
def pytest_markdown_docs_globals() -> dict[str, Any]:
    return {"print": _print}


def _print_statements(source: str) -> Iterator[ast.stmt]:
    """The simple statements that call `print`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.stmt) and not any(isinstance(child, ast.stmt) for child in ast.iter_child_nodes(node)):
            calls = (sub for sub in ast.walk(node) if isinstance(sub, ast.Call))
            if any(isinstance(call.func, ast.Name) and call.func.id == "print" for call in calls):
                yield node


def _shown(lines: list[str], after: int) -> list[str]:
    """The `#>` lines directly beneath line `after` (1-based), without their marker."""
    shown = []
    for line in lines[after:]:
        stripped = line.strip()
        if stripped != "#>" and not stripped.startswith("#> "):
            break
        shown.append(stripped[3:].rstrip())
    return shown


def _lines(text: str, width: int) -> list[str]:
    """The printed text as `#>` lines: a line wider than the page is wrapped at spaces, as the page would."""
    lines = []
    for line in text.removesuffix("\n").split("\n") if text else []:
        wrapped = textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False)
        lines += wrapped if len(line) > width and len(wrapped) > 1 else [line.rstrip()]
    return lines


def _printed(statements: list[ast.stmt], texts: list[tuple[int, str]]) -> dict[int, str]:
    """What each statement printed, by index: a line belongs to the print that ended it (`print()` after a loop of
    `print(chunk, end="")` shows the streamed line), and an unfinished last line to the last print."""
    owner = {line: i for i, node in enumerate(statements) for line in range(node.lineno, (node.end_lineno or 0) + 1)}
    printed: dict[int, str] = {}
    pending, last = "", None
    for line, text in texts:
        last = owner.get(line, last)
        if last is None:
            continue
        pending += text
        if "\n" in pending:
            done, pending = pending.rsplit("\n", 1)
            printed[last] = printed.get(last, "") + done + "\n"
    if pending and last is not None:
        printed[last] = printed.get(last, "") + pending
    return printed


Differ = list[tuple[int, int, list[str], list[str]]]


def check(source: str, first_line: int, texts: list[tuple[int, str]]) -> Differ:
    """Each print statement from `first_line` on whose `#>` lines differ from what it printed.

    Returns (the statement's first and last line, the lines shown, the lines printed) for each, in order.
    """
    lines = source.splitlines()
    statements = sorted(_print_statements(source), key=lambda node: node.lineno)
    printed = _printed(statements, texts)
    differ = []
    for i, statement in enumerate(statements):
        end = statement.end_lineno or statement.lineno
        if statement.lineno < first_line:
            continue  # a `continuation` fence runs the fences before it again; they were checked there
        width = WIDTH - statement.col_offset - len("#> ")
        shown, wrote = _shown(lines, end), _lines(printed.get(i, ""), width)
        if shown != wrote:
            differ.append((statement.lineno, end, shown, wrote))
    return differ


def _message(path: Path, differ: Differ) -> str:
    parts = [f"what the example prints differs from its #> lines (or {UPDATE}=1 to rewrite them):"]
    for _, end, shown, printed in differ:
        diff = difflib.unified_diff(shown, printed, "shown", "printed", lineterm="", n=2)
        parts.append(f"{path.name}, the print ending on line {end}:\n" + "\n".join(diff))
    return "\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    definition = getattr(item, "test_definition", None)
    if definition is None or Path(definition.source_path).suffix != ".md":
        return (yield)
    global _recording
    _recording = recording = _Recording(str(definition.source_path))
    try:
        result = yield
    finally:
        _recording = None
    differ = check(definition.source, definition.start_line + 1, recording.texts)
    if differ and os.environ.get(UPDATE):
        edits = _edits.setdefault(Path(definition.source_path), {})
        for first, end, shown, printed in differ:
            edits[end] = (first, len(shown), printed)
    elif differ:
        raise AssertionError(_message(Path(definition.source_path), differ))
    return result


def rewrite(path: Path, edits: dict[int, tuple[int, int, list[str]]]) -> None:
    """Put the printed lines beneath each statement's last line in place of the `#>` lines there."""
    lines = path.read_text(encoding="utf-8").split("\n")
    for end, (first, count, printed) in sorted(edits.items(), reverse=True):
        statement = lines[first - 1]
        indent = statement[: len(statement) - len(statement.lstrip())]
        lines[end : end + count] = [f"{indent}#> {line}".rstrip() for line in printed]
    path.write_text("\n".join(lines), encoding="utf-8")


def pytest_sessionfinish(session: pytest.Session) -> None:
    for path, edits in _edits.items():
        rewrite(path, edits)
    _edits.clear()

"""Parameter descriptions from Google, NumPy and Sphinx style docstrings, for tool schemas (`llmclient.tools`)."""

from __future__ import annotations

import inspect
import re

_GOOGLE_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?)\s*:\s*$")
_NUMPY_UNDERLINE = re.compile(r"^-{3,}\s*$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description and per-parameter descriptions of a Google, NumPy or Sphinx style docstring.

    The description is the text before the first section (paragraphs joined with a space, as LangChain does).
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        is_numpy = index + 1 < len(lines) and _NUMPY_UNDERLINE.match(lines[index + 1].strip()) and stripped
        if _GOOGLE_SECTION.match(stripped) or is_numpy or _SPHINX_PARAM.match(stripped) or stripped.startswith(":"):
            break
        description.append(line)
        index += 1
    rest = lines[index:]
    params.update(_google_params(rest))
    params.update(_numpy_params(rest))
    params.update(_sphinx_params(rest))
    paragraphs = "\n".join(description).strip().split("\n\n")
    return " ".join(paragraph.strip() for paragraph in paragraphs if paragraph.strip()), params


def _google_params(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    inside = False
    current: str | None = None
    indent: int | None = None
    for line in lines:
        stripped = line.strip()
        if re.match(r"^(Args|Arguments)\s*:\s*$", stripped):
            inside, current, indent = True, None, None
            continue
        if not inside:
            continue
        if stripped and not line.startswith((" ", "\t")):
            break  # the next section
        if not stripped:
            continue
        line_indent = len(line) - len(line.lstrip())
        match = re.match(r"^\*{0,2}(\w+)\s*(?:\(.*?\))?\s*:\s*(.*)$", stripped)
        if match and (indent is None or line_indent <= indent):
            indent = line_indent
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current is not None:
            params[current] = f"{params[current]} {stripped}".strip()
    return params


def _numpy_params(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for start in range(len(lines) - 1):
        if lines[start].strip() in ("Parameters", "Args", "Arguments") and _NUMPY_UNDERLINE.match(
            lines[start + 1].strip()
        ):
            current: str | None = None
            for line in lines[start + 2 :]:
                if not line.strip():
                    continue
                if not line.startswith((" ", "\t")):
                    if _NUMPY_UNDERLINE.match(line.strip()):
                        break
                    current = line.split(":")[0].strip()
                    if current in params or " " in current:  # a new section header follows
                        break
                    params[current] = ""
                elif current is not None:
                    params[current] = f"{params[current]} {line.strip()}".strip()
            if params and "" in params.values():
                params = {k: v for k, v in params.items() if v}
            break
    return params


def _sphinx_params(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        match = _SPHINX_PARAM.match(stripped)
        if match:
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif stripped.startswith(":"):
            current = None
        elif current is not None and stripped:
            params[current] = f"{params[current]} {stripped}"
    return params

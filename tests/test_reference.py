"""The API reference (docs/reference.md, rendered by mkdocstrings) shows every public name, and every public method
of Client and SyncClient with each of its parameters.

The check reads the built page: the site is built once here (`mkdocs build --strict`, about 3 s), because what
the reader sees depends on griffe's static reading of the source (SyncClient's methods are derived at import and
only appear through tools/griffe_sync.py), which a check of reference.md's directives against `dir()` would miss.
"""

from __future__ import annotations

import html
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import llmclient
from llmclient import Client, SyncClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    site = tmp_path_factory.mktemp("site")
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return (site / "reference" / "index.html").read_text(encoding="utf-8")


def _section(page: str, identifier: str) -> str:
    """The rendered text of one object's entry: from its anchor to the next anchor at the same depth or above."""
    start = page.index(f'id="{identifier}"')
    depth = identifier.count(".")
    following = (
        match.start()
        for match in re.finditer(r'id="(llmclient\.[\w.]+)"', page[start + 1 :])
        if match.group(1).count(".") <= depth
    )
    end = next(following, len(page) - start - 1) + start + 1
    return html.unescape(re.sub(r"<[^>]+>", "", page[start:end]))


def _public_methods(cls: type) -> list[str]:
    return [name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cls", [Client, SyncClient], ids=lambda cls: cls.__name__)
def test_every_public_method_is_shown_with_its_parameters(reference: str, cls: type) -> None:
    assert _public_methods(cls), cls
    for name in _public_methods(cls):
        identifier = f"llmclient.{cls.__name__}.{name}"
        assert f'id="{identifier}"' in reference, f"{identifier} is missing from the API reference"
        shown = _section(reference, identifier)
        for parameter in list(inspect.signature(getattr(cls, name)).parameters)[1:]:  # after self
            assert re.search(rf"\b{parameter}\b", shown), f"{identifier}: parameter {parameter} is not shown"


@pytest.mark.timeout(300)
def test_every_public_name_has_an_entry(reference: str) -> None:
    shown = {identifier.rsplit(".", 1)[-1] for identifier in re.findall(r'id="(llmclient\.[\w.]+)"', reference)}
    assert [name for name in llmclient.__all__ if not name.startswith("__") and name not in shown] == []

"""The docs say what the code does: the places a newcomer found them contradicting it, pinned."""

from __future__ import annotations

import re
from pathlib import Path

import llmclient
from llmclient import errors
from llmclient.drivers import known_providers

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _tree(text: str) -> str:
    start = text.index("```\nLLMClientError") + 4
    return text[start : text.index("```", start)]


def test_the_errors_page_draws_the_tree_of_the_errors_module() -> None:
    assert errors.__doc__ is not None
    page = (DOCS / "errors.md").read_text()
    assert _tree(page) == _tree(errors.__doc__)
    assert "nothing raises them yet" not in page
    exported = {name for name in llmclient.__all__ if name.endswith("Error")}
    drawn = set(re.findall(r"\b(\w+Error)\b", _tree(page)))
    assert exported <= drawn


def test_the_known_providers_sentence_names_every_built_in_driver() -> None:
    sentence = next(
        line for line in (DOCS / "quickstart.md").read_text().split("\n\n") if "known providers are" in line
    )
    assert set(re.findall(r"`([a-z-]+)`", sentence)) >= set(known_providers())


def test_the_counting_table_has_a_row_per_built_in_driver() -> None:
    page = (DOCS / "counting.md").read_text()
    table = page[page.index("| provider | tokenizer | exact? |") :].split("\n\n")[0]
    assert set(re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.MULTILINE)) == set(known_providers())


def test_make_demo_is_described_as_what_it_runs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "examples/serve_and_run.py" in makefile.split("demo-server:")[1].split("\n\n")[0]
    for path in [
        DOCS / "quickstart.md",
        DOCS / "providers" / "openai-compatible.md",
        ROOT / "examples" / "quickstart.py",
    ]:
        for line in path.read_text().splitlines():
            if "server" in line and "make demo" in line:
                assert "make demo-server" in line, f"{path.name}: {line}"


def test_no_offline_count_is_shown_as_exact_for_an_encoding_that_does_not_ship() -> None:
    # An "exact, <encoding>" count in the docs must be reproducible offline: o200k_base and cl100k_base ship with
    # llmclient itself (llmclient/tokens/data); no other encoding does.
    from llmclient import tokens

    shipped = {"o200k_base": "gpt-4o", "cl100k_base": "gpt-4"}
    assert all(tokens.count_text("x", model).exact for model in shipped.values())
    for page in DOCS.rglob("*.md"):
        for encoding in re.findall(r"exact, (\w+_base)", page.read_text()):
            assert encoding in shipped, (page.name, encoding)


def test_the_networking_page_names_the_default_backend_and_every_http_option() -> None:
    from dataclasses import fields

    from llmclient import HTTPOptions

    page = (DOCS / "networking.md").read_text()
    default = HTTPOptions().backend
    assert f"- **{default}** (the default)" in page
    assert "aiohttp by default" not in page
    table = page[page.index("| field | default | meaning |") :].split("\n\n")[0]
    rows = {row.split("|")[1].strip(" `"): row.split("|")[2].strip(' `"') for row in table.splitlines()[2:]}
    assert rows == {field.name: str(getattr(HTTPOptions(), field.name)) for field in fields(HTTPOptions)}

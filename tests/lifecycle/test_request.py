"""Building requests: the parameters table in the docs is generated from the one declaration."""

from __future__ import annotations

import re
from pathlib import Path

from llmclient.lifecycle.request import parameters_table

QUICKSTART = Path(__file__).parents[2] / "docs" / "quickstart.md"


def test_the_docs_parameters_table_is_the_generated_one() -> None:
    text = QUICKSTART.read_text(encoding="utf-8")
    found = re.search(r"<!-- parameters-table:start -->\n(.*?)\n<!-- parameters-table:end -->", text, re.DOTALL)
    assert found is not None
    providers = found.group(1).splitlines()[0].strip("| ").split(" | ")[2:]
    assert found.group(1) == parameters_table(providers)
    assert providers == ["openai", "deepseek", "openai-compatible", "ollama", "transformers", "llamacpp", "fake"]

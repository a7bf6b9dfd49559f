"""Extract the Chat Completions subset of OpenAI's OpenAPI spec into chat_completions.json (and the spec's example
responses into tests/fixtures/openai/spec/), so the conformance tests check against what OpenAI publishes.

Run by hand when the spec moves (nothing here runs in the test suite):

    git clone https://github.com/openai/openai-openapi && cd openai-openapi && git log -1 --format=%H
    python tests/conformance/openai/extract.py path/to/openai-openapi/openapi.json <commit> <commit date>

then update SOURCE.md with the commit, and review the diff of the fixtures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
FIXTURES = HERE.parent.parent / "fixtures" / "openai" / "spec"
ROOTS = ("CreateChatCompletionRequest", "CreateChatCompletionResponse", "CreateChatCompletionStreamResponse")


def references(node: Any) -> set[str]:
    """The component schemas `node` refers to directly."""
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def closure(schemas: dict[str, Any], roots: tuple[str, ...]) -> dict[str, Any]:
    """The roots and every schema they reach, without OpenAI's documentation-only `x-oaiMeta`."""
    wanted, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo += sorted(references(schemas[name]) - wanted)
    return {name: {k: v for k, v in schemas[name].items() if k != "x-oaiMeta"} for name in sorted(wanted)}


def main(spec_path: str, commit: str, date: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    subset = {
        "$comment": f"A subset of openai/openai-openapi openapi.json at {commit} ({date}); MIT, see LICENSE.",
        "openapi": spec["openapi"],
        "info": spec["info"],
        "components": {"schemas": closure(spec["components"]["schemas"], ROOTS)},
    }
    (HERE / "chat_completions.json").write_text(json.dumps(subset, indent=1, sort_keys=True) + "\n")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    examples = spec["paths"]["/chat/completions"]["post"]["x-oaiMeta"]["examples"]
    for example in examples:
        name = example["title"].lower().replace(" ", "_")
        suffix = "txt" if name == "streaming" else "json"  # the stream is shown as chunks, not SSE
        (FIXTURES / f"{name}.{suffix}").write_text(example["response"].strip() + "\n")
    print(f"{len(subset['components']['schemas'])} schemas, {len(examples)} examples")


if __name__ == "__main__":
    main(*sys.argv[1:4])

"""The providers' published request schemas, and the check every captured request body goes through.

- OpenAI: the Chat Completions subset of OpenAI's own OpenAPI spec (openai/chat_completions.json, see
  openai/SOURCE.md). The spec leaves objects open (a field it does not know is not an error there), and OpenAI's
  API answers an unknown field with 400 `unrecognized_request_argument`; so every object of the request is closed
  here (`additionalProperties: false`; `unevaluatedProperties: false` on the composed request itself), and a new
  field the spec lacks fails the check.
- DeepSeek: deepseek/chat_request.schema.json, written from DeepSeek's API reference and guides (sources inside).
- Ollama: ollama/chat_request.schema.json, written from Ollama's Go types and docs (sources inside).
- Anthropic: anthropic/chat_request.schema.json, written from Anthropic's API reference (anthropic/SOURCE.md).
- Gemini: gemini/chat_request.schema.json, written from Google's generative_service.proto and content.proto and
  the API reference (gemini/SOURCE.md).

`problems(method, url, body)` says what is wrong with a request to one of them (nothing for anything else), and
tests/conftest.py runs it on every request the tests send through httpx (respx mocks and `httpx.MockTransport`).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

HERE = Path(__file__).parent
OPENAI_HOSTS = frozenset({"api.openai.com"})
DEEPSEEK_HOSTS = frozenset({"api.deepseek.com"})
OLLAMA_CHAT = "/api/chat"
ANTHROPIC_HOSTS = frozenset({"api.anthropic.com"})
GEMINI_HOSTS = frozenset({"generativelanguage.googleapis.com"})
FOUND = pytest.StashKey[list[str]]()
"""Where tests/conftest.py keeps what the check found in a test's requests (`request.node.stash[FOUND]`)."""


def _closed(node: Any, *, composed: bool = False) -> Any:
    """`node` with every object that lists its properties closed to others (see the module doc), except the
    members of an `allOf` (`composed`: closing one would refuse its siblings' properties) and free-form objects
    (those that say what their `additionalProperties` are)."""
    if isinstance(node, list):
        return [_closed(item, composed=composed) for item in node]
    if not isinstance(node, dict):
        return node
    closed = {key: _closed(value, composed=key == "allOf") for key, value in node.items()}
    if "properties" in closed and "additionalProperties" not in closed and not composed:
        closed["additionalProperties"] = False
    return closed


@cache
def openai_schema(closed: bool = True) -> dict[str, Any]:
    """The vendored OpenAPI subset, as one JSON Schema document (closed for requests, as published for replies)."""
    document = json.loads((HERE / "openai" / "chat_completions.json").read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    if closed:
        # Named schemas the spec composes with allOf stay open at their top level, as allOf members do.
        composed = frozenset({"CreateModelResponseProperties", "ModelResponseProperties"})
        schemas = {name: _closed(schema, composed=name in composed) for name, schema in schemas.items()}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": {"schemas": schemas}}


@cache
def _validator(kind: str) -> Any:
    from jsonschema import Draft202012Validator  # a test dependency, imported when a check first runs

    if kind == "openai-request":
        document = copy.deepcopy(openai_schema(closed=True))
        document |= {"$ref": "#/components/schemas/CreateChatCompletionRequest", "unevaluatedProperties": False}
    elif kind.startswith("openai-"):
        document = copy.deepcopy(openai_schema(closed=False))
        document["$ref"] = "#/components/schemas/" + kind.removeprefix("openai-")
    else:
        document = json.loads((HERE / kind / "chat_request.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document)


def errors(kind: str, instance: Any) -> list[str]:
    """Where `instance` breaks the schema `kind` ("openai-request", "openai-CreateChatCompletionResponse",
    "deepseek", "ollama"), one line each; empty when it conforms."""
    found = sorted(_validator(kind).iter_errors(instance), key=lambda error: list(error.absolute_path))
    return [f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message[:300]}" for error in found]


def kind_of(method: str, url: str) -> str | None:
    """Which published schema a request is checked against, by where it goes (None: not checked)."""
    parts = urlsplit(url)
    if method != "POST":
        return None
    if parts.path.endswith("/chat/completions"):
        if parts.hostname in OPENAI_HOSTS:
            return "openai-request"
        if parts.hostname in DEEPSEEK_HOSTS:
            return "deepseek"
    if parts.path == OLLAMA_CHAT:
        return "ollama"
    if parts.hostname in ANTHROPIC_HOSTS and parts.path in ("/v1/messages", "/v1/messages/count_tokens"):
        return "anthropic"
    if parts.hostname in GEMINI_HOSTS and parts.path.endswith((":generateContent", ":streamGenerateContent")):
        return "gemini"
    return None


def problems(method: str, url: str, content: bytes) -> list[str]:
    """What is wrong with a request body to OpenAI's, DeepSeek's, Ollama's, Anthropic's or Gemini's chat endpoint
    (empty: nothing)."""
    kind = kind_of(method, url)
    if kind is None:
        return []
    try:
        body = json.loads(content)
    except ValueError as exc:
        return [f"the body is not JSON: {exc}"]
    return [f"{kind} {url}: {line}" for line in errors(kind, body)]

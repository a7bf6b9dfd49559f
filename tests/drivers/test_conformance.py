"""The driver conformance suite (llmclient.testing) against every built-in HTTP driver and its scripted wire, and
against the fake; llama.cpp and transformers run it in their own modules (tests/drivers/test_llamacpp.py,
test_hf.py), with their loaded models.

Each scripted server checks every model request against its provider's published request schema
(tests/conformance/schemas.py), so a case passes only if the driver sends what the provider documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from conformance.schemas import errors
from llmclient.testing import Request, ScriptedServer, Target, Wire, conformance_cases, not_applicable
from llmclient.testing.wires import AnthropicWire, DeepSeekWire, GeminiWire, OllamaWire, OpenAIWire

KEY = "sk-conformance-0123456789"


@dataclass(frozen=True)
class Scripted:
    """A built-in HTTP driver, its wire, how it points at the server, and its provider's request schema."""

    model: str
    wire: Callable[[], Wire]
    options: Callable[[str], dict[str, Any]]
    schema: str
    path: str

    def check(self, request: Request) -> list[str]:
        return errors(self.schema, request.json()) if request.path.endswith(self.path) else []


SCRIPTED = {
    "openai": Scripted(
        "gpt-conformance",
        OpenAIWire,
        lambda url: {"base_url": f"{url}/v1", "api_key": KEY},
        "openai-request",
        "/chat/completions",
    ),
    "openai-compatible": Scripted(
        "served-model", OpenAIWire, lambda url: {"base_url": f"{url}/v1"}, "openai-request", "/chat/completions"
    ),
    "deepseek": Scripted(
        "deepseek-flash", DeepSeekWire, lambda url: {"base_url": url, "api_key": KEY}, "deepseek", "/chat/completions"
    ),
    "ollama": Scripted("qwen2:1.5b", OllamaWire, lambda url: {"host": url}, "ollama", "/api/chat"),
    "anthropic": Scripted(
        "claude-sonnet-5-5", AnthropicWire, lambda url: {"base_url": url, "api_key": KEY}, "anthropic", "/v1/messages"
    ),
    "gemini": Scripted(
        "gemini-3.8-flash",
        GeminiWire,
        lambda url: {"base_url": f"{url}/v1beta", "api_key": KEY},
        "gemini",
        "Content",  # :generateContent, :stream…
    ),
}


def target(provider: str, server: ScriptedServer) -> Target:
    spec = SCRIPTED[provider]
    return Target(provider, spec.model, spec.options(server.url), server)


def scripted_cases() -> Iterator[Any]:
    for provider, spec in SCRIPTED.items():
        for case in conformance_cases(target(provider, ScriptedServer(spec.wire()))):
            yield pytest.param(provider, case, id=f"{provider}-{case}")


@pytest.mark.parametrize(("provider", "case"), list(scripted_cases()))
async def test_scripted_wire(provider: str, case: Any) -> None:
    spec = SCRIPTED[provider]
    async with ScriptedServer(spec.wire(), check=spec.check) as server:
        await case(target(provider, server))
    assert server.problems == []


FAKE = Target("fake", "echo")


@pytest.mark.parametrize("case", conformance_cases(FAKE), ids=str)
async def test_fake(case: Any) -> None:
    await case(FAKE)


def test_every_case_applies_to_the_http_drivers_but_where_their_wire_cannot_say() -> None:
    for provider, spec in SCRIPTED.items():
        skipped = not_applicable(target(provider, ScriptedServer(spec.wire())))
        scripted_only = {name: reason for name, reason in skipped.items() if not name.startswith("local_")}
        if provider in ("anthropic", "gemini"):  # what they cannot report is scripted as 0
            assert scripted_only == {}
        elif provider == "ollama":  # Ollama's Metrics (api/types.go) have prompt and output counts only
            assert scripted_only == {"usage_details": "its wire reports no cached, cache-write or reasoning tokens"}
        else:
            assert scripted_only == {}, provider


def test_an_in_process_engine_runs_the_cases_that_need_no_script() -> None:
    assert [case.name for case in conformance_cases(FAKE)] == [
        "local_chat",
        "local_stream",
        "local_cancellation",
        "local_budgets",
        "local_ledger",
    ]
    reasons = set(not_applicable(FAKE).values())
    assert reasons == {"an in-process engine has no server to script (no wire, statuses or error bodies)"}

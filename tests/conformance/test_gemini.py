"""The Gemini driver against Google's request definitions and the thought-signature rule of function calling."""

from __future__ import annotations

import httpx
import pytest

from conformance.gemini_server import MISSING, SignatureRule
from conformance.schemas import FOUND, errors
from llmclient import Client
from llmclient.testing import Reply, ScriptedCall, ScriptedServer, ScriptedUsage
from llmclient.testing.wires import GeminiWire

KEY = "AIzaSy-loopback-0123456789"
SIGNATURE = "Q2hlY2tGbGlnaHRTaWduYXR1cmVB"


def check_flight(flight: str) -> str:
    """The status of a flight."""
    return f"{flight}: delayed 40 minutes"


@pytest.mark.parametrize("with_ids", [True, False])
async def test_a_function_calling_loop_sends_the_signature_back(with_ids: bool) -> None:
    call = ScriptedCall("fc_1" if with_ids else "", "check_flight", {"flight": "AA100"})
    server = ScriptedServer(GeminiWire(), check=SignatureRule({"check_flight": SIGNATURE}))
    server.script(
        Reply(
            calls=(call,),
            signature=SIGNATURE,
            reasoning="Look it up.",
            usage=ScriptedUsage(input=51, output=61, reasoning=45),
        ),
        Reply(text="AA100 is delayed by 40 minutes."),
    )
    await server.start()
    provider = {"api_key": KEY, "base_url": f"{server.url}/v1beta"}
    async with server, Client(providers={"gemini": provider}, retry=0) as client:
        result = await client.run(
            "Is AA100 on time?", tools=[check_flight], model="gemini/gemini-3.8-flash", thinking=True
        )
    assert server.problems == []
    assert result.response.text == "AA100 is delayed by 40 minutes."
    sent = server.wire.tool_results(server.model_requests[1])
    assert sent == [("fc_1" if with_ids else "check_flight", "AA100: delayed 40 minutes")]


def test_the_rule_refuses_a_turn_without_its_signature() -> None:
    rule = SignatureRule({"check_flight": SIGNATURE})
    contents = [
        {"role": "user", "parts": [{"text": "Is AA100 on time?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "check_flight", "args": {"flight": "AA100"}}}]},
    ]
    assert rule.signature_problems(contents) == [f"contents[1]: {MISSING}"]


def test_a_deliberately_wrong_body_fails_the_check() -> None:
    good = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert errors("gemini", good) == []
    assert errors("gemini", {**good, "generationConfig": {"max_tokens": 5}})  # the OpenAI name: unknown here
    assert errors("gemini", {"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]})


@pytest.mark.nonconforming
async def test_the_autouse_hook_checks_requests_to_gemini(request: pytest.FixtureRequest) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(400, json={"error": {"code": 400, "message": "bad"}}))
    client = Client(providers={"gemini": {"api_key": KEY}}, transport=transport, retry=0)
    with pytest.raises(Exception):  # noqa: B017, PT011 - the answer is a 400; the body is what is checked
        await client.chat("hi", model="gemini/gemini-3.8-flash", extra_body={"generationConfig": {"max_tokens": 5}})
    await client.aclose()
    assert any("max_tokens" in line for line in request.node.stash[FOUND])

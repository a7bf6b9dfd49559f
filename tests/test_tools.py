"""The tool loop: concurrency, one tool message per call id, and every way a call can go wrong."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from llmclient import (
    BudgetExceededError,
    Client,
    FakeDriver,
    FunctionTool,
    InvalidRequestError,
    MaxStepsExceededError,
    Message,
    Tool,
    ToolArgumentsError,
    ToolCall,
    ToolExecutionError,
    tool,
)
from llmclient.tools import tool_from_function


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: First.
        b: Second.
    """
    return a + b


async def slow_upper(text: str) -> str:
    """Upper-case text, slowly."""
    await asyncio.sleep(0.05)
    return text.upper()


def call(name: str, arguments: Any, id: str = "c1") -> ToolCall:
    if isinstance(arguments, str):
        return ToolCall.model_validate({"id": id, "function": {"name": name, "arguments": arguments}})
    return ToolCall(id=id, name=name, arguments=arguments)


def client_with(*replies: Any, **options: Any) -> tuple[Client, FakeDriver]:
    driver = FakeDriver(replies=list(replies))
    return Client(providers={"fake": driver}, **options), driver


def tool_results(driver: FakeDriver, request: int) -> list[Message]:
    return [m for m in driver.requests[request].messages if m.role == "tool"]


async def test_two_step_conversation_with_usage_summed() -> None:
    client, driver = client_with(call("add", {"a": 2, "b": 3}), "The sum is 5.")
    result = await client.run("What is 2 + 3?", tools=[add], model="fake/agent")
    assert result.response.text == "The sum is 5."
    assert result.steps == 2
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.messages[2].tool_call_id == "c1" and result.messages[2].content == "5"
    assert result.usage == result.responses[0].usage + result.responses[1].usage
    assert result.cost == Decimal(0)  # fake models are free
    assert len(client.ledger) == 2
    assert driver.requests[0].tools is not None and driver.requests[0].tools[0].name == "add"


async def test_parallel_calls_run_concurrently_and_answer_in_order() -> None:
    calls = [call("slow_upper", {"text": f"t{i}"}, id=f"call_{i}") for i in range(5)]
    threads: set[int] = set()

    def blocking(seconds: float) -> str:
        """Sleep in a thread."""
        threads.add(threading.get_ident())
        time.sleep(seconds)
        return "slept"

    sync_calls = [call("blocking", {"seconds": 0.05}, id=f"sync_{i}") for i in range(3)]
    client, driver = client_with(Message(role="assistant", tool_calls=calls + sync_calls), "done")
    started = time.monotonic()
    await client.run("go", tools=[slow_upper, blocking], model="fake/agent")
    elapsed = time.monotonic() - started
    assert elapsed < 0.2  # 5 × 50 ms async + 3 × 50 ms in threads, all at once
    results = tool_results(driver, 1)
    assert [m.tool_call_id for m in results] == [c.id for c in calls + sync_calls]
    assert [m.content for m in results[:5]] == [f"T{i}" for i in range(5)]
    assert len(threads) >= 2


@pytest.mark.parametrize(
    ("bad_call", "expected"),
    [
        (call("add", "{not json"), "not a JSON object"),
        (call("add", "[1, 2]"), "not a JSON object"),
        (call("subtract", {"a": 1}), "unknown tool 'subtract'; the available tools are: add"),
        (call("add", {"a": "one", "b": 2}), "a: Input should be a valid integer"),
        (call("add", {"a": 1}), "b: Field required"),
        (call("add", {"a": 1, "b": 2, "c": 3}), "unknown arguments for add: c"),
    ],
)
async def test_invalid_calls_are_not_run_and_the_model_is_told_why(bad_call: ToolCall, expected: str) -> None:
    ran = []

    def add_tracked(a: int, b: int) -> int:
        """Add."""
        ran.append((a, b))
        return a + b

    tracked = FunctionTool(add_tracked, name="add")
    client, driver = client_with(bad_call, call("add", {"a": 1, "b": 2}, id="c2"), "3")
    result = await client.run("1 + 2?", tools=[tracked], model="fake/agent")
    feedback = tool_results(driver, 1)[0]
    assert feedback.tool_call_id == "c1"
    assert expected in (feedback.content or "")
    assert ran == [(1, 2)]  # only the valid call ran
    assert result.response.text == "3"


async def test_the_retry_budget_ends_in_tool_arguments_error() -> None:
    client, _ = client_with(*[call("add", {"a": "x", "b": 1}, id=f"c{i}") for i in range(5)])
    with pytest.raises(ToolArgumentsError, match="after 3 invalid calls"):
        await client.run("?", tools=[add], model="fake/agent", max_tool_retries=2)


async def test_a_raising_tool_becomes_a_scrubbed_error_message() -> None:
    def leaky(query: str) -> str:
        """Query a service."""
        raise RuntimeError("auth failed for key sk-live-abcdef123456 at host")

    client, driver = client_with(call("leaky", {"query": "x"}), "sorry")
    result = await client.run("?", tools=[leaky], model="fake/agent")
    message = tool_results(driver, 1)[0].content or ""
    assert message.startswith("Error: RuntimeError: auth failed")
    assert "sk-live" not in message
    assert result.response.text == "sorry"


async def test_configured_secrets_are_scrubbed_from_tool_errors() -> None:
    secret = "plain-secret-value-42"

    def leaky() -> str:
        """Leak."""
        raise ValueError(f"bad token {secret}")

    driver = FakeDriver(replies=[call("leaky", {}), "ok"])
    client = Client(providers={"fake": driver, "openai": {"api_key": secret}})
    await client.run("?", tools=[leaky], model="fake/agent")
    assert secret not in (tool_results(driver, 1)[0].content or "")


async def test_on_tool_error_raise_chains_the_cause() -> None:
    def broken() -> None:
        """Break."""
        raise KeyError("missing")

    client, _ = client_with(call("broken", {}))
    with pytest.raises(ToolExecutionError) as caught:
        await client.run("?", tools=[broken], model="fake/agent", on_tool_error="raise")
    assert isinstance(caught.value.__cause__, KeyError)


async def test_a_tool_past_its_timeout_is_cancelled_and_reported() -> None:
    cancelled = asyncio.Event()

    async def hang() -> str:
        """Never finish."""
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    client, driver = client_with(call("hang", {}), "gave up")
    await client.run("?", tools=[hang], model="fake/agent", tool_timeout=0.05)
    assert cancelled.is_set()
    assert tool_results(driver, 1)[0].content == "Error: hang timed out after 0.05 s"


def test_keyboard_interrupt_propagates() -> None:
    # asyncio re-raises KeyboardInterrupt out of the loop, so this runs its own loop inside pytest.raises.
    def interrupt() -> None:
        """Interrupt."""
        raise KeyboardInterrupt

    client, _ = client_with(call("interrupt", {}), "never")
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(client.run("?", tools=[interrupt], model="fake/agent"))


async def test_cancellation_propagates() -> None:
    started = asyncio.Event()

    async def wait_forever() -> None:
        """Wait."""
        started.set()
        await asyncio.sleep(30)

    client, _ = client_with(call("wait_forever", {}))
    task = asyncio.create_task(client.run("?", tools=[wait_forever], model="fake/agent"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_max_steps_carries_the_transcript_and_usage() -> None:
    client, _ = client_with(*[call("add", {"a": i, "b": i}, id=f"c{i}") for i in range(3)])
    with pytest.raises(MaxStepsExceededError) as caught:
        await client.run("loop", tools=[add], model="fake/agent", max_steps=3)
    error = caught.value
    assert [m.role for m in error.messages] == ["user"] + ["assistant", "tool"] * 3
    assert error.usage.output_tokens > 0
    assert len(client.ledger) == 3


async def test_a_budget_stops_the_loop() -> None:
    prices = {"fake/paid": {"input_cost_per_token": "0.001", "output_cost_per_token": "0.001"}}
    driver = FakeDriver(replies=[call("add", {"a": 1, "b": 1}, id=f"c{i}") for i in range(10)])
    client = Client(providers={"fake": driver}, prices=prices)
    async with client.budget(usd="0.05"):
        with pytest.raises(BudgetExceededError):
            await client.run("?", tools=[add], model="fake/paid", max_tokens=5)
    assert 1 <= len(client.ledger) < 10


async def test_names_resolve_only_against_the_given_tools() -> None:
    client, driver = client_with(call("__import__", {"name": "os"}), call("eval", {"x": "1"}, id="c2"), "no")
    await client.run("?", tools=[add], model="fake/agent", max_tool_retries=5)
    assert "unknown tool '__import__'" in (tool_results(driver, 1)[0].content or "")


async def test_run_refuses_definition_only_tools() -> None:
    definition = Tool(name="lookup", description="", parameters={"type": "object", "properties": {}})
    with pytest.raises(InvalidRequestError, match="definition only"):
        await Client().run("?", tools=[definition], model="fake/agent")


async def test_tools_accept_every_form_mixed() -> None:
    class Search(BaseModel):
        """Search the web."""

        query: str

    @tool(name="adder", description="Adds.")
    def adder(a: int, b: int) -> int:
        return a + b

    openai_dict = {"type": "function", "function": {"name": "ping", "description": "", "parameters": {}}}
    client, driver = client_with("ok")
    await client.chat("hi", model="fake/x", tools=[add, adder, Search, openai_dict], tool_choice="adder")
    request = driver.requests[0]
    assert [t.name for t in request.tools or []] == ["add", "adder", "Search", "ping"]
    assert request.tool_choice == "adder"
    assert adder(1, 2) == 3
    with pytest.raises(InvalidRequestError, match="names no tool"):
        await client.chat("hi", model="fake/x", tools=[add], tool_choice="nope")


async def test_tool_from_function_matches_the_decorator() -> None:
    assert tool_from_function(add) == tool(add).tool


async def test_against_an_openai_format_server_one_tool_message_per_call_id() -> None:
    bodies = [
        {
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_a",
                                "type": "function",
                                "function": {"name": "add", "arguments": '{"a":1,"b":2}'},
                            },
                            {
                                "id": "call_b",
                                "type": "function",
                                "function": {"name": "add", "arguments": '{"a":3,"b":4}'},
                            },
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20},
        },
        {
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "3 and 7"}}],
            "usage": {"prompt_tokens": 90, "completion_tokens": 4},
        },
    ]
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=bodies[len(sent) - 1])

    client = Client(transport=httpx.MockTransport(handler), providers={"openai": {"api_key": "sk-test"}})
    result = await client.run("1+2 and 3+4?", tools=[add], model="openai/gpt-4o-mini", parallel_tool_calls=True)
    assert sent[0]["parallel_tool_calls"] is True
    assert sent[0]["tools"][0]["function"]["name"] == "add"
    follow_up = sent[1]["messages"]
    assert follow_up[1]["tool_calls"][1]["id"] == "call_b"
    tool_messages = [m for m in follow_up if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [("call_a", "3"), ("call_b", "7")]
    assert result.response.text == "3 and 7"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (140, 24)
    assert result.cost is not None and result.cost > 0


async def test_a_forced_tool_choice_applies_to_the_first_step_only() -> None:
    client, driver = client_with(call("add", {"a": 1, "b": 1}), "2")
    result = await client.run("1+1?", tools=[add], model="fake/agent", tool_choice="required")
    assert result.response.text == "2"
    assert [request.tool_choice for request in driver.requests] == ["required", "auto"]

"""Items 2 and 8 of issue 15: budgets hold against a provider that bills more than was counted, and the tool
loop's edges (invalid-call counts, siblings, duplicate ids, signatures, passwords in errors)."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal
from typing import Any

import pytest

from llmclient import (
    BudgetExceededError,
    BudgetOvershootWarning,
    Client,
    FakeDriver,
    TokenCount,
    ToolArgumentsError,
    ToolCall,
    ToolError,
    Usage,
    tool,
)

# 1 µ$ per input token, 2 µ$ per output token.
PAID = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}


class Underestimated(FakeDriver):
    """A provider whose tokenizer we lack: our count is an estimate, and it bills `factor` times as many input
    tokens as we counted."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    async def count_tokens(self, model: str, messages: Any, tools: Any) -> TokenCount:
        counted = await super().count_tokens(model, messages, tools)
        return TokenCount(tokens=counted.tokens, exact=False, tokenizer="estimate")

    async def chat(self, request: Any) -> Any:
        await asyncio.sleep(0.01)  # every call in flight at once
        reply = await super().chat(request)
        billed = math.ceil(reply.usage.input_tokens * self.factor)
        reply.usage = Usage(input_tokens=billed, output_tokens=reply.usage.output_tokens)
        return reply


async def run_concurrently(client: Client, calls: int) -> int:
    async def one() -> bool:
        try:
            await client.chat("w " * 100, model="fake/paid", max_tokens=10)
        except BudgetExceededError:
            return False
        return True

    return sum(await asyncio.gather(*(one() for _ in range(calls))))


async def test_a_provider_billing_20_percent_more_input_never_overspends_200_concurrent_calls() -> None:
    # Each call is billed 120 input + 2 output tokens = 124 µ$; the budget has room for about 100 of them.
    client = Client(providers={"fake": Underestimated(1.2)}, prices=PAID)
    async with client.budget(usd="0.0124") as budget:
        admitted = await run_concurrently(client, 200)
    assert 0 < admitted < 200
    assert budget.spent <= budget.limit and budget.overshoot == 0 and budget.reserved == 0
    assert client.ledger.total() == budget.spent  # every admitted call recorded, exactly
    assert len(client.ledger) == admitted


async def test_billing_beyond_the_margin_is_recorded_as_overshoot_warned_once_and_learned() -> None:
    client = Client(providers={"fake": Underestimated(2.0)}, prices=PAID)
    async with client.budget(usd="1") as budget:
        with pytest.warns(BudgetOvershootWarning) as warned:
            await run_concurrently(client, 20)
    assert len(warned) == 1
    assert budget.overshoot > 0 and budget.spent == client.ledger.total()
    # Learned: the next call reserves for the doubled prompt, so it overshoots no more.
    async with client.budget(usd="1") as later:
        await client.chat("w " * 100, model="fake/paid", max_tokens=10)
    assert later.overshoot == 0


async def test_a_valid_call_resets_the_invalid_call_count() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    bad, good = (
        ToolCall(id="c", name="add", arguments={"a": "x"}),
        ToolCall(id="c", name="add", arguments={"a": 1, "b": 2}),
    )
    replies: list[Any] = [bad, good, bad, good, bad, "done"]
    client = Client(providers={"fake": {"replies": replies}})
    result = await client.run("go", tools=[add], model="fake/m", max_tool_retries=1)
    assert result.response.text == "done"


async def test_the_run_ending_with_tool_arguments_error_cancels_its_siblings() -> None:
    cancelled = asyncio.Event()

    @tool
    async def slow() -> str:
        """Slow."""
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    calls = [ToolCall(id="a", name="slow"), ToolCall(id="b", name="missing")]
    client = Client(providers={"fake": {"replies": [calls]}})
    with pytest.raises(ToolArgumentsError):
        await asyncio.wait_for(client.run("go", tools=[slow], model="fake/m", max_tool_retries=0), 30)
    assert cancelled.is_set()


async def test_duplicate_tool_call_ids_get_one_result_each() -> None:
    @tool
    def echo(text: str) -> str:
        """Echo."""
        return text

    calls = [
        ToolCall(id="dup", name="echo", arguments={"text": "1"}),
        ToolCall(id="dup", name="echo", arguments={"text": "2"}),
    ]
    client = Client(providers={"fake": {"replies": [calls, "ok"]}})
    result = await client.run("go", tools=[echo], model="fake/m")
    results = [(m.tool_call_id, m.content) for m in result.messages if m.role == "tool"]
    assert results == [("dup", "1"), ("dup~2", "2")]
    assert [c.id for c in result.messages[1].tool_calls or []] == ["dup", "dup~2"]


def test_star_args_and_kwargs_are_refused_loudly() -> None:
    def variadic(*items: int, **options: str) -> None:
        """Takes anything."""

    with pytest.raises(ToolError, match=r"\*items"):
        tool(variadic)


async def test_url_passwords_never_reach_the_model_in_tool_errors() -> None:
    @tool
    def fetch() -> str:
        """Fetch."""
        raise ConnectionError("cannot reach postgresql://app:hunter2@db.internal:5432/prod")

    client = Client(providers={"fake": {"replies": [ToolCall(id="a", name="fetch"), "ok"]}})
    result = await client.run("go", tools=[fetch], model="fake/m")
    [message] = [m for m in result.messages if m.role == "tool"]
    assert "hunter2" not in message.text and "postgresql://app:[REDACTED]@db.internal" in message.text
    assert Decimal(0) == client.ledger.total()

"""The examples that stood in the `Client` methods' docstrings before the facade was slimmed down (same asserts)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from llmclient import BudgetExceededError, Client, ToolCall


async def test_budget_reserves_the_worst_case_and_settles_to_the_actual_cost() -> None:
    client = Client(prices={"fake/paid": {"input_cost_per_token": "0.001", "output_cost_per_token": "0.002"}})
    async with client.budget(usd=Decimal("0.05")) as budget:
        # Reserves 2 × 0.001 + 10 × 0.002 = 0.022; the echo costs 2 × 0.001 + 4 × 0.002 = 0.010.
        await client.chat("one two", model="fake/paid", max_tokens=10)
        # Would reserve 40 × 0.001 + 10 × 0.002 = 0.06, more than the 0.04 left: not sent.
        with pytest.raises(BudgetExceededError):
            await client.chat("x " * 40, model="fake/paid", max_tokens=10)
    assert (budget.spent, budget.calls, len(client.ledger)) == (Decimal("0.010"), 1, 1)


async def test_stream_assembles_its_response() -> None:
    async with Client() as client:
        stream = client.stream("one two three", model="fake/echo")
        text = "".join([chunk.delta async for chunk in stream])
        assert text == "You said: one two three"
        assert stream.response.usage.output_tokens == 5


async def test_run_calls_the_tool_and_answers() -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    client = Client(
        providers={"fake": {"replies": [ToolCall(id="call_1", name="add", arguments={"a": 2, "b": 3}), "2 + 3 = 5"]}}
    )
    result = await client.run("What is 2 + 3?", tools=[add], model="fake/agent")
    assert result.response.text == "2 + 3 = 5"
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.messages[2].content == "5" and result.steps == 2


async def test_embed_sends_each_text_once_and_caches() -> None:
    async with Client() as client:
        result = await client.embed(["cat", "dog", "cat"], model="fake/embedder")
        assert result.vectors.shape == (3, 8)
        assert result.cached == 1  # the second "cat" was not sent
        again = await client.embed("dog", model="fake/embedder")
        assert (again.cached, again.usage.input_tokens, again.cost.total) == (1, 0, 0)
        assert len(client.ledger) == 1  # a call answered from the cache adds no record


async def test_similarity_follows_the_shapes() -> None:
    async with Client() as client:
        assert round(await client.similarity("cat", "cat", model="fake/embedder"), 6) == 1.0
        scores = await client.similarity("cat", ["cat", "dog"], model="fake/embedder")
        assert scores.shape == (2,) and scores[0] > scores[1]
        assert (await client.similarity(["a", "b"], ["c", "d", "e"], model="fake/embedder")).shape == (2, 3)


async def test_search_returns_the_best_first() -> None:
    async with Client() as client:
        hits = await client.search("cats", ["dogs", "cats", "birds"], k=2, model="fake/embedder")
        assert (hits[0].index, hits[0].text, round(hits[0].score, 6)) == (1, "cats", 1.0)
        assert len(hits) == 2

"""SyncClient: plain code, inside a running event loop, and from several threads at once."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import pytest

from llmclient import BudgetExceededError, FakeDriver, ServerError, SyncClient, ToolCall


def test_plain_code_chat_stream_embed_count_run() -> None:
    with SyncClient(default_model="fake/echo") as client:
        assert client.chat("Hello").text == "You said: Hello"
        stream = client.stream("one two")
        assert "".join(chunk.delta for chunk in stream) == "You said: one two"
        assert stream.response.usage.output_tokens == 4
        assert client.embed(["a", "b"]).vectors.shape == (2, 8)
        assert client.count_tokens("three little words").tokens == 3

        def add(a: int, b: int) -> int:
            """Add."""
            return a + b

        agent = SyncClient(
            providers={"fake": {"replies": [ToolCall(id="c", name="add", arguments={"a": 1, "b": 2}), "3"]}}
        )
        assert agent.run("1+2?", tools=[add], model="fake/a").response.text == "3"
        agent.close()
        assert len(client.ledger) == 3  # chat, stream, embed (counting records nothing)


async def test_inside_a_running_event_loop() -> None:
    # As in a Jupyter cell: a loop is running in this thread, and blocking calls still work.
    client = SyncClient(default_model="fake/echo")
    assert client.chat("from a notebook").text == "You said: from a notebook"
    await asyncio.sleep(0)
    client.close()


def test_from_eight_threads_at_once() -> None:
    client = SyncClient(default_model="fake/echo")
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for round_ in range(5):
                results[index * 10 + round_] = client.chat(f"t{index} r{round_}").text
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results[73] == "You said: t7 r3"
    assert len(client.ledger) == 40
    client.close()


def test_errors_and_budgets_cross_the_thread() -> None:
    prices = {"fake/paid": {"input_cost_per_token": "0.001", "output_cost_per_token": "0.001"}}
    client = SyncClient(
        providers={"fake": FakeDriver(replies=[ServerError("down", status=500)])}, retry=0, prices=prices
    )
    with pytest.raises(ServerError):
        client.chat("x", model="fake/paid")
    with client.budget(usd=Decimal("0.001")) as budget, pytest.raises(BudgetExceededError):
        client.chat("a b c", model="fake/paid", max_tokens=5)
    assert budget.calls == 0
    client.close()
    client.close()  # closing twice is harmless


def test_breaking_out_of_a_stream_closes_it() -> None:
    client = SyncClient(default_model="fake/echo")
    for _chunk in client.stream("a b c d e f"):
        break
    assert client.ledger.records[-1].error == "closed"
    client.close()

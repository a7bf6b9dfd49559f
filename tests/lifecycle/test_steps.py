"""The pipeline's steps: what each admits, finishes and releases, and that a new step is one `add`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmclient import BudgetExceededError, Client, FakeDriver, Message, ResponseFormatError, TokenCount, Tool
from llmclient.accounting.catalog import PriceTable
from llmclient.lifecycle import Call, Outcome, Step


class CountingFake(FakeDriver):
    """The fake driver, counting how often the pipeline asks it to count a prompt."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.prompt_counts = 0

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        self.prompt_counts += 1
        return await super().count_tokens(model, messages, tools)


async def test_a_prompt_is_counted_only_when_something_needs_the_number() -> None:
    fake = CountingFake()
    client = Client(providers={"fake": fake}, prices={"fake/paid": 1})
    await client.chat("no budget, usage reported", model="fake/x")
    assert fake.prompt_counts == 0 and client.ledger.records[-1].counted_input_tokens is None
    async with client.budget(usd="1"):
        await client.chat("a budget must reserve", model="fake/paid", max_tokens=4)
    assert fake.prompt_counts == 1 and client.ledger.records[-1].counted_input_tokens == 4

    drifting = CountingFake()
    tracked = Client(providers={"fake": drifting}, track_drift=True)
    await tracked.chat("every prompt counted", model="fake/x")
    assert drifting.prompt_counts == 1 and tracked.ledger.records[-1].input_drift == 0


async def test_a_billed_reply_that_cannot_be_used_counts_its_prompt_then() -> None:
    fake = CountingFake(replies=[ResponseFormatError("garbled", status=200)])
    client = Client(providers={"fake": fake})
    with pytest.raises(ResponseFormatError):
        await client.chat("one two three", model="fake/x")
    record = client.ledger.records[-1]
    assert (fake.prompt_counts, record.usage.input_tokens, record.usage.estimated) == (1, 3, True)


class Journal(Step):
    """A step that writes down what it sees, as a tracing or rate-limit step would."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.seen: list[str] = []

    async def admit(self, call: Call) -> None:
        self.seen.append(f"admit {call.model_id}")
        if self.refuse:
            raise BudgetExceededError("refused by the journal")

    def finish(self, call: Call, outcome: Outcome) -> None:
        self.seen.append(f"finish {outcome.cost.total if outcome.cost else None}")

    def release(self, call: Call, error: BaseException | None) -> None:
        self.seen.append(f"release {type(error).__name__}")


async def test_a_new_step_sees_every_call_once_and_a_refusal_releases_earlier_steps() -> None:
    client = Client()
    journal = Journal()
    client.pipeline.add(journal)
    await client.chat("hi", model="fake/echo")
    assert journal.seen == ["admit fake/echo", "finish 0"]

    refusing = Client(budget_usd="1")
    early, late = Journal(), Journal(refuse=True)
    refusing.pipeline.steps.insert(0, early)
    refusing.pipeline.add(late)
    with pytest.raises(BudgetExceededError, match="journal"):
        await refusing.chat("hi", model="fake/echo")
    assert early.seen == ["admit fake/echo", "release BudgetExceededError"]
    assert len(refusing.ledger) == 0 and refusing._client_budget is not None
    assert refusing._client_budget.reserved == 0  # the budget step admitted, then gave its reservation back


async def test_an_unpriced_model_is_priced_by_the_model_the_provider_says_served_it() -> None:
    # The recorded reply says gpt-4.1-2025-04-14 served it: an alias the table does not know is priced by that.
    body = json.loads((Path(__file__).parent.parent / "fixtures" / "openai" / "chat_completion.json").read_text())
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with Client(transport=transport, providers={"openai": {"api_key": "k"}}) as client:
        reply = await client.chat("Hello!", model="openai/my-deployment")
        priced = await client.chat("Hello!", model="openai/gpt-4o")  # a known model keeps its own price
    gpt41, gpt4o = PriceTable.default().lookup("openai", "gpt-4.1"), PriceTable.default().lookup("openai", "gpt-4o")
    assert gpt41 is not None and gpt4o is not None
    assert reply.cost is not None and reply.cost.price_model == "openai/gpt-4.1"
    assert reply.cost.total == gpt41.cost(reply.usage).total
    assert priced.cost is not None and priced.cost.total == gpt4o.cost(priced.usage).total != reply.cost.total

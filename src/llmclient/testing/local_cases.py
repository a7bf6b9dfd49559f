"""The conformance cases for an in-process engine (transformers, llama.cpp, the fake): no server to script, so
they check what holds whatever the model says: usage from the engine's own tokenizer, a stream that joins to its
reply, cancellation, budgets and the ledger."""

from __future__ import annotations

from decimal import Decimal

from llmclient.errors import BudgetExceededError
from llmclient.testing.target import Target, check, expected_cost
from llmclient.types import ChatResponse

PROMPT = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Say hello."}]


async def _check_local_billing(target: Target, reply: ChatResponse, kind: str) -> None:
    usage = reply.usage
    check(usage.input_tokens > 0 and usage.output_tokens > 0, f"usage: {usage!r}")
    check(not usage.estimated, "an in-process engine counts its own tokens: usage is exact")
    check(reply.cost is not None and reply.cost.total == expected_cost(usage), f"cost of {usage!r}: {reply.cost!r}")


async def local_chat(target: Target) -> None:
    """A chat: text (or a reply cut at `max_tokens`), exact usage whose prompt is the driver's own count, a record."""
    client = target.client()
    counted = await client.count_tokens(PROMPT, model=target.model_id)
    reply = await client.chat(PROMPT, model=target.model_id, **target.accepted(max_tokens=8, temperature=0))
    check(reply.finish_reason in ("stop", "length") and bool(reply.text), f"reply: {reply!r}")
    await _check_local_billing(target, reply, "chat")
    if counted.exact:
        check(reply.usage.prompt_tokens == counted.tokens, f"prompt {reply.usage.prompt_tokens} != count {counted}")
    [record] = client.ledger.records
    check((record.kind, record.usage) == ("chat", reply.usage), f"record: {record!r}")
    await target.close(client)


async def local_stream(target: Target) -> None:
    """A stream whose chunks join to the assembled reply, with exact usage and one record."""
    client = target.client()
    chunks = client.stream(PROMPT, model=target.model_id, **target.accepted(max_tokens=8, temperature=0))
    deltas = [chunk.delta async for chunk in chunks if chunk.delta]
    reply = chunks.response
    check(bool(deltas) and "".join(deltas) == reply.text, f"streamed {deltas!r}, assembled {reply.text!r}")
    await _check_local_billing(target, reply, "stream")
    [record] = client.ledger.records
    check((record.kind, record.usage) == ("stream", reply.usage), f"record: {record!r}")
    await target.close(client)


async def local_cancellation(target: Target) -> None:
    """A stream closed after its first piece stops the engine and is recorded once; the next call works."""
    client = target.client()
    async with client.stream(PROMPT, model=target.model_id, **target.accepted(max_tokens=64, temperature=0)) as chunks:
        async for chunk in chunks:
            if chunk.delta:
                break
    [record] = client.ledger.records
    check((record.kind, record.error) == ("stream", "closed"), f"record: {record!r}")
    after = await client.chat(PROMPT, model=target.model_id, **target.accepted(max_tokens=2, temperature=0))
    check(bool(after.text), "the engine serves the next call after a closed stream")
    await target.close(client)


async def local_budgets(target: Target) -> None:
    """A call that cannot fit a budget is refused before the engine runs; one that fits settles to its cost."""
    client = target.client()
    async with client.budget(usd="0.000005") as tight:
        try:
            await client.chat(PROMPT, model=target.model_id, **target.accepted(max_tokens=100))
        except BudgetExceededError:
            pass
        else:
            check(False, "a call whose worst case exceeds the budget was admitted")
    check((tight.spent, len(client.ledger.records)) == (Decimal(0), 0), "a refused call spends and records nothing")
    async with client.budget(usd="1") as roomy:
        reply = await client.chat(PROMPT, model=target.model_id, **target.accepted(max_tokens=4, temperature=0))
    check(reply.cost is not None and roomy.spent == reply.cost.total, f"settled {roomy.spent}, cost {reply.cost}")
    check((roomy.calls, roomy.reserved) == (1, Decimal(0)), "the reservation is settled")
    await target.close(client)


async def local_ledger(target: Target) -> None:
    """Each call is recorded once, tagged, and the ledger's total is the sum of the costs."""
    client = target.client()
    first = await client.chat(
        PROMPT, model=target.model_id, tags=["conformance"], **target.accepted(max_tokens=4, temperature=0)
    )
    chunks = client.stream(PROMPT, model=target.model_id, **target.accepted(max_tokens=4, temperature=0))
    async for _ in chunks:
        pass
    records = client.ledger.records
    check([r.kind for r in records] == ["chat", "stream"], f"records: {records!r}")
    check(records[0].tags == ("conformance",), f"tags: {records[0].tags!r}")
    costs = [reply.cost.total for reply in (first, chunks.response) if reply.cost is not None]
    check(client.ledger.total() == sum(costs, Decimal(0)), f"ledger total {client.ledger.total()} != {costs}")
    await target.close(client)


__all__ = ["local_budgets", "local_cancellation", "local_chat", "local_ledger", "local_stream"]

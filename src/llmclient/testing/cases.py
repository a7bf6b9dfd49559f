"""The conformance cases against a scripted server: chat, stream, tool calls (parallel and streamed), tool
results, usage details, the error answers, cancellation, budgets and the ledger.

Each case scripts the server in llmclient's terms, drives the driver through a real `Client` (so the pipeline's
retries, pricing, budgets and ledger run as in production) and checks what came back and what the server saw.
"""

from __future__ import annotations

from contextlib import suppress
from decimal import Decimal

from llmclient.errors import (
    APIError,
    AuthenticationError,
    BudgetExceededError,
    ContextWindowExceededError,
    RateLimitError,
    UnknownModelError,
)
from llmclient.lifecycle.retry import RetryPolicy
from llmclient.testing.script import Failure, FailureKind, Reply, ScriptedCall, ScriptedUsage
from llmclient.testing.target import Target, check, expected_cost, settled
from llmclient.types import ChatResponse, Tool, Usage

WEATHER = Tool(
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = Tool(
    name="get_time",
    description="The time in a time zone.",
    parameters={"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
)
CALLS = (
    ScriptedCall("call_weather_1", "get_weather", {"city": "Paris"}),
    ScriptedCall("call_time_2", "get_time", {"zone": "Europe/Paris"}),
)
RETRY_ONCE = RetryPolicy(max_retries=1, initial_backoff=0)


def get_weather(city: str) -> str:
    """Current weather in a city.

    Args:
        city: The city's name.
    """
    return f"18°C and sunny in {city}"


def usage_of(scripted: ScriptedUsage) -> Usage:
    """The usage a driver must report for a scripted one."""
    return Usage(
        input_tokens=scripted.input,
        cached_input_tokens=scripted.cached,
        cache_write_tokens=scripted.cache_write,
        output_tokens=scripted.output,
        reasoning_tokens=scripted.reasoning,
    )


def check_billed(target: Target, reply: ChatResponse, usage: Usage) -> None:
    """The reply's usage and cost are what the server reported, and the ledger holds one record of it."""
    check(reply.usage == usage, f"usage: expected {usage!r}, got {reply.usage!r}")
    check(reply.cost is not None and reply.cost.total == expected_cost(usage), f"cost of {usage!r}: {reply.cost!r}")
    check(reply.provider == target.provider, f"provider: {reply.provider!r}")


async def chat(target: Target) -> None:
    """A plain chat: its text, finish reason, usage, cost and one ledger record."""
    server = target.scripted()
    server.script(Reply(text="Hello there, friend.", usage=ScriptedUsage(input=12, output=5)))
    client = target.client()
    reply = await client.chat("Say hello.", model=target.model_id)
    check((reply.text, reply.finish_reason) == ("Hello there, friend.", "stop"), f"reply: {reply!r}")
    check_billed(target, reply, Usage(input_tokens=12, output_tokens=5))
    [record] = client.ledger.records
    check((record.kind, record.attempts, record.usage) == ("chat", 1, reply.usage), f"record: {record!r}")
    check(record.request_id == reply.request_id, "the record keeps the reply's request id")
    check(len(server.model_requests) == 1, "one request sent")
    await target.close(client)


async def stream(target: Target) -> None:
    """A stream: text in several chunks that join to the reply, its usage on the assembled reply, one record."""
    server = target.scripted()
    server.script(Reply(text="One, two, three, four.", usage=ScriptedUsage(input=9, output=7), pieces=4))
    client = target.client()
    chunks = client.stream("Count to four.", model=target.model_id)
    deltas = [chunk.delta async for chunk in chunks if chunk.delta]
    check(len(deltas) >= 2 and "".join(deltas) == "One, two, three, four.", f"streamed text: {deltas!r}")
    reply = chunks.response
    check((reply.text, reply.finish_reason) == ("One, two, three, four.", "stop"), f"reply: {reply!r}")
    check_billed(target, reply, Usage(input_tokens=9, output_tokens=7))
    [record] = client.ledger.records
    check((record.kind, record.usage) == ("stream", reply.usage), f"record: {record!r}")
    await target.close(client)


async def parallel_tool_calls(target: Target) -> None:
    """Two tool calls in one reply, in order, with their ids, names and parsed arguments."""
    server = target.scripted()
    server.script(Reply(calls=CALLS, usage=ScriptedUsage(input=30, output=20)))
    client = target.client()
    reply = await client.chat("Weather and time in Paris?", model=target.model_id, tools=[WEATHER, TIME])
    got = [(c.id, c.name, c.arguments) for c in reply.tool_calls]
    check(got == [(c.id, c.name, c.arguments) for c in CALLS], f"tool calls: {got!r}")
    check(reply.finish_reason == "tool_calls", f"finish reason: {reply.finish_reason!r}")
    check_billed(target, reply, Usage(input_tokens=30, output_tokens=20))
    await target.close(client)


async def streamed_tool_calls(target: Target) -> None:
    """Two tool calls streamed (arguments in pieces where the wire splits them) assemble into whole calls."""
    server = target.scripted()
    server.script(Reply(calls=CALLS, usage=ScriptedUsage(input=30, output=20), pieces=3))
    client = target.client()
    chunks = client.stream("Weather and time in Paris?", model=target.model_id, tools=[WEATHER, TIME])
    deltas = [delta async for chunk in chunks for delta in chunk.tool_call_deltas]
    check(len(deltas) >= 2, f"tool call deltas: {deltas!r}")
    got = [(c.id, c.name, c.arguments) for c in chunks.response.tool_calls]
    check(got == [(c.id, c.name, c.arguments) for c in CALLS], f"tool calls: {got!r}")
    check(chunks.response.finish_reason == "tool_calls", f"finish reason: {chunks.response.finish_reason!r}")
    check_billed(target, chunks.response, Usage(input_tokens=30, output_tokens=20))
    await target.close(client)


async def tool_results(target: Target) -> None:
    """The tool loop: a call, its result sent back under the call's id, the final answer; one record per step."""
    server = target.scripted()
    answer = "It is 18°C and sunny in Paris."
    server.script(Reply(calls=CALLS[:1], usage=ScriptedUsage(input=20, output=8)), Reply(text=answer))
    client = target.client()
    result = await client.run("Weather in Paris?", model=target.model_id, tools=[get_weather])
    check(result.response.text == answer, f"final answer: {result.response.text!r}")
    sent = server.wire.tool_results(server.model_requests[1])
    check(sent == [(CALLS[0].id, "18°C and sunny in Paris")], f"tool results sent back: {sent!r}")
    check(len(client.ledger.records) == 2, "one record per model request")
    await target.close(client)


async def usage_details(target: Target) -> None:
    """Cached, cache-write and reasoning tokens, as far as the wire reports them, in a chat and in a stream."""
    server = target.scripted()
    reports = server.wire.reports
    scripted = ScriptedUsage(
        input=20,
        cached=60 if "cached" in reports else 0,
        cache_write=15 if "cache_write" in reports else 0,
        output=9,
        reasoning=4 if "reasoning" in reports else 0,
    )
    server.script(Reply(text="From the cache.", usage=scripted), Reply(text="From the cache.", usage=scripted))
    client = target.client()
    reply = await client.chat("Again?", model=target.model_id)
    check_billed(target, reply, usage_of(scripted))
    chunks = client.stream("Again?", model=target.model_id)
    async for _ in chunks:
        pass
    check_billed(target, chunks.response, usage_of(scripted))
    await target.close(client)


async def _fails(target: Target, kind: FailureKind, expected: type[APIError], retry_after: float | None = None) -> None:
    server = target.scripted()
    server.script(Failure(kind, retry_after=retry_after))
    client = target.client()
    try:
        await client.chat("Hello?", model=target.model_id)
    except expected as error:
        check(error.provider == target.provider and error.status is not None, f"error fields: {error!r}")
        check(retry_after is None or getattr(error, "retry_after", None) == retry_after, f"retry after: {error!r}")
    except Exception as error:
        raise AssertionError(f"{kind}: expected {expected.__name__}, got {type(error).__name__}: {error}") from error
    else:
        check(False, f"{kind}: expected {expected.__name__}, got a reply")
    check(len(client.ledger.records) == 0, "an error answer is not billed, so not recorded")
    await target.close(client)


async def error_auth(target: Target) -> None:
    """A rejected key is `AuthenticationError`."""
    await _fails(target, "auth", AuthenticationError)


async def error_unknown_model(target: Target) -> None:
    """An unknown model is `UnknownModelError`, whatever the provider's status for it."""
    await _fails(target, "model_not_found", UnknownModelError)


async def error_rate_limit(target: Target) -> None:
    """A 429 is `RateLimitError` with the wait the provider asked for."""
    await _fails(target, "rate_limit", RateLimitError, retry_after=7.0)


async def error_context_window(target: Target) -> None:
    """A prompt over the context window is `ContextWindowExceededError`."""
    await _fails(target, "context_window", ContextWindowExceededError)


async def _recovers(target: Target, kind: FailureKind) -> None:
    server = target.scripted()
    server.script(Failure(kind), Reply(text="Recovered."))
    client = target.client(retry=RETRY_ONCE)
    reply = await client.chat("Hello?", model=target.model_id)
    check(reply.text == "Recovered.", f"the retried reply: {reply!r}")
    [record] = client.ledger.records
    check(record.attempts == 2, f"a retried call counts its attempts: {record!r}")
    await target.close(client)


async def error_server_retried(target: Target) -> None:
    """A 5xx is a retryable `ServerError`: retried, and the call succeeds with two attempts recorded."""
    await _recovers(target, "server")


async def error_overloaded_retried(target: Target) -> None:
    """The provider's "overloaded" answer is retried like a 5xx."""
    await _recovers(target, "overloaded")


async def cancellation(target: Target) -> None:
    """A stream closed after its first piece closes the connection and is recorded once, as an estimate."""
    server = target.scripted()
    server.script(Reply(text="one two three four five six", hang=True, pieces=6))
    client = target.client()
    async with client.stream("Count slowly.", model=target.model_id) as chunks:
        async for chunk in chunks:
            if chunk.delta:
                break
    check(await settled(lambda: server.closed_early == 1), "the driver closed the stream's connection")
    [record] = client.ledger.records
    check((record.kind, record.error, record.usage.estimated) == ("stream", "closed", True), f"record: {record!r}")
    await target.close(client)


async def budgets(target: Target) -> None:
    """A call that cannot fit a budget is refused with nothing sent; one that fits settles to its cost."""
    server = target.scripted()
    server.script(Reply(text="Fits.", usage=ScriptedUsage(input=10, output=3)))
    client = target.client()
    async with client.budget(usd="0.000005") as tight:
        try:
            await client.chat("Hello?", model=target.model_id, **target.accepted(max_tokens=100))
        except BudgetExceededError:
            pass
        else:
            check(False, "a call whose worst case exceeds the budget was admitted")
    check(
        (len(server.model_requests), tight.spent) == (0, Decimal(0)), "a refused call sends nothing and spends nothing"
    )
    async with client.budget(usd="1") as roomy:
        reply = await client.chat("Hello?", model=target.model_id, **target.accepted(max_tokens=100))
    check(reply.cost is not None and roomy.spent == reply.cost.total, f"settled {roomy.spent}, cost {reply.cost}")
    check((roomy.calls, roomy.reserved) == (1, Decimal(0)), "the reservation is settled")
    await target.close(client)


async def ledger(target: Target) -> None:
    """Every billed call is recorded once, failed unbilled ones are not, and the total is the sum of the costs."""
    server = target.scripted()
    server.script(Reply(text="First.", usage=ScriptedUsage(input=4, output=2)), Failure("auth"))
    server.script(Reply(text="Second.", usage=ScriptedUsage(input=6, output=3)))
    client = target.client()
    await client.chat("One?", model=target.model_id, tags=["conformance"])
    with suppress(AuthenticationError):  # not billed: no record
        await client.chat("Two?", model=target.model_id)
    async for _ in client.stream("Three?", model=target.model_id):
        pass
    records = client.ledger.records
    check([r.kind for r in records] == ["chat", "stream"], f"records: {records!r}")
    check(records[0].tags == ("conformance",), f"tags: {records[0].tags!r}")
    total = expected_cost(Usage(input_tokens=4, output_tokens=2)) + expected_cost(
        Usage(input_tokens=6, output_tokens=3)
    )
    check(client.ledger.total() == total, f"ledger total {client.ledger.total()} != {total}")
    await target.close(client)


__all__ = [
    "budgets",
    "cancellation",
    "chat",
    "error_auth",
    "error_context_window",
    "error_overloaded_retried",
    "error_rate_limit",
    "error_server_retried",
    "error_unknown_model",
    "ledger",
    "parallel_tool_calls",
    "stream",
    "streamed_tool_calls",
    "tool_results",
    "usage_details",
]

"""SSE reading and deadlines in the HTTP layer."""

from __future__ import annotations

from collections.abc import AsyncIterator

from llmclient import Timeouts
from llmclient.http.client import iter_sse


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def events(*items: str) -> list[tuple[str, str]]:
    return [event async for event in iter_sse(lines(*items))]


async def test_sse_events_follow_the_event_stream_rules() -> None:
    assert await events(": comment", "", "data: a", "", "event: error", 'data: {"x":1}', "") == [
        ("message", "a"),
        ("error", '{"x":1}'),
    ]
    assert await events("data: line1", "data:line2", "") == [("message", "line1\nline2")]
    assert await events("data: cut off at the end") == [("message", "cut off at the end")]
    assert await events("", "", ": keep-alive", "", "id: 7", "retry: 10") == []


def test_timeouts_from_a_number() -> None:
    assert Timeouts.from_value(30) == Timeouts(connect=10.0, read=30.0, total=30.0)
    assert Timeouts.from_value(None).total is None
    custom = Timeouts(connect=1, read=2, total=3)
    assert Timeouts.from_value(custom) is custom

"""SSE reading and deadlines in the HTTP layer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from llmclient import HTTPOptions, RateLimitError, Timeouts
from llmclient.http import HTTPClient, iter_sse


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


# -- the public HTTPClient, over each backend, against a loopback server ------------------------------------------

BACKENDS = ["native", "aiohttp", "httpx"]
RESET = "2026-12-07T10:00:30Z"


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def messages(request: web.Request) -> web.StreamResponse:
        if request.headers.get("x-api-key") != "k-loopback-123":
            body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "r1"}
            return web.json_response(body, status=529)
        if (await request.json()).get("stream"):
            answer = web.StreamResponse(headers={"content-type": "text/event-stream", "request-id": "req_s"})
            await answer.prepare(request)
            await answer.write(b'event: ping\ndata: {}\n\nevent: message_stop\ndata: {"a": 1}\n\n')
            return answer
        headers = {"anthropic-ratelimit-requests-remaining": "7", "anthropic-ratelimit-requests-reset": RESET}
        return web.json_response({"ok": True}, headers={**headers, "x-ratelimit-remaining-tokens": "5", "a": "b"})

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


def http_client(url: str, backend: str, key: str = "k-loopback-123") -> HTTPClient:
    return HTTPClient(
        provider="p",
        base_url=url,
        headers={"x-api-key": key},
        secrets=[key],
        options=HTTPOptions(backend=backend),  # type: ignore[arg-type]
        error_codes={"overloaded_error": RateLimitError},
    )


@pytest.mark.parametrize("backend", BACKENDS)
async def test_json_sse_rate_limits_and_error_codes(server: str, backend: str) -> None:
    http = http_client(server, backend)
    limits: dict[str, str] = {}
    data, _ = await http.post_json("/messages", {"stream": False}, model="m", rate_limits=limits)
    assert data == {"ok": True}
    assert limits == {
        "anthropic-ratelimit-requests-remaining": "7",
        "anthropic-ratelimit-requests-reset": RESET,
        "x-ratelimit-remaining-tokens": "5",
    }
    async with http.stream_sse("/messages", {"stream": True}, model="m") as (request_id, sse):
        assert request_id == "req_s"
        assert [event async for event in sse] == [("ping", "{}"), ("message_stop", '{"a": 1}')]
    await http.aclose()
    wrong = http_client(server, backend, key="k-other-key-456")
    with pytest.raises(RateLimitError) as caught:  # the provider's own name decided, not the 529
        await wrong.post_json("/messages", {}, model="m")
    assert (caught.value.status, caught.value.error_code, caught.value.request_id) == (529, "overloaded_error", "r1")
    await wrong.aclose()

"""Item 1 and 5 of issue 15: whatever a server sends, decoding fails as a typed error with no body or key in its
chain, and a billed 2xx is recorded once."""

from __future__ import annotations

import json

import pytest

from hostile.server import DEEP, KEY, Reply, assert_clean, client_for, ok, sse
from llmclient import (
    BadRequestError,
    ResponseFormatError,
    StreamDecodeError,
    StreamInterruptedError,
    ToolArgumentsError,
    tool,
)


async def test_a_deeply_nested_200_body_is_a_response_format_error_and_recorded(serve, debug_logs) -> None:
    server = await serve(Reply(200, (DEEP,), {"content-type": "application/json"}))
    async with client_for(server) as client:
        with pytest.raises(ResponseFormatError, match="nested too deeply") as caught:
            await client.chat("hi", model="openai-compatible/m")
    assert_clean(caught.value, debug_logs)
    assert caught.value.__cause__ is None and caught.value.__context__ is None  # no body kept in a chain
    [record] = client.ledger.records  # billed: a 2xx reached us
    assert (record.error, record.attempts, record.usage.estimated) == ("ResponseFormatError", 1, True)


async def test_a_deeply_nested_stream_event_is_a_stream_decode_error_and_recorded(serve, debug_logs) -> None:
    server = await serve(sse(chunk_text := json.dumps({"choices": [{"delta": {"content": "a"}}]}), DEEP.decode()))
    assert chunk_text
    async with client_for(server) as client:
        with pytest.raises(StreamDecodeError) as caught:
            async for _ in client.stream("hi", model="openai-compatible/m"):
                pass
    assert_clean(caught.value, debug_logs)
    assert caught.value.partial_text == "a"
    [record] = client.ledger.records
    assert record.error == "StreamDecodeError" and record.usage.estimated


async def test_a_deeply_nested_error_body_is_still_the_status_error(serve, debug_logs) -> None:
    server = await serve(Reply(400, (DEEP,), {"content-type": "application/json"}))
    async with client_for(server) as client:
        with pytest.raises(BadRequestError) as caught:
            await client.chat("hi", model="openai-compatible/m")
    assert_clean(caught.value, debug_logs)
    assert len(client.ledger) == 0  # a 4xx is not billed


async def test_deeply_nested_tool_arguments_end_the_run_typed_and_the_200_is_recorded(serve, debug_logs) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": DEEP.decode()}}
    server = await serve(ok("", tool_calls=[call]))

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    async with client_for(server) as client:
        reply = await client.chat("hi", model="openai-compatible/m", tools=[add])
        assert reply.tool_calls[0].arguments == {}  # kept raw, parsed as nothing
        with pytest.raises(ToolArgumentsError) as caught:
            await client.run("hi", model="openai-compatible/m", tools=[add], max_tool_retries=0)
    assert_clean(caught.value, debug_logs)
    assert len(str(caught.value)) < 1000
    assert [r.error for r in client.ledger.records] == [None, None]  # both billed 200s recorded


async def test_a_body_that_is_not_json_keeps_no_raw_body_in_the_chain(serve, debug_logs) -> None:
    body = b"<html>" + f"oops {KEY} ".encode() * 50_000
    server = await serve(Reply(200, (body,), {"content-type": "application/json"}))
    async with client_for(server) as client:
        with pytest.raises(ResponseFormatError) as caught:
            await client.chat("hi", model="openai-compatible/m")
    assert_clean(caught.value, debug_logs)
    assert caught.value.__cause__ is None
    assert len(client.ledger) == 1


async def test_a_stream_error_event_keeps_the_providers_type_and_code(serve, debug_logs) -> None:
    error = {"error": {"message": f"overloaded, key {KEY}", "type": "server_error", "code": "overloaded"}}
    server = await serve(sse(json.dumps(error)))
    async with client_for(server) as client:
        with pytest.raises(StreamInterruptedError) as caught:
            async for _ in client.stream("hi", model="openai-compatible/m"):
                pass
    assert_clean(caught.value, debug_logs)
    assert (caught.value.error_type, caught.value.error_code) == ("server_error", "overloaded")

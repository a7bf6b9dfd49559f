"""MCP both ways, against the official SDK: `client.run` uses the tools of a real MCP server (mcp_weather.py, written
with the SDK) started over stdio and over streamable HTTP on loopback; and the SDK's own client lists and calls our
tools through `llmclient mcp serve`, over stdio and HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmclient import Client, FakeDriver, ToolCall, ToolError, ToolExecutionError
from llmclient.integrations.mcp import MCPTools
from llmclient.observability import Tracing

HERE = Path(__file__).parent
WEATHER = str(HERE / "mcp_weather.py")
SRC = str(HERE.parent.parent / "src")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serving(command: list[str], port: int) -> Iterator[str]:
    """Start `command` (an HTTP MCP server on `port`), wait until it accepts connections, yield its URL."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(HERE.parent)])}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: {process.stderr.read()!r}"[:2000]) from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


@pytest.fixture(scope="module")
def weather_http() -> Iterator[str]:
    port = _free_port()
    yield from _serving([sys.executable, WEATHER, "http", str(port)], port)


def weather_stdio() -> MCPTools:
    return MCPTools.stdio(sys.executable, [WEATHER, "stdio"])


def _client(replies: list[Any], **options: Any) -> tuple[Client, FakeDriver, InMemorySpanExporter]:
    driver = FakeDriver(replies=replies)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = Client(providers={"fake": driver}, **options)
    client.pipeline.observers = [Tracing(tracer_provider=provider)]
    return client, driver, exporter


async def test_run_calls_the_tools_of_an_sdk_server_over_stdio() -> None:
    replies = [
        ToolCall(id="c1", name="add", arguments={"a": 2, "b": 3}),
        ToolCall(id="c2", name="weather_today", arguments={"city": "Oslo"}),
        "5, and sunny in Oslo.",
    ]
    client, driver, spans = _client(replies)

    def local(text: str) -> str:
        """A local tool next to the server's."""
        return text

    async with client, weather_stdio() as weather:
        listed = {tool.name: tool for tool in (await weather._client.list_tools()).tools}  # type: ignore[union-attr]
        result = await client.run("2 + 3, and the weather in Oslo?", tools=[local, weather], model="fake/agent")
        assert len(client.ledger) == 3  # one record per model call; the MCP calls add none
    assert [m.content for m in result.messages if m.role == "tool"] == ["5", "Sunny, 21°C in Oslo"]
    sent = {tool.name: tool for tool in driver.requests[0].tools or []}
    assert sorted(sent) == ["add", "fail", "local", "slow", "weather_today"]  # "weather.today" as a model may name it
    assert sent["weather_today"].parameters == listed["weather.today"].input_schema  # unchanged
    assert sent["add"].parameters == listed["add"].input_schema
    assert sent["add"].description == "Add two integers."
    tool_spans = sorted(span.name for span in spans.get_finished_spans() if span.name.startswith("execute_tool"))
    assert tool_spans == ["execute_tool add", "execute_tool weather_today"]
    (add_span,) = [s for s in spans.get_finished_spans() if s.name == "execute_tool add"]
    assert dict(add_span.attributes or {})["gen_ai.tool.description"] == "Add two integers."


async def test_server_errors_and_bad_arguments_reach_the_model_as_ours_do(weather_http: str) -> None:
    replies = [
        ToolCall(id="c1", name="fail", arguments={"reason": "no"}),
        ToolCall(id="c2", name="add", arguments={"a": "two", "b": 3}),
        "Sorry.",
    ]
    client, _, _ = _client(replies)
    async with client:
        result = await client.run("Try.", tools=[MCPTools.http(weather_http)], model="fake/agent")
    failed, invalid = (m.content for m in result.messages if m.role == "tool")
    assert failed == "Error: MCPToolError: Error executing tool fail: cannot comply: no"  # the server's text
    assert invalid == "Error: invalid arguments for add: a: 'two' is not of type 'integer'. Fix the call and try again."

    client, _, _ = _client([ToolCall(id="c1", name="fail", arguments={"reason": "no"})])
    async with client:
        with pytest.raises(ToolExecutionError, match="tool fail raised MCPToolError"):
            await client.run("Try.", tools=[MCPTools.http(weather_http)], model="fake/agent", on_tool_error="raise")


async def test_the_tool_timeout_and_cancellation_stop_a_server_call(weather_http: str) -> None:
    slow = ToolCall(id="c1", name="slow", arguments={"seconds": 60})
    client, _, _ = _client([slow, "Gave up."])
    started = time.perf_counter()
    async with client, MCPTools.http(weather_http) as weather:
        result = await client.run("Wait.", tools=[weather], model="fake/agent", tool_timeout=0.5)
        assert result.messages[2].content == "Error: slow timed out after 0.5 s"
        client.driver("fake").add_replies(slow)  # type: ignore[attr-defined]
        run = asyncio.ensure_future(client.run("Wait again.", tools=[weather], model="fake/agent"))
        await asyncio.sleep(0.5)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert (await weather.tools[0].acall({"a": 1, "b": 1})) == "2"  # the connection is still good
    assert time.perf_counter() - started < 20


async def test_tools_of_a_toolset_need_it_open() -> None:
    weather = weather_stdio()
    with pytest.raises(ToolError, match="not open"):
        weather.tools  # noqa: B018
    async with Client(providers={"fake": {"replies": ["hi"]}}) as client:
        with pytest.raises(ToolError, match=r"pass it to client.run"):
            await client.chat("hi", model="fake/x", tools=[weather])


# -- our tools, served to the SDK's client -----------------------------------------------------------------------


def _serve_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "llmclient.cli", "mcp", "serve", "integrations.mcp_tools:TOOLS", *extra]


async def _check_our_tools(client: mcp.Client) -> None:
    from integrations.mcp_tools import add

    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert sorted(listed) == ["add", "boom", "shout"]
    assert listed["add"].input_schema == add.tool.parameters  # our schema, docstring descriptions included
    assert listed["add"].description == "Add two integers."
    result = await client.call_tool("add", {"a": 2, "b": 3})
    assert not result.is_error and result.content[0].text == "5"  # type: ignore[union-attr]
    assert (await client.call_tool("shout", {"text": "hi"})).content[0].text == "HI"  # type: ignore[union-attr]
    bad = await client.call_tool("add", {"a": "two"})
    assert bad.is_error and "invalid arguments for add" in bad.content[0].text  # type: ignore[union-attr]
    boom = await client.call_tool("boom", {"why": "on purpose"})
    assert boom.is_error and boom.content[0].text == "RuntimeError: on purpose"  # type: ignore[union-attr]


async def test_llmclient_mcp_serve_over_stdio_for_the_sdk_client() -> None:
    command, *args = _serve_command()
    env = {"PYTHONPATH": os.pathsep.join([SRC, str(HERE.parent)]), "PATH": os.environ.get("PATH", "")}
    async with mcp.Client(mcp.StdioServerParameters(command=command, args=args, env=env)) as client:
        await _check_our_tools(client)


async def test_llmclient_mcp_serve_over_http_for_the_sdk_client() -> None:
    port = _free_port()
    serving = _serving(_serve_command("--http", "--port", str(port)), port)
    url = next(serving)
    try:
        async with mcp.Client(url) as client:
            await _check_our_tools(client)
    finally:
        serving.close()


def test_mcp_serve_names_what_is_wrong_with_its_argument(capsys: pytest.CaptureFixture[str]) -> None:
    from llmclient.cli import main

    assert main(["mcp", "serve", "no_colon_here"]) == 1
    assert "error: name the tools as module:name" in capsys.readouterr().err
    assert main(["mcp", "serve", "integrations.mcp_tools:MISSING"]) == 1
    assert "cannot load integrations.mcp_tools:MISSING" in capsys.readouterr().err

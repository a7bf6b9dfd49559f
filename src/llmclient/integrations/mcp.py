"""Model Context Protocol both ways, with the official SDK (`pip install 'llmclient[mcp]'`).

- `MCPTools`: an MCP server's tools in `client.run(tools=[...])`, over stdio (a command it starts) or streamable
  HTTP (a URL). The run opens the server (unless it is open already), lists its tools and passes their input
  schemas to the model unchanged; each call goes to the server, under the run's `tool_timeout`, and is traced as
  an `execute_tool` span like any tool. A server's error result (`isError`) and arguments its schema rejects reach
  the model as error messages, exactly as an llmclient tool's exception and invalid arguments do.
- `mcp_server(tools)`: llmclient `@tool` functions as an MCP server that any MCP client can list and call; the
  `llmclient mcp serve module:tools` command runs one over stdio or streamable HTTP.

```python
from llmclient import Client, ToolCall
from llmclient.integrations.mcp import MCPTools, mcp_server

def add(a: int, b: int) -> int:
    \"\"\"Add two integers.\"\"\"
    return a + b

calculator = MCPTools(mcp_server([add]))  # in-process here; MCPTools.stdio(...) or .http(url) in real life
replies = [ToolCall(id="c1", name="add", arguments={"a": 2, "b": 3}), "It is 5."]
async with Client(providers={"fake": {"replies": replies}}) as client:
    result = await client.run("2 + 3?", tools=[calculator], model="fake/agent")
assert result.messages[2].content == "5"
```

MCP tool names may hold characters a model's tool names may not (`weather.today`); those become `_`, and the
call goes out under the server's own name. `import llmclient` never imports the SDK.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from llmclient.errors import MissingExtraError, ToolArgumentsError, ToolError, bound
from llmclient.tools import FunctionTool, Toolset, as_text
from llmclient.types import Tool

try:
    import jsonschema
    import mcp
    import mcp_types
    from pydantic import BaseModel
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("the MCP integration needs the MCP SDK: pip install 'llmclient[mcp]'") from exc

_NOT_A_NAME = re.compile(r"[^a-zA-Z0-9_-]")


class MCPToolError(ToolError):
    """An MCP server answered a tool call with an error result (`isError`); the model is told its text."""


class MCPTool(FunctionTool):
    """One tool of a connected MCP server, runnable like a `FunctionTool`: arguments checked against the server's
    input schema, then sent to the server."""

    def __init__(self, client: mcp.Client, listed: mcp_types.Tool, name: str) -> None:
        self.client = client
        self.remote_name = listed.name
        self.input_schema = dict(listed.input_schema)
        self.tool = Tool(name=name, description=listed.description or "", parameters=self.input_schema)
        self.fn = self.acall
        self.is_async = True
        self.arguments_model = BaseModel
        self._validator = jsonschema.Draft202012Validator(self.input_schema)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.acall(kwargs)

    def __repr__(self) -> str:
        return f"MCPTool({self.name!r})"

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments, or `ToolArgumentsError` with what the server's input schema says is wrong."""
        problems = [
            f"{'.'.join(str(p) for p in error.absolute_path) or 'arguments'}: {error.message}"
            for error in list(self._validator.iter_errors(dict(arguments)))[:8]
        ]
        if problems:
            raise ToolArgumentsError(bound(f"invalid arguments for {self.name}: {'; '.join(problems)}", 1000))
        return dict(arguments)

    async def invoke(self, kwargs: Mapping[str, Any]) -> Any:
        """Call the tool on the server: its result as text, or `MCPToolError` with the server's error text."""
        result = await self.client.call_tool(self.remote_name, dict(kwargs))
        text = result_text(result)
        if result.is_error:
            raise MCPToolError(text or f"{self.remote_name} failed")
        return text


def result_text(result: mcp_types.CallToolResult) -> str:
    """A tool result as the text a model reads: its text parts, else its structured content as JSON; other parts
    (images, audio, resources) are named rather than inlined."""
    texts: list[str] = []
    for part in result.content:
        if isinstance(part, mcp_types.TextContent):
            texts.append(part.text)
        elif isinstance(part, (mcp_types.ImageContent, mcp_types.AudioContent)):
            texts.append(f"[{part.type}: {part.mime_type}]")
        elif isinstance(part, mcp_types.EmbeddedResource):
            texts.append(f"[resource: {part.resource.uri}]")
        else:
            texts.append(f"[{part.type}]")
    if not texts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(texts)


class MCPTools(Toolset):
    """The tools of one MCP server, for `client.run(tools=[...])`.

    Args:
        server: What the SDK's `mcp.Client` connects to: a streamable-HTTP URL, `StdioServerParameters`, a
            transport, or an in-process `Server`/`MCPServer` (tests). `MCPTools.stdio` and `MCPTools.http` make the
            first two.

    Use it as `async with MCPTools(...) as tools:` to keep one connection across several runs; otherwise each run
    connects and closes it.
    """

    def __init__(self, server: Any) -> None:
        self.server = server
        self._client: mcp.Client | None = None
        self._tools: list[MCPTool] = []

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> MCPTools:
        """A server the run starts as a subprocess and talks to over its stdin/stdout."""
        environment = dict(env) if env else None
        return cls(mcp.StdioServerParameters(command=command, args=list(args), env=environment, cwd=cwd))

    @classmethod
    def http(cls, url: str) -> MCPTools:
        """A server at a streamable-HTTP URL (`http://127.0.0.1:8000/mcp`)."""
        return cls(url)

    def __repr__(self) -> str:
        return f"MCPTools({self.server!r})"

    @property
    def tools(self) -> list[MCPTool]:
        """The server's tools, once it is open."""
        if self._client is None:
            raise ToolError("the MCP server is not open: use `async with MCPTools(...)` or pass it to client.run")
        return list(self._tools)

    async def __aenter__(self) -> MCPTools:
        client = mcp.Client(self.server)
        await client.__aenter__()
        try:
            self._tools = await _listed(client)
        except BaseException:
            await client.__aexit__(None, None, None)
            raise
        self._client = client
        return self

    async def __aexit__(self, *exc: Any) -> None:
        client, self._client, self._tools = self._client, None, []
        if client is not None:
            # Closed as if the block ended cleanly: the block's own error (a tool's, the model's, a cancellation)
            # then propagates as it is, not wrapped in the SDK's task-group ExceptionGroup.
            await client.__aexit__(None, None, None)

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Sequence[FunctionTool]]:
        """The tools, with the server connected for the block (and closed after, unless it was open before)."""
        if self._client is not None:
            yield self.tools
            return
        async with self:
            yield self.tools


async def _listed(client: mcp.Client) -> list[MCPTool]:
    listed: list[mcp_types.Tool] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        listed.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return [MCPTool(client, tool, _NOT_A_NAME.sub("_", tool.name)[:64] or "tool") for tool in listed]


# -- serving our tools -------------------------------------------------------------------------------------------


def mcp_server(tools: Iterable[Callable[..., Any] | FunctionTool], *, name: str = "llmclient") -> Any:
    """An MCP server (the SDK's low-level `mcp.server.Server`) that lists `tools` with their llmclient schemas and
    runs them when called: invalid arguments and a tool's exception come back as error results (`isError`).

    Run it with `serve`, or on any transport the SDK offers.
    """
    from mcp.server import Server

    from llmclient.tools.loop import runnable_tools

    runnable = runnable_tools(tools)
    listing = mcp_types.ListToolsResult(
        tools=[
            mcp_types.Tool(name=t.name, description=t.tool.description, input_schema=t.tool.parameters)
            for t in runnable.values()
        ]
    )

    async def list_tools(context: Any, params: Any) -> mcp_types.ListToolsResult:
        return listing

    async def call_tool(context: Any, params: mcp_types.CallToolRequestParams) -> mcp_types.CallToolResult:
        function = runnable.get(params.name)
        if function is None:
            return _error(f"unknown tool {params.name!r}; the tools are: {', '.join(sorted(runnable))}")
        try:
            value = await function.invoke(function.validate(params.arguments or {}))
        except ToolArgumentsError as exc:
            return _error(exc.message)
        except Exception as exc:  # reported to the caller, as the tool loop reports it to a model
            return _error(f"{type(exc).__name__}: {bound(str(exc), 2000)}")
        return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=as_text(value))])

    return Server(name, on_list_tools=list_tools, on_call_tool=call_tool)


def _error(text: str) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=text)], is_error=True)


async def serve(server: Any, *, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run an MCP server until it is stopped: over stdin/stdout, or streamable HTTP at `http://host:port/mcp`."""
    if transport == "stdio":
        from mcp.server.stdio import stdio_server

        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return
    if transport != "http":
        raise ValueError(f"unknown transport {transport!r}; use stdio or http")
    import uvicorn

    app = server.streamable_http_app(host=host)
    await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).serve()


__all__ = ["MCPTool", "MCPToolError", "MCPTools", "mcp_server", "result_text", "serve"]

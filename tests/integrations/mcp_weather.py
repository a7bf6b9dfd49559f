"""A real MCP server, written with the official SDK (not with llmclient), for tests/integrations/test_mcp.py.

python mcp_weather.py stdio           # over stdin/stdout
python mcp_weather.py http 8123       # streamable HTTP at http://127.0.0.1:8123/mcp
"""

from __future__ import annotations

import sys

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("weather")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(name="weather.today")
def today(city: str, unit: str = "C") -> str:
    """Today's weather in a city."""
    return f"Sunny, 21°{unit} in {city}"


@server.tool()
def fail(reason: str) -> str:
    """A tool that always fails, with the reason it was given."""
    raise ToolError(f"cannot comply: {reason}")


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await anyio.sleep(seconds)
    return "woke up"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))

"""`llmclient mcp serve module:tools`: llmclient `@tool` functions as an MCP server, for any MCP client.

    llmclient mcp serve myapp.tools:TOOLS                 # stdio: what a desktop MCP client starts
    llmclient mcp serve myapp.tools:TOOLS --http --port 8000   # streamable HTTP at http://127.0.0.1:8000/mcp

`module:name` names a list of tools (functions, `FunctionTool`s, LangChain tools) or one tool; the module is
imported with the current directory on the path, as uvicorn imports an app. Needs `pip install 'llmclient[mcp]'`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, TextIO

from llmclient.errors import ConfigurationError


def load_tools(spec: str) -> list[Any]:
    """The tools `module:name` names (a list, or a single tool), imported with the current directory on the path."""
    module_name, found, attribute = spec.partition(":")
    if not (found and module_name and attribute):
        raise ConfigurationError(f"name the tools as module:name (e.g. myapp.tools:TOOLS), not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load {spec}: {exc}") from exc
    return list(value) if isinstance(value, (list, tuple)) else [value]


async def cmd_mcp(args: argparse.Namespace, out: TextIO) -> int:
    from llmclient.integrations.mcp import mcp_server, serve

    server = mcp_server(load_tools(args.tools), name=args.name)
    await serve(server, transport="http" if args.http else "stdio", host=args.host, port=args.port)
    return 0


def add_parser(command: Any) -> None:
    """The `mcp` command's arguments."""
    mcp = command("mcp", help="serve tools over the Model Context Protocol")
    mcp.add_argument("action", choices=["serve"], help="serve: run the tools as an MCP server")
    mcp.add_argument("tools", help="module:name of a list of tools (or of one tool)")
    mcp.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    mcp.add_argument("--host", default="127.0.0.1", help="with --http (default 127.0.0.1)")
    mcp.add_argument("--port", type=int, default=8000, help="with --http (default 8000); the path is /mcp")
    mcp.add_argument("--name", default="llmclient", help="the server name MCP clients see")
    mcp.set_defaults(handler=cmd_mcp)

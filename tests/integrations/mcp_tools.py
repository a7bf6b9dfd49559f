"""llmclient tools that `llmclient mcp serve integrations.mcp_tools:TOOLS` serves in tests/integrations/test_mcp.py."""

from __future__ import annotations

from llmclient import tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


@tool
async def shout(text: str) -> str:
    """Upper-case text.

    Args:
        text: What to shout.
    """
    return text.upper()


def boom(why: str) -> str:
    """Always raises.

    Args:
        why: The message of the error.
    """
    raise RuntimeError(why)


TOOLS = [add, shout, boom]

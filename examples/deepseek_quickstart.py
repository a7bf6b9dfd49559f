"""Chat with DeepSeek, without and with thinking, and a tool loop in thinking mode. Reads DEEPSEEK_API_KEY."""

from __future__ import annotations

import asyncio
import os
import sys

from llmclient import Client


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def main() -> int:
    if not os.environ.get("DEEPSEEK_API_KEY"):
        print("Set DEEPSEEK_API_KEY to run this example (a few small calls).")
        return 0
    async with Client() as client:
        reply = await client.chat(
            "你好，请用一句话介绍你自己。", model="deepseek/deepseek-flash", thinking=False, max_tokens=60
        )
        print(reply.text)
        print(
            f"cached prompt tokens: {reply.usage.cached_input_tokens}, cost ${reply.cost.total if reply.cost else '?'}"
        )
        reasoned = await client.chat("Which is larger, 9.11 or 9.8?", model="deepseek/deepseek-flash")
        print("reasoning:", (reasoned.reasoning or "")[:200], "…")
        print("answer:", reasoned.text)
        # Thinking mode with tools: the reasoning of each tool call goes back, as DeepSeek requires.
        result = await client.run(
            "What is 17 × 23, then plus 4?", tools=[multiply, add], model="deepseek/deepseek-flash"
        )
        print("tool loop:", result.response.text, f"({result.steps} steps, ${result.cost})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

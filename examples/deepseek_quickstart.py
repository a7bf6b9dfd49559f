"""Chat with DeepSeek, including the reasoner's chain of thought. Reads DEEPSEEK_API_KEY from the environment."""

from __future__ import annotations

import asyncio
import os
import sys

from llmclient import Client


async def main() -> int:
    if not os.environ.get("DEEPSEEK_API_KEY"):
        print("Set DEEPSEEK_API_KEY to run this example (two small calls).")
        return 0
    async with Client() as client:
        reply = await client.chat("你好，请用一句话介绍你自己。", model="deepseek/deepseek-chat", max_tokens=60)
        print(reply.text)
        print(
            f"cached prompt tokens: {reply.usage.cached_input_tokens}, cost ${reply.cost.total if reply.cost else '?'}"
        )
        reasoned = await client.chat("Which is larger, 9.11 or 9.8?", model="deepseek/deepseek-reasoner")
        print("reasoning:", (reasoned.reasoning or "")[:200], "…")
        print("answer:", reasoned.text)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

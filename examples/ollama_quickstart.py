"""Chat with a model served by Ollama (default http://localhost:11434, or OLLAMA_HOST).

ollama pull qwen2:1.5b && python examples/ollama_quickstart.py
"""

from __future__ import annotations

import asyncio
import sys

from llmclient import APIConnectionError, Client, UnknownModelError


async def main(model: str = "ollama/qwen2:1.5b") -> int:
    async with Client() as client:
        try:
            reply = await client.chat("Why is the sky blue? One sentence.", model=model, max_tokens=60)
        except (APIConnectionError, UnknownModelError) as error:
            print(error.message)  # says to start `ollama serve`, or which `ollama pull` to run
            return 0
        print(reply.text)
        print(reply.usage, f"load {reply.raw['load_duration'] / 1e9:.2f} s" if reply.raw else "")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:2])))

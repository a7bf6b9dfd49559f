"""Stream a reply from SmolLM2-135M running in-process with llama.cpp, then show what the stream used."""

from __future__ import annotations

import asyncio

from llmclient import Client


async def main() -> None:
    async with Client() as client:
        stream = client.stream(
            "List three colours, one per line.", model="llamacpp/smollm2", max_tokens=40, temperature=0
        )
        async for chunk in stream:
            print(chunk.delta, end="", flush=True)
        response = stream.response
        print(f"\n[{response.finish_reason}; {response.usage.prompt_tokens} in, {response.usage.output_tokens} out]")


if __name__ == "__main__":
    asyncio.run(main())

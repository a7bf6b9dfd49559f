"""Quickstart: a chat reply, a streamed reply, and what each used, against any OpenAI-compatible server.

Run it with `make demo-server` (which starts llama-cpp-python's server with SmolLM2-135M-Instruct on loopback), or point
it at your own server:

    OPENAI_COMPATIBLE_BASE_URL=http://127.0.0.1:8000/v1 python examples/quickstart.py --model openai-compatible/my-model
"""

from __future__ import annotations

import argparse
import asyncio

from llmclient import Client, Usage


def describe(usage: Usage) -> str:
    how = "estimated locally" if usage.estimated else "reported by the server"
    return f"{usage.input_tokens} input + {usage.output_tokens} output tokens ({how})"


async def main(model: str) -> None:
    # A server on your own machine costs nothing; unpriced models report cost None ("unknown is not free").
    async with Client(timeout=120, prices={model: 0}) as client:
        reply = await client.chat(
            [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": "What is the capital of France? Answer in one sentence."},
            ],
            model=model,
            temperature=0,
            max_tokens=48,
        )
        print("chat:", reply.text.strip())
        print("  usage:", describe(reply.usage))

        print("stream: ", end="", flush=True)
        stream = client.stream("Write one short sentence about the sea.", model=model, temperature=0, max_tokens=48)
        async for chunk in stream:
            print(chunk.delta, end="", flush=True)
        print()
        print("  usage:", describe(stream.response.usage))

        total = client.ledger.usage()
        tokens = total.input_tokens + total.output_tokens
        print(f"ledger: {len(client.ledger)} calls, {tokens} tokens in all, ${client.ledger.total()} spent")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="openai-compatible/smollm2")
    asyncio.run(main(parser.parse_args().model))

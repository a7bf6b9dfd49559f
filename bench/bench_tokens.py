"""Token counting speed: llmclient's counts against raw tiktoken, raw bpe-openai and a plain loop over OpenAI's rule.

* text: `llmclient.tokens.count_text` and `Client.count_tokens` vs `len(encoding.encode_ordinary(text))` (tiktoken,
  what count_text used before) and bpe-openai's Rust `count(text)` (what it uses now), in cl100k_base and
  o200k_base, over a mixed corpus (English, Chinese, code, emoji); throughput ratio, target ≥ 0.9× raw tiktoken.
* messages: `count_messages` vs the openai-cookbook function written as a plain loop over tiktoken; time ratio,
  target ≤ 1.2×.

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
from llmclient.tokens import count_messages, count_text, files, load_encoding
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


def raw_counters(name: str) -> tuple[Any, Callable[[str], int]]:
    """tiktoken's Encoding from the table bundled with llmclient, and bpe-openai's Rust counter (the extra)."""
    tiktoken = files.bundled_encoding(name)
    rust = files.bpe_openai_counter(name)
    assert tiktoken is not None and rust is not None, "pip install 'llmclient[tokenizers]'"
    return tiktoken._encode.__self__, rust._count


def run(quick: bool) -> dict[str, Any]:
    texts = corpus(400 if quick else 4000)
    repeats = 3 if quick else 7
    result: dict[str, Any] = {"texts": len(texts), "characters": sum(map(len, texts))}
    client = Client()
    for name, model in (("cl100k_base", "gpt-4"), ("o200k_base", "gpt-4o")):
        encoding, rust = raw_counters(name)
        load_encoding(name)  # loaded once, before timing, as in a warm process
        assert [len(encoding.encode_ordinary(t)) for t in texts[:200]] == [rust(t) for t in texts[:200]]

        async def through_client(model: str = model) -> None:
            for text in texts:
                await client.count_tokens(text, model=f"openai/{model}")

        result[name] = {
            "tiktoken_s": best_of(repeats, lambda e=encoding: [len(e.encode_ordinary(t)) for t in texts]),
            "bpe_s": best_of(repeats, lambda r=rust: [r(t) for t in texts]),
            "ours_s": best_of(repeats, lambda m=model: [count_text(t, m).tokens for t in texts]),
            "client_s": best_of(repeats, lambda f=through_client: asyncio.run(f())),
        }

    raw, _ = raw_counters("cl100k_base")
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
    result.update(conversations=len(conversations), plain_s=plain_s, messages_s=messages_s)
    return result


def markdown(result: dict[str, Any], command: str) -> str:
    mb = result["characters"] / 1e6
    message_ratio = result["messages_s"] / result["plain_s"]
    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    lines = [
        "## Token counting",
        "",
        environment_line(),
        "",
        f"Command: `{command}`",
        "",
        f"{result['texts']} distinct texts ({mb:.2f} M characters: English, Chinese, code with emoji, accented "
        "text), both encodings from the files the `bpe-openai` wheel ships, best of several runs. Messages: "
        f"{result['conversations']} four-message conversations.",
        "",
        "| encoding | what | time s | throughput vs raw tiktoken |",
        "|---|---|---:|---:|",
    ]
    targets = []
    for name in ("cl100k_base", "o200k_base"):
        row = result[name]
        ratio = lambda seconds, base=row["tiktoken_s"]: f"{base / seconds:.2f}×"  # noqa: E731
        lines += [
            f"| {name} | raw tiktoken `len(encoding.encode_ordinary(text))` | {row['tiktoken_s']:.3f} | 1.00× |",
            f"| {name} | raw bpe-openai `count(text)` (Rust) | {row['bpe_s']:.3f} | {ratio(row['bpe_s'])} |",
            f"| {name} | `llmclient.tokens.count_text` | {row['ours_s']:.3f} | {ratio(row['ours_s'])} |",
            f"| {name} | `await Client().count_tokens(text)` | {row['client_s']:.3f} | {ratio(row['client_s'])} |",
        ]
        text_ratio = row["tiktoken_s"] / row["ours_s"]
        targets.append(f"{name} `count_text` {text_ratio:.2f}× ({verdict(text_ratio >= 0.9)})")
    lines += [
        "",
        "| what | time s | vs plain loop |",
        "|---|---:|---:|",
        f"| openai-cookbook `num_tokens_from_messages` (plain loop, tiktoken) | {result['plain_s']:.3f} | 1.00× |",
        f"| `llmclient.tokens.count_messages` | {result['messages_s']:.3f} | {message_ratio:.2f}× |",
        "",
        f"Targets: text throughput ≥ 0.90× raw tiktoken — {'; '.join(targets)}; message counting ≤ 1.20× the "
        f"plain loop — {message_ratio:.2f}× ({verdict(message_ratio <= 1.2)}).",
    ]
    return "\n".join(lines)


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

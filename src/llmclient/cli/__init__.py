"""The `llmclient` command: chat, embed, count, similarity, models, cost and compare from a terminal.

    llmclient chat "你好" -m llamacpp/smollm2          # streams the reply
    echo "Summarise: …" | llmclient chat -m fake/echo    # a piped prompt (its trailing newline dropped)
    llmclient count "some text" -m openai/gpt-4        # says whether the count is exact
    llmclient --ledger postgresql://llm@db/llm cost --by budget    # the fleet's shared ledger
    llmclient db migrate --url postgresql://llm@db/llm             # create or upgrade its schema
    llmclient compare -m fake/a -m fake/b prompts.jsonl
    llmclient cost --by model
    llmclient models --json                               # the model catalog, each entry sourced and dated
    llmclient prices update --from model_prices.json      # refresh it from a LiteLLM-format file or URL
    llmclient mcp serve myapp.tools:TOOLS                          # @tool functions as an MCP server (stdio)

It reads the optional configuration file (see `llmclient.config`) and records every call in a SQLite ledger
(`--ledger`, `LLMCLIENT_LEDGER`, the file's `ledger`, else `~/.local/share/llmclient/ledger.db`), which
`llmclient cost` reports on. Errors print one `error:` line (a traceback with `-v`) and exit with status 1; Python
warnings print one `warning:` line; hints name flags and configuration keys, not Python arguments. A misspelt option
shows its command's usage and the closest option. The global options (`-v`, `--config`, `--ledger`, `--timeout`) go
before or after the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from llmclient.cli.catalog import add_commands
from llmclient.cli.ledger import cmd_cost, cmd_db, default_ledger, ledger_location, print_json
from llmclient.cli.mcp import add_parser as add_mcp_parser
from llmclient.cli.terminal import in_cli_terms, loading, show_warning
from llmclient.client import Client
from llmclient.config import client_options
from llmclient.errors import LLMClientError, did_you_mean
from llmclient.types import Message, to_messages


def _client(args: argparse.Namespace) -> Client:
    options = client_options(args.config)
    if args.ledger:
        scheme, rest = ledger_location(args.ledger)
        options["ledger"] = args.ledger if scheme == "postgresql" else f"sqlite:///{Path(rest).expanduser()}"
    if "ledger" not in options:  # the command's own default place: made on first use (a path given is not)
        default_ledger().parent.mkdir(parents=True, exist_ok=True)
        options["ledger"] = f"sqlite:///{default_ledger()}"
    if args.timeout is not None:
        options["timeout"] = args.timeout
    return Client(**options)


def _stdin(what: str) -> str:
    """Piped input without its trailing newline (the one `echo` adds); an error on a terminal, where a read would
    wait for input the user does not know is expected."""
    text = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read().rstrip("\r\n")
    if not text:
        raise LLMClientError(f"give {what} as an argument, or pipe it in")
    return text


def _usage_line(response: Any) -> str:
    usage = response.usage
    cost = "unknown cost" if response.cost is None else f"${response.cost.total:.6f}"
    how = "estimated" if usage.estimated else "reported"
    return f"[{usage.prompt_tokens} in, {usage.output_tokens} out ({how}), {cost}]"


# -- commands -----------------------------------------------------------------------------------------------------


async def cmd_chat(args: argparse.Namespace, out: TextIO) -> int:
    messages: list[Message] = []
    if args.system:
        messages.append(Message(role="system", content=args.system))
    prompt = _stdin("a prompt") if args.prompt in (None, "-") else args.prompt
    messages.append(Message(role="user", content=prompt))
    options = {"model": args.model, "temperature": args.temperature, "max_tokens": args.max_tokens, "tags": args.tag}
    async with _client(args) as client:
        waiting = loading(client, args.model, sys.stderr)
        if args.json:
            async with waiting:
                reply = await client.chat(messages, **options)
            print_json(reply.model_dump(mode="json", exclude={"raw"}), out)
            return 0
        stream = client.stream(messages, **options)
        async with waiting:  # until the first chunk: a local model loads on the first call
            chunk = await anext(aiter(stream), None)
        while chunk is not None:
            out.write(chunk.delta)
            out.flush()
            chunk = await anext(aiter(stream), None)
        out.write("\n")
        if args.usage:
            out.write(_usage_line(stream.response) + "\n")
    return 0


async def cmd_embed(args: argparse.Namespace, out: TextIO) -> int:
    async with _client(args) as client, loading(client, args.model, sys.stderr):
        result = await client.embed(args.texts, model=args.model)
    if args.json:  # compact: one line, not one float per line
        data = {"model": result.model, "vectors": result.vectors.tolist(), "usage": result.usage.model_dump()}
        out.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
        return 0
    for text, vector in zip(args.texts, result.vectors, strict=True):
        preview = ", ".join(f"{value:.4f}" for value in vector[:4])
        out.write(f"{text[:40]!r}: {len(vector)} dimensions [{preview}, …]\n")
    return 0


async def cmd_count(args: argparse.Namespace, out: TextIO) -> int:
    if args.messages:
        value: Any = to_messages(json.loads(Path(args.messages).read_text(encoding="utf-8")))
    elif args.file:
        value = Path(args.file).read_text(encoding="utf-8")
    elif args.text is not None and args.text != "-":
        value = args.text
    else:
        value = _stdin("text to count")
    async with _client(args) as client:
        count = await client.count_tokens(value, model=args.model)
    if args.json:
        print_json(count.model_dump(), out)
    else:
        kind = "exact" if count.exact else "estimated"
        out.write(f"{count.tokens} tokens ({kind}, {count.tokenizer})\n")
    return 0


async def cmd_similarity(args: argparse.Namespace, out: TextIO) -> int:
    async with _client(args) as client:
        score = await client.similarity(args.a, args.b, model=args.model, metric=args.metric)
    out.write(f"{float(score):.6f}\n")
    return 0


def _plain(value: Decimal) -> str:
    """A price as pricing pages write it: 0.28, not 0.28000000 or 2.8E-1."""
    return format(value.normalize(), "f")


async def cmd_compare(args: argparse.Namespace, out: TextIO) -> int:
    cases = [json.loads(line) for line in Path(args.prompts).read_text(encoding="utf-8").splitlines() if line.strip()]
    for number, case in enumerate(cases, 1):
        if not isinstance(case, dict) or not isinstance(case.get("prompt"), str):
            raise LLMClientError(f"{args.prompts}:{number}: each line must be a JSON object with a 'prompt' string")
    rows: list[dict[str, Any]] = []
    async with _client(args) as client:
        for case in cases:
            messages = ([{"role": "system", "content": case["system"]}] if case.get("system") else []) + [
                {"role": "user", "content": case["prompt"]}
            ]
            for model in args.model:
                started = time.perf_counter()
                reply = await client.chat(
                    messages, model=model, temperature=args.temperature, max_tokens=args.max_tokens, tags=["compare"]
                )
                expected = case.get("expected")
                rows.append(
                    {
                        "prompt": case["prompt"],
                        "model": model,
                        "output": reply.text,
                        "latency_s": round(time.perf_counter() - started, 4),
                        "input_tokens": reply.usage.prompt_tokens,
                        "output_tokens": reply.usage.output_tokens,
                        "cost_usd": None if reply.cost is None else str(reply.cost.total),
                        "expected": expected,
                        "correct": None if expected is None else _normalise(reply.text) == _normalise(expected),
                    }
                )
    summary = _compare_summary(rows, args.model)
    if args.json:
        print_json({"results": rows, "summary": summary}, out)
        return 0
    for row in rows:
        verdict = "" if row["correct"] is None else (" ✓" if row["correct"] else " ✗")
        out.write(f"[{row['model']}] {row['prompt'][:60]!r}{verdict}\n    {row['output'].strip()[:200]}\n")
    out.write(f"\n{'model':<32} {'exact match':>12} {'mean latency s':>15} {'tokens':>8} {'cost USD':>12}\n")
    for model, s in summary.items():
        score = "-" if s["scored"] == 0 else f"{s['correct']}/{s['scored']}"
        cost = "unknown" if s["cost_usd"] is None else f"{Decimal(s['cost_usd']):.6f}"
        out.write(f"{model:<32} {score:>12} {s['mean_latency_s']:>15.3f} {s['tokens']:>8} {cost:>12}\n")
    return 0


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold().rstrip(".!")


def _compare_summary(rows: list[dict[str, Any]], models: Sequence[str]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for model in models:
        mine = [row for row in rows if row["model"] == model]
        scored = [row for row in mine if row["correct"] is not None]
        costs = [row["cost_usd"] for row in mine]
        summary[model] = {
            "prompts": len(mine),
            "scored": len(scored),
            "correct": sum(1 for row in scored if row["correct"]),
            "accuracy": (sum(1 for row in scored if row["correct"]) / len(scored)) if scored else None,
            "mean_latency_s": sum(row["latency_s"] for row in mine) / len(mine) if mine else 0.0,
            "tokens": sum(row["input_tokens"] + row["output_tokens"] for row in mine),
            "cost_usd": None if any(c is None for c in costs) else str(sum((Decimal(c) for c in costs), Decimal(0))),
        }
    return summary


# -- argument parsing ---------------------------------------------------------------------------------------------


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmclient")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "unknown"


GLOBAL_DEFAULTS: dict[str, Any] = {"verbose": False, "config": None, "ledger": None, "timeout": None}
MODEL_HELP = "a model id (provider/model) or an alias; default: the configuration's default_model, or $LLMCLIENT_MODEL"


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def _global_options() -> argparse.ArgumentParser:
    # Added to the root and to every command, defaults suppressed so a value given after the command is not
    # overwritten by the root's default (main() fills in what neither gave).
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    options.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="configuration file (default: $LLMCLIENT_CONFIG or ~/.config/llmclient/config.toml)",
    )
    options.add_argument(
        "--ledger",
        default=argparse.SUPPRESS,
        help="ledger to record into / report from: a SQLite file (its folder must exist) or postgresql://...",
    )
    options.add_argument(
        "--timeout",
        type=_seconds,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="the longest a call may take, retries included (default: the configuration's timeout, else 600)",
    )
    return options


def parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    common = _global_options()
    root = argparse.ArgumentParser(prog="llmclient", description="One client for every LLM provider.", parents=[common])
    root.add_argument("--version", action="version", version=f"llmclient {_version()}")
    commands = root.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], **kwargs)

    _add_call_commands(command)  # chat, embed, count, similarity
    add_commands(command)  # models, prices
    _add_report_commands(command)  # cost, db, compare
    add_mcp_parser(command)
    root.set_defaults(commands=commands.choices)
    return root


Command = Callable[..., argparse.ArgumentParser]


def _add_call_commands(command: Command) -> None:
    chat = command("chat", help="send a prompt and stream the reply")
    chat.add_argument("prompt", nargs="?", help="the prompt; without it (or with -) the prompt is read from stdin")
    chat.add_argument("-m", "--model", help=MODEL_HELP)
    chat.add_argument("-s", "--system", help="a system prompt")
    chat.add_argument("-t", "--temperature", type=float, help="sampling temperature, 0 to 2 (default: the model's)")
    chat.add_argument("--max-tokens", type=int, help="the most tokens the reply may have (default: the model's)")
    chat.add_argument("--tag", action="append", default=[], help="a ledger tag (repeatable)")
    chat.add_argument("--usage", action="store_true", help="print tokens and cost after the reply")
    chat.add_argument("--json", action="store_true", help="print the whole response as JSON (no streaming)")
    chat.set_defaults(handler=cmd_chat)

    embed = command("embed", help="embed texts")
    embed.add_argument("texts", nargs="+", help="the texts to embed")
    embed.add_argument("-m", "--model", help=MODEL_HELP)
    embed.add_argument("--json", action="store_true", help="print the vectors and usage as JSON")
    embed.set_defaults(handler=cmd_embed)

    count = command("count", help="count tokens in text, a file, or messages JSON")
    count.add_argument("text", nargs="?", help="the text; without it (or with -) it is read from stdin")
    count.add_argument("-m", "--model", help=MODEL_HELP)
    count.add_argument("-f", "--file", help="count a text file")
    count.add_argument("--messages", help="count an OpenAI-format messages JSON file (with the chat framing)")
    count.add_argument("--json", action="store_true", help="print the count as JSON")
    count.set_defaults(handler=cmd_count)

    similarity = command("similarity", help="how similar two texts are")
    similarity.add_argument("a", help="a text")
    similarity.add_argument("b", help="the text to compare it with")
    similarity.add_argument("-m", "--model", help="an embedding model; " + MODEL_HELP)
    similarity.add_argument(
        "--metric", default="cosine", choices=["cosine", "dot", "euclidean"], help="how to compare (default: cosine)"
    )
    similarity.set_defaults(handler=cmd_similarity)


def _add_report_commands(command: Command) -> None:
    cost = command("cost", help="report from the ledger (SQLite, or the fleet's PostgreSQL)")
    cost.add_argument(
        "--by",
        default="model",
        choices=["model", "provider", "tag", "day", "deployment", "budget", "call"],
        help="group by (budget: shared budgets on PostgreSQL; call: one row each)",
    )
    cost.add_argument("--format", default="table", choices=["table", "csv", "json"], help="default: a table")
    cost.set_defaults(handler=cmd_cost)

    database = command("db", help="the fleet's PostgreSQL store: schema and spooled records")
    database.add_argument(
        "action",
        choices=["migrate", "status", "flush"],
        help="migrate: create or upgrade the schema; status: its version; flush: upload spooled records",
    )
    database.add_argument("--url", help="postgresql://... (default: $LLMCLIENT_DATABASE_URL)")
    database.set_defaults(handler=cmd_db)

    compare = command("compare", help="run the same prompts on several models, side by side")
    compare.add_argument("prompts", help='JSONL: {"prompt": ..., "expected": ... (optional), "system": ...}')
    compare.add_argument("-m", "--model", action="append", required=True, help="a model (repeat for each)")
    compare.add_argument("-t", "--temperature", type=float, default=0.0, help="sampling temperature (default: 0)")
    compare.add_argument("--max-tokens", type=int, default=256, help="the most tokens each reply may have")
    compare.add_argument("--json", action="store_true", help="print every result and the summary as JSON")
    compare.set_defaults(handler=cmd_compare)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments; one that no command takes is reported with its command's usage and the closest option."""
    root = parser()
    args, unknown = root.parse_known_args(argv)
    if unknown:
        command = args.commands[args.command]
        options = [flag for action in command._actions for flag in action.option_strings]
        hints = "".join(did_you_mean(word.partition("=")[0], options) for word in unknown if word.startswith("-"))
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hints}")
    del args.commands
    return args


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 1 an error, 2 bad arguments)."""
    args = _parse(argv)
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    stream = out or sys.stdout
    try:
        with warnings.catch_warnings():
            if not sys.warnoptions:  # each warning once per place, as Python's default (unless -W says otherwise)
                warnings.simplefilter("default")
            warnings.showwarning = show_warning
            status: int = asyncio.run(args.handler(args, stream))
        return status
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except (LLMClientError, OSError, ValueError) as exc:
        if args.verbose:
            raise
        sys.stderr.write(f"error: {in_cli_terms(str(exc))}\n")
        return 1

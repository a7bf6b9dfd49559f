"""The command line's terminal manners: warnings and errors as one line in its own terms, a spinner while waiting."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TextIO

from llmclient.errors import LLMClientError

if TYPE_CHECKING:
    from llmclient.client import Client


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A warning as one line, without the Python source location a command's user has no use for."""
    (file or sys.stderr).write(f"warning: {in_cli_terms(str(message))}\n")


# Hints written for the Python API, in the command's terms (flags and configuration-file keys).
_CLI_TERMS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"Set one with Client\(prices=\{'([^']+)': \{\.\.\.\}\}\)\."),
        r'Set one under [prices."\1"] in the configuration file (see llmclient models).',
    ),
    (re.compile(r"Client\(prices=\.\.\.\) or pass allow_unknown_prices=True"), "[prices] in the configuration file"),
    (
        re.compile(r"pass model='provider/model', Client\(default_model=\.\.\.\) or set LLMCLIENT_MODEL"),
        "pass -m provider/model, set default_model in the configuration file, or set LLMCLIENT_MODEL",
    ),
    (
        re.compile(r"pass Client\(providers=\{'([^']+)': \{'base_url': '([^']+)'\}\}\)"),
        r"set base_url = '\2' under [providers.\1] in the configuration file",
    ),
    (
        re.compile(r"pass Client\(providers=\{'([^']+)': \{'api_key': \.\.\.\}\}\)"),
        r"put api_key under [providers.\1] in the configuration file (chmod 600)",
    ),
    (re.compile(r" \(strict_params=True raises instead\)"), ""),
    (re.compile(r"pass max_tokens="), "pass --max-tokens"),
]


def in_cli_terms(text: str) -> str:
    """A library message with its Python-API hints rewritten for the command line."""
    for pattern, replacement in _CLI_TERMS:
        text = pattern.sub(replacement, text)
    return text


@contextlib.asynccontextmanager
async def loading(client: Client, model: str | None, stream: TextIO) -> AsyncIterator[None]:
    """A spinner on a terminal while an in-process model may be loading (its first call); nothing otherwise."""
    try:
        model_id = client.resolve(model)
        local = not client.driver(model_id.provider).capabilities.http
    except LLMClientError:
        local = False  # the call itself will say what is wrong
    if not (local and stream.isatty()):
        yield
        return
    async with spinner(f"loading {model_id}", stream):
        yield


@contextlib.asynccontextmanager
async def spinner(label: str, stream: TextIO, interval: float = 0.1) -> AsyncIterator[None]:
    """Draw `label` and a turning wheel on `stream` until the block ends, then clear the line."""

    async def spin() -> None:
        for frame in _cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
            stream.write(f"\r{frame} {label}")
            stream.flush()
            await asyncio.sleep(interval)

    task = asyncio.create_task(spin())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        stream.write("\r" + " " * (len(label) + 2) + "\r")
        stream.flush()


def _cycle(frames: str) -> Any:
    import itertools

    return itertools.cycle(frames)

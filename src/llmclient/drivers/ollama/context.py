"""What the Ollama driver asks the server about models: the context guard and the model list and pulls.

Ollama cuts a prompt that does not fit `num_ctx` without an error, so the guard learns each model's context length
and capabilities (`/api/show`), refuses a prompt that cannot fit, sizes `num_ctx` for prompt and reply, and warns
when Ollama evaluated clearly fewer prompt tokens than were counted.
"""

from __future__ import annotations

import asyncio
import json
import math
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from llmclient import tokens
from llmclient.errors import (
    APIError,
    ContextWindowExceededError,
    ResponseFormatError,
    StreamDecodeError,
    StreamInterruptedError,
    UnknownModelError,
    UnsupportedCapabilityError,
)
from llmclient.http import HTTPClient
from llmclient.types import ChatRequest, TokenCount


class OllamaTruncationWarning(UserWarning):
    """Ollama evaluated clearly fewer prompt tokens than were counted locally: it probably cut the prompt."""


@dataclass(frozen=True)
class ModelInfo:
    """What `/api/show` says about a model."""

    context_length: int | None
    capabilities: frozenset[str] | None  # None: an Ollama too old to list them


@dataclass(frozen=True)
class Sent:
    """A request body as sent, with the prompt tokens counted for it and the `num_ctx` it runs in (None: the
    server's default)."""

    body: dict[str, Any]
    counted: TokenCount
    num_ctx: int | None


class ContextGuard:
    """Checks that prompts fit and sizes `num_ctx`, with one `/api/show` request per model.

    Args:
        http: The driver's HTTP client.
        provider: The provider name errors report.
    """

    def __init__(self, http: HTTPClient, provider: str) -> None:
        self._http = http
        self._provider = provider
        self._models: dict[str, asyncio.Future[ModelInfo]] = {}  # per model the server was asked about
        self._num_ctx: dict[str, int] = {}  # per model: the context window last sent

    async def fit(
        self,
        request: ChatRequest,
        counted: TokenCount,
        *,
        tools: bool,
        fixed: int | None,
        min_num_ctx: int,
        output_reserve: int,
    ) -> int | None:
        """Raise unless the prompt fits the model (and the model takes tools, if sent); the `num_ctx` to send.

        Args:
            request: The request.
            counted: Its prompt tokens, counted locally.
            tools: Whether tools are sent.
            fixed: The `num_ctx` the driver or the call sets, if any: then nothing is sized (None is returned).
            min_num_ctx: The smallest `num_ctx` to send.
            output_reserve: Tokens kept free for the reply when the call gives no `max_tokens`.
        """
        info = await self.model_info(request.model)
        if tools and info.capabilities is not None and "tools" not in info.capabilities:
            raise UnsupportedCapabilityError(
                f"{request.model} does not support tools; it can do: {', '.join(sorted(info.capabilities))}",
                provider=self._provider,
                model=request.model,
            )
        window = min((size for size in (fixed, info.context_length) if size), default=None)
        if window is not None and counted.tokens >= window:
            how = "" if counted.exact else f" (estimated with {counted.tokenizer}; tokenizer= counts exactly)"
            limit = f"num_ctx={fixed}" if window == fixed else f"a context window of {window} tokens"
            raise ContextWindowExceededError(
                f"the prompt takes {counted.tokens} tokens{how} but {request.model} has {limit}; nothing was sent",
                provider=self._provider,
                model=request.model,
            )
        if fixed:
            return None
        # An estimate gets a quarter more room: local tokenizers split some text (code, non-English) finer.
        prompt = counted.tokens if counted.exact else math.ceil(counted.tokens * 1.25)
        need = prompt + (request.max_tokens or output_reserve)
        # Powers of two that only grow, per model: each new num_ctx makes Ollama reload the model.
        size = max(min_num_ctx, 1 << (need - 1).bit_length(), self._num_ctx.get(request.model, 0))
        length = info.context_length
        self._num_ctx[request.model] = size = min(size, length) if length else size
        return size

    async def model_info(self, model: str) -> ModelInfo:
        """Context length and capabilities from `/api/show`: one request per model, shared by concurrent calls."""
        task = self._models.get(model)
        if task is None:
            task = self._models[model] = asyncio.ensure_future(self._show(model))
        try:
            return await asyncio.shield(task)
        except BaseException:
            if task.done() and self._models.get(model) is task:  # failed: the next call asks again
                del self._models[model]
            raise

    async def _show(self, model: str) -> ModelInfo:
        data, _ = await self._http.post_json("/api/show", {"model": model}, model=model)
        info = data.get("model_info") or {}
        length = info.get(f"{info.get('general.architecture')}.context_length")
        if length is None:  # an architecture that does not name itself: any `<arch>.context_length` will do
            length = next((value for key, value in info.items() if key.endswith(".context_length")), None)
        capabilities = data.get("capabilities")  # absent from older versions
        return ModelInfo(
            int(length) if length else None, frozenset(capabilities) if isinstance(capabilities, list) else None
        )


def warn_if_truncated(request: ChatRequest, sent: Sent, reported: int, estimator: tokens.Tokenizer | None) -> None:
    """Warn (`OllamaTruncationWarning`) when Ollama `reported` clearly fewer prompt tokens than were counted.

    Args:
        request: The request.
        sent: What was sent, with its local count.
        reported: The prompt tokens Ollama evaluated.
        estimator: The tokenizer that estimated the count, if one did.
    """

    def clearly_fewer(local: int) -> bool:
        return reported < 0.8 * local and local - reported >= 32

    if not clearly_fewer(sent.counted.tokens):
        return
    # An estimate must also beat a lower bound: messages' text only (an image costs 1 to 2000+ tokens by model,
    # tool schemas render differently by template) by the smaller of cl100k and the character ratio (cl100k
    # overcounts dense tokenizers: Chinese on Qwen).
    text_only = [m.model_copy(update={"content": m.text}) for m in request.messages]
    low = min(
        tokens.count_messages(text_only, request.model, [], tokenizer=counter, exact=False).tokens
        for counter in (tokens.RATIO_ESTIMATOR, estimator or tokens.RATIO_ESTIMATOR)
    )
    if sent.counted.exact or clearly_fewer(low):
        window = f"num_ctx={sent.num_ctx}" if sent.num_ctx else "the server's default num_ctx"
        warnings.warn(
            f"Ollama evaluated {reported} prompt tokens of {request.model} where {sent.counted.tokens} were "
            f"counted locally ({sent.counted.tokenizer}): it probably cut the prompt to fit {window}",
            OllamaTruncationWarning,
            stacklevel=4,
        )


# -- the model list and pulls ---------------------------------------------------------------------------------------


async def list_models(http: HTTPClient, provider: str) -> list[dict[str, Any]]:
    """The server's models (`/api/tags`)."""
    data = await http.get_json("/api/tags")
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise ResponseFormatError(f"{provider} listed no `models` array", provider=provider, status=200)
    return models


async def pull_model(http: HTTPClient, provider: str, model: str, *, insecure: bool) -> AsyncIterator[dict[str, Any]]:
    """Download `model` (`/api/pull`), yielding Ollama's progress dicts."""
    status = None
    body = {"model": model, "insecure": insecure, "stream": True}
    async with http.stream_ndjson("/api/pull", body, model=model) as (_, lines):
        async for line in lines:
            try:
                progress = json.loads(line)
                status, error = progress.get("status"), progress.get("error")
            except (ValueError, AttributeError) as exc:
                raise StreamDecodeError(f"ollama pull {model} sent garbled progress", provider=provider) from exc
            if error is not None:
                message = f"ollama pull {model} failed: {http.redact(str(error))}"
                # `pull model manifest: file does not exist` is the registry saying it has no such model.
                kind = UnknownModelError if "does not exist" in message or "not found" in message else APIError
                raise kind(message, provider=provider, model=model)
            yield progress
    if status != "success":
        raise StreamInterruptedError(f"ollama pull {model} ended before it reported success", provider=provider)

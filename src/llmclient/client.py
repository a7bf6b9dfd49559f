"""The `Client`: resolve a model id to a driver, normalise inputs, retry, enforce the deadline, record usage.

```python
from llmclient import Client

async with Client(default_model="fake/echo") as client:
    reply = await client.chat("Hello")
    assert reply.text == "You said: Hello"
    assert reply.usage.input_tokens == 1
```
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError

from llmclient import embedding, tokens
from llmclient._http import Timeouts, Transport, deadline, loop_time
from llmclient.cost import Budget, CostLedger, LedgerRecord, PriceEntry, PriceTable, Reservation, open_ledger
from llmclient.drivers import Driver, create_driver, is_known_provider, known_providers
from llmclient.errors import (
    APITimeoutError,
    BudgetExceededError,
    ConfigurationError,
    InvalidRequestError,
    MaxStepsExceededError,
    ResponseFormatError,
    StreamError,
    StreamInterruptedError,
    StructuredOutputError,
    UnknownProviderError,
    UnsupportedCapabilityError,
    UnsupportedParameterError,
)
from llmclient.retry import RetryPolicy
from llmclient.tools import FunctionTool, RunResult, ToolRunner, to_tool, tool_messages
from llmclient.tools import definitions as tool_definitions
from llmclient.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Cost,
    EmbedResponse,
    Message,
    TokenCount,
    Tool,
    ToolCall,
    Usage,
    to_messages,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from llmclient.index import SearchResult
    from llmclient.similarity import Metric

T = TypeVar("T")

Messages = str | Message | Mapping[str, Any] | Sequence[Message | Mapping[str, Any]]

# Built-in drivers that speak HTTP get the client's transport and timeouts (a plugin opts in with "http": True).
_HTTP_DRIVERS = frozenset({"openai", "openai-compatible", "deepseek", "ollama"})

# Budgets opened with `client.budget(...)` in this task and its parents, each tagged with its client's id.
_BUDGETS: ContextVar[tuple[tuple[int, Budget], ...]] = ContextVar("llmclient_budgets", default=())


class ParameterDroppedWarning(UserWarning):
    """A sampling parameter was dropped because the provider does not accept it."""


class Client:
    """One client for every provider.

    Args:
        default_model: The model used when a call names none (else the `LLMCLIENT_MODEL` environment variable).
        aliases: Short names for model ids, e.g. `{"fast": "ollama/qwen2:1.5b"}`.
        providers: Options per provider, e.g. `{"openai": {"api_key": "sk-…"}}`. A provider with a name of its own
            and `"driver": "openai-compatible"` adds another server: `{"vllm": {"driver": "openai-compatible",
            "base_url": "http://gpu-box:8000/v1"}}`. A value may also be a ready driver instance.
        retry: A `RetryPolicy`, or an int for `max_retries` with the default backoff.
        timeout: The overall deadline of a call in seconds (retries and streaming included), or `Timeouts` for
            connect/read/total separately; None for no deadline.
        strict_params: Raise `UnsupportedParameterError` instead of dropping parameters a provider lacks.
        transport: An httpx transport for every HTTP driver (e.g. `httpx.MockTransport` in tests).
        ledger: A `CostLedger` to record into (e.g. another client's, to share one), or `"sqlite:///path.db"` to
            persist every record; in memory by default.
        prices: Price overrides, `{"provider/model": {...LiteLLM fields...} | PriceEntry | number}` (a number is
            USD per million tokens for input and output; wildcards such as `"openai-compatible/*"` allowed), or a
            whole `PriceTable`.
        budget_usd: A spending limit for every call of this client (see `budget` for scoped ones).
        embedding_cache: Where `embed` keeps vectors so repeated texts are neither sent nor billed again: in memory
            by default (LRU, 10,000 vectors), `"sqlite:///path.db"` or a path to keep them on disk, an
            `EmbeddingCache` to share one, or False for none.
    """

    def __init__(
        self,
        *,
        default_model: str | None = None,
        aliases: Mapping[str, str] | None = None,
        providers: Mapping[str, Mapping[str, Any] | Driver] | None = None,
        retry: RetryPolicy | int | None = None,
        timeout: float | Timeouts | None = 600.0,
        strict_params: bool = False,
        transport: Transport | None = None,
        ledger: CostLedger | str | Path | None = None,
        prices: PriceTable | Mapping[str, Any] | None = None,
        budget_usd: Decimal | str | int | None = None,
        embedding_cache: embedding.EmbeddingCache | str | Path | bool | None = None,
    ) -> None:
        self.default_model = default_model
        self.embedding_cache = embedding.open_embedding_cache(embedding_cache)
        self.aliases = dict(aliases or {})
        self.retry = retry if isinstance(retry, RetryPolicy) else RetryPolicy().with_max_retries(retry)
        self.timeouts = Timeouts.from_value(timeout)
        self.strict_params = strict_params
        self.ledger = open_ledger(ledger)
        if isinstance(prices, PriceTable):
            self.prices = prices
        else:
            self.prices = PriceTable.default()
            self.prices.update(prices or {})
        self._client_budget = None if budget_usd is None else Budget(budget_usd, name="the client's budget")
        self._transport = transport
        self._configs: dict[str, dict[str, Any]] = {}
        self._drivers: dict[str, Driver] = {}
        self._resolved: dict[str, tuple[str, str]] = {}
        for name, config in (providers or {}).items():
            if isinstance(config, Mapping):
                self._configs[name] = {
                    key: SecretStr(value) if key == "api_key" and isinstance(value, str) else value
                    for key, value in config.items()
                }
            else:
                self._drivers[name] = config

    def __repr__(self) -> str:
        return (
            f"Client(default_model={self.default_model!r}, providers={sorted({*self._configs, *self._drivers})}, "
            f"retry={self.retry.max_retries}, timeout={self.timeouts.total})"
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every driver this client opened (connection pools, loaded models)."""
        drivers, self._drivers = list(self._drivers.values()), {}
        for driver in drivers:
            await driver.aclose()

    # -- resolution ---------------------------------------------------------------------------------------------

    def resolve(self, model: str | None) -> tuple[str, str]:
        """Split a model id (or alias) into `(provider, model)`; see the model-id rules in the docs."""
        model_id = model or self.default_model or os.environ.get("LLMCLIENT_MODEL")
        if not model_id:
            raise ConfigurationError(
                "no model given: pass model='provider/model', Client(default_model=...) or set LLMCLIENT_MODEL"
            )
        cached = self._resolved.get(model_id)
        if cached is not None:
            return cached
        target = model_id
        for _ in range(8):  # aliases may point at aliases; a cycle stops here
            if target not in self.aliases:
                break
            target = self.aliases[target]
        resolved = self._split(target)
        self._resolved[model_id] = resolved
        return resolved

    def _is_provider(self, name: str) -> bool:
        return name in self._configs or name in self._drivers or is_known_provider(name)

    def _split(self, model_id: str) -> tuple[str, str]:
        for separator in ("/", ":"):
            provider, found, name = model_id.partition(separator)
            if found and name and self._is_provider(provider):
                return provider, name
        prefix = model_id.partition("/")[0] if "/" in model_id else model_id.partition(":")[0]
        known = sorted({*known_providers(), *self._configs, *self._drivers})
        if "/" in model_id or ":" in model_id:
            raise UnknownProviderError(
                f"unknown provider {prefix!r} in {model_id!r}; known providers: {', '.join(known)}"
            )
        raise UnknownProviderError(
            f"model id {model_id!r} names no provider; write 'provider/model', one of: {', '.join(known)}"
        )

    def driver(self, provider: str) -> Driver:
        """The driver for `provider`, created on first use from its options."""
        driver = self._drivers.get(provider)
        if driver is None:
            options = dict(self._configs.get(provider, {}))
            if "api_key" in options and isinstance(options["api_key"], SecretStr):
                options["api_key"] = options["api_key"].get_secret_value()
            kind = options.get("driver", provider)
            if kind != provider:
                options.setdefault("provider", provider)
            if kind in _HTTP_DRIVERS or options.pop("http", False):
                options.setdefault("transport", self._transport)
                options.setdefault("timeouts", self.timeouts)
            driver = create_driver(provider, options)
            self._drivers[provider] = driver
        return driver

    # -- budgets ------------------------------------------------------------------------------------------------

    def budget(self, usd: Decimal | str | int, *, allow_unknown_prices: bool = False) -> BudgetScope:
        """A spending limit for the calls this client makes inside the block (`async with` or `with`).

        Each call reserves its worst case first (counted input × input price + max_tokens × output price, the
        model's maximum output when max_tokens is unset) and raises `BudgetExceededError` with nothing sent when
        that does not fit; afterwards it settles to the actual cost. Nested budgets all apply.

        ```python
        from decimal import Decimal
        from llmclient import BudgetExceededError, Client

        client = Client(prices={"fake/paid": {"input_cost_per_token": "0.001", "output_cost_per_token": "0.002"}})
        async with client.budget(usd=Decimal("0.05")) as budget:
            # Reserves 2 × 0.001 + 10 × 0.002 = 0.022; the echo costs 2 × 0.001 + 4 × 0.002 = 0.010.
            await client.chat("one two", model="fake/paid", max_tokens=10)
            try:  # would reserve 40 × 0.001 + 10 × 0.002 = 0.06, more than the 0.04 left: not sent
                await client.chat("x " * 40, model="fake/paid", max_tokens=10)
            except BudgetExceededError:
                pass
        assert (budget.spent, budget.calls, len(client.ledger)) == (Decimal("0.010"), 1, 1)
        """
        return BudgetScope(self, Budget(usd, allow_unknown_prices=allow_unknown_prices))

    def _active_budgets(self) -> list[Budget]:
        mine = id(self)
        budgets = [budget for owner, budget in _BUDGETS.get() if owner == mine]
        if self._client_budget is not None:
            budgets.append(self._client_budget)
        return budgets

    # -- chat ---------------------------------------------------------------------------------------------------

    def _request(
        self,
        driver: Driver,
        provider: str,
        model: str,
        messages: Any,
        tools: Iterable[Any] | None,
        tool_choice: str | None,
        params: dict[str, Any],
        extra_body: Mapping[str, Any] | None,
    ) -> tuple[ChatRequest, dict[str, Any], list[str]]:
        capabilities = driver.capabilities
        given = {key: value for key, value in params.items() if value is not None}
        dropped = [key for key in given if key not in capabilities.params and key != "parallel_tool_calls"]
        if dropped:
            if self.strict_params:
                raise UnsupportedParameterError(
                    f"{provider} does not accept {', '.join(dropped)}", provider=provider, model=model
                )
            warnings.warn(
                f"{provider} does not accept {', '.join(dropped)}; dropped (strict_params=True raises instead)",
                ParameterDroppedWarning,
                stacklevel=3,
            )
            for key in dropped:
                del given[key]
        parallel = given.pop("parallel_tool_calls", None)
        try:
            tool_list = tool_definitions(tools)
            if tool_list and not capabilities.tools:
                raise UnsupportedCapabilityError(f"{provider} does not support tools", provider=provider, model=model)
            if tool_choice not in (None, "auto", "none", "required") and tool_choice not in {t.name for t in tool_list}:
                raise InvalidRequestError(
                    f"tool_choice {tool_choice!r} names no tool given; pass it in tools= or use auto/none/required",
                    provider=provider,
                    model=model,
                )
            request = ChatRequest(
                model=model,
                messages=to_messages(messages),
                tools=tool_list or None,
                tool_choice=tool_choice,
                parallel_tool_calls=parallel,
                extra_body=dict(extra_body) if extra_body else None,
                **given,
            )
        except ValidationError as exc:
            raise InvalidRequestError(_validation_message(exc), provider=provider, model=model) from exc
        return request, given, dropped

    def _build(
        self,
        model: str | None,
        messages: Any,
        tools: Iterable[Any] | None,
        tool_choice: str | None,
        params: dict[str, Any],
        extra_body: Mapping[str, Any] | None,
        max_retries: int | None,
        tags: Sequence[str],
    ) -> _Call:
        provider, name = self.resolve(model)
        driver = self.driver(provider)
        request, applied, dropped = self._request(
            driver, provider, name, messages, tools, tool_choice, params, extra_body
        )
        return _Call(self, provider, name, driver, request, applied, dropped, max_retries, tuple(tags))

    async def chat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Iterable[Any] | None = None,
        tool_choice: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        response_format: Mapping[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        response_model: type[BaseModel] | None = None,
        max_validation_retries: int = 2,
        extra_body: Mapping[str, Any] | None = None,
        max_retries: int | None = None,
        tags: Sequence[str] = (),
    ) -> ChatResponse:
        """Send messages and return the complete reply, its usage and its cost.

        Args:
            messages: A string (one user message), a `Message`, an OpenAI-format dict, or a list of those.
            model: `"provider/model"`, `"provider:model"` or an alias; else the client's default.
            tools: `Tool`s or OpenAI tool dicts the model may call.
            tool_choice: `"auto"`, `"none"`, `"required"` or the name of one tool.
            temperature: Sampling temperature (0–2).
            top_p: Nucleus sampling mass (0–1].
            top_k: Sample from the k most likely tokens (dropped where the provider lacks it).
            max_tokens: The most tokens to generate.
            stop: A stop string or a list of them.
            seed: A seed for reproducible sampling where the provider supports it.
            response_format: The provider's response format object, e.g. `{"type": "json_object"}`.
            parallel_tool_calls: Whether the model may call several tools in one reply (where supported).
            response_model: A pydantic model the reply must be; `reply.parsed` holds the validated object. Each
                provider's strongest mode is used (see the structured output page).
            max_validation_retries: With `response_model`, how often an invalid reply is sent back with the
                validation errors before `StructuredOutputError`.
            extra_body: Provider-specific fields merged into the request body as they are.
            max_retries: Overrides the client's retry count for this call.
            tags: Labels stored with the ledger record.

        Raises:
            LLMClientError: A subclass saying what went wrong (see the errors page).
        """
        params = _params(temperature, top_p, top_k, max_tokens, stop, seed, response_format, parallel_tool_calls)
        if response_model is not None:
            return await self._structured(
                response_model, max_validation_retries, model, messages, tools, tool_choice, params, extra_body,
                max_retries, tags,
            )  # fmt: skip
        call = self._build(model, messages, tools, tool_choice, params, extra_body, max_retries, tags)
        await call.admit()
        driver, request = call.driver, call.request
        total = self.timeouts.total

        async def attempt() -> ChatResponse:
            call.attempts += 1
            return await driver.chat(request)

        try:
            when = None if total is None else loop_time() + total
            async with deadline(when, total, provider=call.provider, model=call.model):
                response = await _retrying(call.policy, attempt)
        except BaseException as exc:
            call.failed(exc)
            raise
        response.applied_params = call.applied
        response.dropped_params = call.dropped
        call.finished(response, kind="chat")
        return response

    def stream(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Iterable[Any] | None = None,
        tool_choice: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        response_format: Mapping[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        extra_body: Mapping[str, Any] | None = None,
        max_retries: int | None = None,
        tags: Sequence[str] = (),
    ) -> ChatStream:
        """Stream the reply as `ChatChunk`s; the assembled `ChatResponse` is `stream.response` at the end.

        Takes the same arguments as `chat`. A failure before the first chunk is retried; after it, never (the
        error is a `StreamError` that keeps the partial text). The last chunk carries `finish_reason` and `usage`.
        Nothing is sent until the stream is iterated.

        ```python
        from llmclient import Client

        async with Client() as client:
            stream = client.stream("one two three", model="fake/echo")
            text = "".join([chunk.delta async for chunk in stream])
            assert text == "You said: one two three"
            assert stream.response.usage.output_tokens == 5
        ```
        """
        params = _params(temperature, top_p, top_k, max_tokens, stop, seed, response_format, parallel_tool_calls)
        # Built and validated now, so a bad call fails where it is written; admitted (counted, budgeted) and sent
        # when iterated.
        call = self._build(model, messages, tools, tool_choice, params, extra_body, max_retries, tags)
        if not call.driver.capabilities.stream:
            raise UnsupportedCapabilityError(f"{call.provider} cannot stream", provider=call.provider, model=call.model)
        return ChatStream(call)

    # -- structured output and the tool loop ---------------------------------------------------------------------

    async def _structured(
        self,
        response_model: type[BaseModel],
        max_validation_retries: int,
        model: str | None,
        messages: Any,
        tools: Iterable[Any] | None,
        tool_choice: str | None,
        params: dict[str, Any],
        extra_body: Mapping[str, Any] | None,
        max_retries: int | None,
        tags: Sequence[str],
    ) -> ChatResponse:
        provider, _ = self.resolve(model)
        mode = self.driver(provider).capabilities.structured_output
        transcript = to_messages(messages)
        schema = strict_json_schema(response_model)
        if mode == "json_schema":
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": response_model.__name__, "schema": schema, "strict": True},
            }
        else:  # JSON mode or plain prompting: the schema goes into the conversation
            if mode == "json_object":
                params["response_format"] = {"type": "json_object"}
            instruction = "Reply with one JSON object only, no prose, that matches this JSON schema:\n" + json.dumps(
                schema, ensure_ascii=False
            )
            transcript = [Message(role="system", content=instruction), *transcript]
        reply: ChatResponse | None = None
        for attempt in range(max_validation_retries + 1):
            reply = await self.chat(
                transcript, model=model, tools=tools, tool_choice=tool_choice, extra_body=extra_body,
                max_retries=max_retries, tags=tags, **params,
            )  # fmt: skip
            try:
                reply.parsed = response_model.model_validate_json(_json_text(reply.text))
                return reply
            except ValidationError as exc:
                if attempt == max_validation_retries:
                    raise StructuredOutputError(
                        f"no valid {response_model.__name__} after {attempt + 1} replies: {_validation_message(exc)}",
                        raw_text=reply.text,
                        provider=provider,
                        model=reply.model,
                    ) from exc
                feedback = (
                    f"That reply is not a valid {response_model.__name__}: {_validation_message(exc)}. "
                    "Reply again with the corrected JSON object only."
                )
                transcript = [*transcript, reply.message, Message(role="user", content=feedback)]
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(
        self,
        messages: Messages,
        *,
        tools: Iterable[Any],
        model: str | None = None,
        max_steps: int = 10,
        tool_timeout: float | None = None,
        on_tool_error: str = "message",
        max_tool_retries: int = 2,
        **chat_options: Any,
    ) -> RunResult:
        """Chat, run the tools the model asks for, send back their results, and repeat until it answers.

        Async tools run concurrently, sync ones in worker threads; exactly one tool message per tool call id is
        appended, in order. Invalid calls (unknown tool, bad JSON, failed validation) and tool exceptions become
        error messages the model can act on; see the agents page for every rule.

        Args:
            messages: The conversation so far.
            tools: Functions (or `FunctionTool`s, LangChain tools) the model may call.
            model: The model id.
            max_steps: The most model calls; past it, `MaxStepsExceededError` with the transcript so far.
            tool_timeout: Seconds a tool may run before it is cancelled and reported to the model.
            on_tool_error: "message" (report a tool's exception to the model) or "raise" (`ToolExecutionError`).
            max_tool_retries: Invalid calls allowed per tool before `ToolArgumentsError`.
            **chat_options: Anything `chat` takes (temperature, max_tokens, tags, …), for every step. A forcing
                `tool_choice` ("required" or a tool's name) applies to the first step only, then "auto".

        ```python
        from llmclient import Client, ToolCall

        def add(a: int, b: int) -> int:
            \"\"\"Add two integers.\"\"\"
            return a + b

        client = Client(providers={"fake": {"replies": [
            ToolCall(id="call_1", name="add", arguments={"a": 2, "b": 3}),
            "2 + 3 = 5",
        ]}})
        result = await client.run("What is 2 + 3?", tools=[add], model="fake/agent")
        assert result.response.text == "2 + 3 = 5"
        assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]
        assert result.messages[2].content == "5" and result.steps == 2
        ```
        """
        if on_tool_error not in ("message", "raise"):
            raise InvalidRequestError('on_tool_error must be "message" or "raise"')
        runnable: dict[str, FunctionTool] = {}
        for item in tools:
            converted = to_tool(item)
            if not isinstance(converted, FunctionTool):
                raise InvalidRequestError(
                    f"run() needs tools it can execute; {converted.name!r} is a definition only (pass the function)"
                )
            runnable[converted.name] = converted
        runner = ToolRunner(
            runnable,
            timeout=tool_timeout,
            on_tool_error=on_tool_error,
            max_retries=max_tool_retries,
            secrets=self._secrets(),
        )
        transcript = to_messages(messages)
        responses: list[ChatResponse] = []
        for _ in range(max_steps):
            # A budget, a provider error or a cancellation ends the run here, with each finished step in the ledger.
            response = await self.chat(transcript, tools=list(runnable.values()), model=model, **chat_options)
            if chat_options.get("tool_choice") not in (None, "auto", "none"):
                # A forced call applies to the first step only, or the model could never answer (as the OpenAI
                # Agents SDK's reset_tool_choice does).
                chat_options = {**chat_options, "tool_choice": "auto"}
            responses.append(response)
            transcript.append(response.message)
            if not response.tool_calls:
                return RunResult(transcript, responses)
            transcript.extend(tool_messages(await runner.run(response.tool_calls)))
        partial = RunResult(transcript, responses)
        raise MaxStepsExceededError(
            f"the model was still calling tools after {max_steps} steps",
            messages=transcript,
            usage=partial.usage,
        )

    def _secrets(self) -> list[str]:
        secrets = [value.get_secret_value() for config in self._configs.values() for key, value in config.items()
                   if key == "api_key" and isinstance(value, SecretStr)]  # fmt: skip
        for driver in self._drivers.values():
            key = getattr(driver, "api_key", None)
            if isinstance(key, SecretStr):
                secrets.append(key.get_secret_value())
        return secrets

    # -- embeddings and counting --------------------------------------------------------------------------------

    async def embed(
        self,
        inputs: str | Sequence[str],
        *,
        model: str | None = None,
        dimensions: int | None = None,
        batch_size: int | None = None,
        truncate: bool = False,
        concurrency: int = 4,
        progress: bool | None = None,
        max_retries: int | None = None,
        tags: Sequence[str] = (),
    ) -> EmbedResponse:
        """Embed one text or a list of texts; `vectors` is a float32 array of shape (len(inputs), dimensions).

        Repeated texts (within the call, or found in the client's embedding cache) are neither sent nor billed;
        `cached` on the response counts them. The rest are split into batches that fit the provider's limits
        (OpenAI: 2048 inputs and 300,000 tokens per request), sent `concurrency` at a time, and put back in input
        order. The call adds one ledger record (kind `"embed"`) summing its requests; `attempts` counts them.

        ```python
        from llmclient import Client

        async with Client() as client:
            result = await client.embed(["cat", "dog", "cat"], model="fake/embedder")
            assert result.vectors.shape == (3, 8)
            assert result.cached == 1  # the second "cat" was not sent
            again = await client.embed("dog", model="fake/embedder")
            assert (again.cached, again.usage.input_tokens, again.cost.total) == (1, 0, 0)
            assert len(client.ledger) == 1  # a call answered from the cache adds no record
        ```

        Args:
            inputs: A text or a list of texts.
            model: `"provider/model"` or an alias; else the client's default.
            dimensions: Shorter vectors where the model supports it (OpenAI text-embedding-3: `dimensions`).
            batch_size: The most inputs per request (the provider's limit when smaller).
            truncate: Cut inputs over the model's token limit to fit (with the model's tokenizer where
                llmclient has it) instead of raising `InputTooLongError`.
            concurrency: The most requests in flight at once.
            progress: A tqdm progress bar: None shows one for 1,000 inputs or more when stderr is a terminal and
                tqdm is installed; True always (needs tqdm); False never.
            max_retries: Overrides the client's retry count for each request.
            tags: Labels stored with the ledger record.

        Raises:
            InputTooLongError: An input has more tokens than the model accepts (its index is on the error).
            InvalidRequestError: An input is not a string, or is empty where the provider rejects that.
            ResponseFormatError: A response with missing or repeated indices or vectors of the wrong shape.
            LLMClientError: A subclass saying what else went wrong; requests answered before it are recorded.
        """
        provider, name = self.resolve(model)
        driver = self.driver(provider)
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidRequestError(
                    f"embed() inputs must be str; item {index} is {type(text).__name__}",
                    provider=provider,
                    model=name,
                )
        for option, value in (("dimensions", dimensions), ("batch_size", batch_size), ("concurrency", concurrency)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidRequestError(
                    f"{option} must be a positive int, got {value!r}", provider=provider, model=name
                )
        if not driver.capabilities.embed:
            raise UnsupportedCapabilityError(
                f"{provider} has no embeddings API; use one that does (e.g. openai/text-embedding-3-small)",
                provider=provider,
                model=name,
            )
        options: dict[str, Any] = {} if dimensions is None else {"dimensions": dimensions}
        if options:
            import inspect  # only here: third-party drivers may predate the `dimensions` keyword

            accepted = inspect.signature(driver.embed).parameters
            if "dimensions" not in accepted and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
                raise UnsupportedParameterError(
                    f"the {provider} driver does not take dimensions= for embeddings", provider=provider, model=name
                )
        if not texts:  # drivers answer [] with a (0, d) array and no I/O: nothing to bill or record
            empty = await driver.embed(name, texts, **options)
            empty.cost = Cost()
            return empty
        limits: embedding.EmbeddingLimits = getattr(driver, "embedding_limits", None) or embedding.DEFAULT_LIMITS
        entry = self.prices.lookup(provider, name)
        known = [n for n in (limits.max_input_tokens, entry.max_input_tokens if entry else None) if n]
        max_input_tokens = min(known) if known else None
        job = embedding.EmbedJob(texts, functools.partial(embedding.cache_key, provider, name, dimensions))
        job.lookup(self.embedding_cache, truncated_to=max_input_tokens if truncate else None)
        started = time.perf_counter()
        budgets = self._active_budgets()
        needs_counts = bool(job.pending) and bool(budgets or max_input_tokens or limits.max_tokens_per_request)
        counted = await embedding.fit_to_limits(
            job,
            (lambda text: _count_text(driver, name, text)) if needs_counts else None,
            limits=limits,
            max_input_tokens=max_input_tokens,
            truncate=truncate,
            provider=provider,
            model=name,
        )
        reservation = None
        if budgets and job.pending:
            amount = None if entry is None else entry.input * sum(counted)
            reservation = Budget.reserve_all(budgets, amount, f"{provider}/{name}")
        batches = embedding.plan_batches(
            counted or [0] * len(job.pending),
            min(batch_size or limits.max_inputs_per_request, limits.max_inputs_per_request),
            limits.max_tokens_per_request,
        )
        policy = self.retry.with_max_retries(max_retries)
        attempts, billed = 0, 0
        usage, served_model = Usage(), ""
        bar = embedding.progress_bar(progress, len(job.pending), f"embedding with {provider}/{name}")

        async def send(batch: range) -> EmbedResponse:
            nonlocal attempts, billed, usage
            chunk = job.sent[batch.start : batch.stop]

            async def attempt() -> EmbedResponse:
                nonlocal attempts
                attempts += 1
                return await driver.embed(name, chunk, **options)

            try:
                result = await _retrying(policy, attempt)
            except ResponseFormatError as exc:
                if exc.status is not None and exc.status < 300:  # answered, so billed, though unusable
                    billed += 1
                    tokens_sent = sum(counted[batch.start : batch.stop]) if counted else None
                    if tokens_sent is None:
                        tokens_sent = sum([(await _count_text(driver, name, text)).tokens for text in chunk])
                    usage += Usage(input_tokens=tokens_sent, estimated=True)
                raise
            rows, width = result.vectors.shape
            expected = dimensions or job.width or width
            if rows != len(chunk) or width != expected:
                billed += 1
                usage += result.usage
                raise ResponseFormatError(
                    f"{provider} returned vectors of shape {result.vectors.shape} for {len(chunk)} inputs; expected "
                    f"({len(chunk)}, {expected})",
                    provider=provider,
                    model=name,
                    status=200,
                )
            return result

        def done(batch: range, result: EmbedResponse) -> None:
            nonlocal billed, usage, served_model
            billed += 1
            usage += result.usage
            served_model = served_model or result.model
            job.fill(batch, result.vectors)
            if bar is not None:
                bar.update(len(batch))

        error: BaseException | None = None
        total = self.timeouts.total
        try:
            when = None if total is None else loop_time() + total
            async with deadline(when, total, provider=provider, model=name):
                await embedding.run_batches(batches, send, concurrency=concurrency, on_done=done)
        except BaseException as exc:
            error = exc
        finally:
            if bar is not None:
                bar.close()
        if self.embedding_cache is not None and job.fresh:  # kept even when a later batch failed: never paid twice
            self.embedding_cache.put_many(job.fresh)
        cost: Cost | None = Cost()
        if billed:
            cost = self.prices.cost(provider, name, usage)
            if reservation is not None:
                reservation.settle(cost)
            self.ledger.add(
                LedgerRecord(
                    provider=provider,
                    model=name,
                    kind="embed",
                    usage=usage,
                    cost=cost,
                    latency_s=time.perf_counter() - started,
                    attempts=attempts,
                    tags=tuple(tags),
                    error=None if error is None else _error_name(error),
                    counted_input_tokens=sum(counted) if counted and error is None else None,
                )
            )
        elif reservation is not None:
            reservation.release()
        if error is not None:
            raise error
        return EmbedResponse(
            vectors=job.assemble(job.width or dimensions or 0),
            usage=usage,
            cost=cost,
            model=served_model or name,
            provider=provider,
            cached=job.unsent,
        )

    async def similarity(
        self,
        a: str | Sequence[str] | npt.ArrayLike,
        b: str | Sequence[str] | npt.ArrayLike,
        *,
        model: str | None = None,
        metric: Metric = "cosine",
        dimensions: int | None = None,
        tags: Sequence[str] = (),
    ) -> float | npt.NDArray[np.floating[Any]]:
        """How similar `a` and `b` are: each a text, a list of texts, a vector or a matrix of vectors.

        Texts are embedded in one `embed` call (through the cache; the cost lands in the ledger), vectors are used
        as they are. The result follows the shapes: a float for two single items, a 1-D array for one item and a
        list, a `(len(a), len(b))` matrix for two lists. See `llmclient.similarity` for the metrics.

        ```python
        from llmclient import Client

        async with Client() as client:
            assert round(await client.similarity("cat", "cat", model="fake/embedder"), 6) == 1.0
            scores = await client.similarity("cat", ["cat", "dog"], model="fake/embedder")
            assert scores.shape == (2,) and scores[0] > scores[1]
            assert (await client.similarity(["a", "b"], ["c", "d", "e"], model="fake/embedder")).shape == (2, 3)
        ```

        Args:
            a: A text, a list of texts, a vector (1-D) or vectors (2-D).
            b: The same kinds as `a`.
            model: The embedding model for texts.
            metric: `"cosine"` (default), `"dot"` or `"euclidean"` (a distance: smaller is closer).
            dimensions: Passed to `embed`.
            tags: Labels stored with the ledger record of the embedding.

        Raises:
            DimensionMismatchError: Vectors of different lengths (e.g. given vectors from another model).
            ValueError: NaN or Inf in given vectors, or an unknown metric.
        """
        from llmclient.similarity import METRICS, pairwise

        if metric not in METRICS:
            raise InvalidRequestError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        left, right = embedding.as_texts(a), embedding.as_texts(b)
        texts = [*(left[0] if left else []), *(right[0] if right else [])]
        vectors = (await self.embed(texts, model=model, dimensions=dimensions, tags=tags)).vectors if texts else None

        def side(value: Any, parsed: tuple[list[str], bool] | None, offset: int) -> Any:
            if parsed is None or vectors is None:
                return value
            rows = vectors[offset : offset + len(parsed[0])]
            return rows[0] if parsed[1] else rows

        first = side(a, left, 0)
        second = side(b, right, len(left[0]) if left else 0)
        return pairwise(first, second, metric=metric)

    async def search(
        self,
        query: str,
        corpus: Sequence[str],
        *,
        k: int = 10,
        model: str | None = None,
        metric: Metric = "cosine",
        dimensions: int | None = None,
        tags: Sequence[str] = (),
    ) -> list[SearchResult]:
        """The `k` texts of `corpus` most similar to `query`, best first, for corpora that fit in one call.

        Query and corpus are embedded together in one `embed` call, so a repeated search sends only what the
        cache lacks. For a corpus you search many times, keep its vectors in a `VectorIndex`.

        ```python
        from llmclient import Client

        async with Client() as client:
            hits = await client.search("cats", ["dogs", "cats", "birds"], k=2, model="fake/embedder")
            assert (hits[0].index, hits[0].text, round(hits[0].score, 6)) == (1, "cats", 1.0)
            assert len(hits) == 2
        ```

        Returns:
            `SearchResult`s with `index` (position in `corpus`), `score` and `text`; cosine and dot scores are
            largest first, euclidean distances smallest first.
        """
        from llmclient.index import SearchResult
        from llmclient.similarity import METRICS, top_k

        if not isinstance(query, str):
            raise InvalidRequestError(f"search() takes a text query, not {type(query).__name__}")
        if isinstance(corpus, str):
            raise InvalidRequestError("search() takes a list of texts as the corpus; wrap a single text in a list")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidRequestError(f"k must be a positive int, got {k!r}")
        if metric not in METRICS:
            raise InvalidRequestError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        texts = list(corpus)
        if not texts:
            return []
        vectors = (await self.embed([query, *texts], model=model, dimensions=dimensions, tags=tags)).vectors
        found = top_k(vectors[0], vectors[1:], k, metric=metric)
        return [
            SearchResult(index=index, score=score, text=texts[index])
            for index, score in zip(found.indices.tolist(), found.scores.tolist(), strict=True)
        ]

    async def count_tokens(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Iterable[Any] | None = None,
    ) -> TokenCount:
        """Count the tokens a string (text alone) or messages (with the chat framing) take on `model`."""
        provider, name = self.resolve(model)
        driver = self.driver(provider)
        if isinstance(messages, (bytes, bytearray)):
            raise TypeError("count_tokens() takes str or messages, not bytes; decode them first")
        tool_list = tool_definitions(tools)
        if isinstance(messages, str) and not tool_list:
            return await _count_text(driver, name, messages)
        return await _count_messages(driver, name, to_messages(messages), tool_list)


class ChatStream:
    """An async iterator of `ChatChunk`s; after it ends, `response` holds the assembled `ChatResponse`.

    Use it in `async for`, or as `async with client.stream(...) as stream:` to close the connection early.
    """

    def __init__(self, call: _Call) -> None:
        self._call = call
        self._response: ChatResponse | None = None
        self._iterator: AsyncIterator[ChatChunk] | None = None

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream and close its connection."""
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]

    @property
    def response(self) -> ChatResponse:
        """The assembled reply; available once the stream has ended."""
        if self._response is None:
            raise RuntimeError("the stream has not finished; iterate it to the end first")
        return self._response

    async def final_response(self) -> ChatResponse:
        """Consume what is left of the stream and return the assembled reply."""
        async for _ in self:
            pass
        return self.response

    async def _run(self) -> AsyncIterator[ChatChunk]:
        call = self._call
        request, driver = call.request, call.driver
        total = call.client.timeouts.total
        assembler = _Assembler()
        iterator: AsyncIterator[ChatChunk] | None = None
        output_tokens = 0

        async def first_chunk() -> ChatChunk | None:
            nonlocal iterator
            call.attempts += 1
            iterator = driver.stream(request).__aiter__()
            try:
                return await iterator.__anext__()
            except StopAsyncIteration:
                return None

        try:
            await call.admit()
            watch = call.reservation is not None and call.entry is not None
            when = None if total is None else loop_time() + total
            async with deadline(when, total, provider=call.provider, model=call.model):
                chunk = await _retrying(call.policy, first_chunk)
            while chunk is not None:
                assembler.add(chunk)
                if watch and chunk.delta:
                    output_tokens += (await _count_text(driver, call.model, chunk.delta)).tokens
                    call.check_stream_budget(output_tokens)
                yield chunk
                try:
                    async with deadline(when, total, provider=call.provider, model=call.model):
                        chunk = await iterator.__anext__()  # type: ignore[union-attr]
                except StopAsyncIteration:
                    chunk = None
                except APITimeoutError as exc:  # after the first chunk a timeout is a cut stream: keep the text
                    raise StreamInterruptedError(
                        f"{call.provider} stream cut: {exc.message}",
                        partial_text="".join(assembler.text),
                        provider=call.provider,
                        model=call.model,
                        request_id=assembler.request_id,
                    ) from exc
        except BaseException as exc:
            if iterator is not None:
                await iterator.aclose()  # type: ignore[attr-defined]
            await call.stream_failed(exc, assembler)
            raise
        if iterator is not None:
            await iterator.aclose()  # type: ignore[attr-defined]
        response = assembler.response(request, call.provider)
        response.applied_params = call.applied
        response.dropped_params = call.dropped
        if response.finish_reason is None:  # a driver that ended without saying why: keep what arrived
            response.finish_reason = "stop"
        call.finished(response, kind="stream")
        self._response = response


class _Call:
    """One logical call from admission to its single ledger record: count, reserve, retry, price, settle."""

    def __init__(
        self,
        client: Client,
        provider: str,
        model: str,
        driver: Driver,
        request: ChatRequest,
        applied: dict[str, Any],
        dropped: list[str],
        max_retries: int | None,
        tags: tuple[str, ...],
    ) -> None:
        self.client = client
        self.provider = provider
        self.model = model
        self.driver = driver
        self.request = request
        self.applied = applied
        self.dropped = dropped
        self.policy = client.retry.with_max_retries(max_retries)
        self.tags = tags
        self.attempts = 0
        self.counted_input_tokens: int | None = None
        self.entry: PriceEntry | None = None
        self.reservation: Reservation | None = None
        self.started = time.perf_counter()
        self.recorded = False

    async def admit(self) -> None:
        """Count the prompt and, under a budget, reserve the worst case or raise with nothing sent."""
        counted = await _count_messages(self.driver, self.model, self.request.messages, self.request.tools or [])
        self.counted_input_tokens = counted.tokens
        budgets = self.client._active_budgets()
        if budgets:
            entry = self.client.prices.lookup(self.provider, self.model)
            amount = entry.worst_case(counted.tokens, self.request.max_tokens) if entry else None
            if entry is not None and amount is None:
                raise BudgetExceededError(
                    f"{self.provider}/{self.model} has no known maximum output; pass max_tokens= so the budget "
                    "can bound the call",
                    provider=self.provider,
                    model=self.model,
                )
            self.entry = entry
            self.reservation = Budget.reserve_all(budgets, amount, f"{self.provider}/{self.model}")
        self.started = time.perf_counter()

    def price(self, usage: Usage, served_model: str | None = None) -> Cost | None:
        """The cost of `usage`, priced by the requested model, else by the model the provider says served it."""
        prices = self.client.prices
        entry = prices.lookup(self.provider, self.model)
        if entry is None and served_model and served_model != self.model:
            entry = prices.lookup(self.provider, served_model)
        if entry is None:
            return prices.cost(self.provider, self.model, usage)  # None, with one warning per model
        return entry.cost(usage)

    def check_stream_budget(self, output_tokens: int) -> None:
        """Stop a stream whose running cost has outgrown its reservation (documented policy)."""
        if self.entry is None or self.reservation is None:
            return
        so_far = self.entry.input * (self.counted_input_tokens or 0) + self.entry.output * output_tokens
        if not self.reservation.fits(so_far):
            raise BudgetExceededError(
                f"the stream from {self.provider}/{self.model} passed its reserved ${self.reservation.amount:.6f}; "
                "stopped",
                provider=self.provider,
                model=self.model,
            )

    def finished(self, response: ChatResponse, *, kind: str) -> None:
        """Price a complete reply, settle the budget, and record it."""
        response.cost = self.price(response.usage, response.model)
        self._record(response.usage, response.cost, kind, response.request_id, None)

    def failed(self, error: BaseException) -> None:
        """A call that ended in an error: billed ones (a 200 we could not use) are recorded, the rest released."""
        if isinstance(error, ResponseFormatError) and error.status is not None and error.status < 300:
            usage = Usage(input_tokens=self.counted_input_tokens or 0, estimated=True)
            self._record(usage, self.price(usage), "chat", error.request_id, type(error).__name__)
        elif self.reservation is not None:
            self.reservation.release()

    async def stream_failed(self, error: BaseException, assembler: _Assembler) -> None:
        """A stream cut, cancelled or failed: once anything may have been generated, record an estimate once."""
        if self.attempts == 0 or (not assembler.received and not isinstance(error, StreamError)):
            if self.reservation is not None:
                self.reservation.release()
            return
        text = "".join(assembler.text) + "".join("".join(c["arguments"]) for c in assembler.calls.values())
        try:
            output = (await _count_text(self.driver, self.model, text)).tokens
        except BaseException:  # cancelled again while counting: fall back to the tokenizer-free estimate
            output = tokens.estimate_tokens(text)
        usage = Usage(input_tokens=self.counted_input_tokens or 0, output_tokens=output, estimated=True)
        self._record(usage, self.price(usage), "stream", assembler.request_id, _error_name(error))

    def _record(self, usage: Usage, cost: Cost | None, kind: str, request_id: str | None, error: str | None) -> None:
        if self.recorded:
            return
        self.recorded = True
        if self.reservation is not None:
            self.reservation.settle(cost)
        self.client.ledger.add(
            LedgerRecord(
                provider=self.provider,
                model=self.model,
                kind=kind,
                usage=usage,
                cost=cost,
                latency_s=time.perf_counter() - self.started,
                attempts=self.attempts,
                request_id=request_id,
                tags=self.tags,
                error=error,
                counted_input_tokens=self.counted_input_tokens,
            )
        )


class BudgetScope:
    """`client.budget(...)`: enter it with `async with` (or `with`) to apply the budget inside the block."""

    def __init__(self, client: Client, budget: Budget) -> None:
        self._client = client
        self._budget = budget
        self._tokens: list[Any] = []

    def __enter__(self) -> Budget:
        self._tokens.append(_BUDGETS.set((*_BUDGETS.get(), (id(self._client), self._budget))))
        return self._budget

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        _BUDGETS.reset(self._tokens.pop())

    async def __aenter__(self) -> Budget:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)


class _Assembler:
    """Joins streamed chunks into one reply."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: Any = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.request_id: str | None = None
        self.received = False

    def add(self, chunk: ChatChunk) -> None:
        self.received = True
        if chunk.delta:
            self.text.append(chunk.delta)
        if chunk.reasoning_delta:
            self.reasoning.append(chunk.reasoning_delta)
        for delta in chunk.tool_call_deltas:
            call = self.calls.setdefault(delta.index, {"id": "", "name": "", "arguments": []})
            if delta.id:
                call["id"] = delta.id
            if delta.name:
                call["name"] += delta.name
            call["arguments"].append(delta.arguments)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage
        self.model = chunk.model or self.model
        self.request_id = chunk.request_id or self.request_id

    def response(self, request: ChatRequest, provider: str) -> ChatResponse:
        calls = [
            ToolCall.model_validate({"id": c["id"], "name": c["name"], "arguments": "".join(c["arguments"])})
            for _, c in sorted(self.calls.items())
        ]
        message = Message(
            role="assistant",
            content="".join(self.text) if self.text or not calls else None,
            tool_calls=calls or None,
            reasoning="".join(self.reasoning) or None,
        )
        return ChatResponse(
            message=message,
            finish_reason=self.finish_reason,
            usage=self.usage or Usage(estimated=True),
            model=self.model or request.model,
            provider=provider,
            request_id=self.request_id,
        )


def _params(
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    max_tokens: int | None,
    stop: str | Sequence[str] | None,
    seed: int | None,
    response_format: Mapping[str, Any] | None,
    parallel_tool_calls: bool | None,
) -> dict[str, Any]:
    """The uniform request parameters of `chat` and `stream`, by name (None means not given)."""
    return {
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "max_tokens": max_tokens,
        "stop": stop,
        "seed": seed,
        "response_format": dict(response_format) if response_format is not None else None,
        "parallel_tool_calls": parallel_tool_calls,
    }


async def _count_messages(driver: Driver, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
    """The driver's prompt count; a third-party driver without one gets the flagged tiktoken estimate."""
    count_tokens = getattr(driver, "count_tokens", None)
    if count_tokens is None:
        estimate = tokens.count_messages(messages, model, tools)
        return TokenCount(tokens=estimate.tokens, exact=False, tokenizer=estimate.tokenizer)
    result: TokenCount = await count_tokens(model, messages, tools)
    return result


async def _count_text(driver: Driver, model: str, text: str) -> TokenCount:
    """Tokens in plain text with the driver's own tokenizer when it has one, else tiktoken or an estimate."""
    count_text = getattr(driver, "count_text", None)
    if count_text is not None:
        result: TokenCount = await count_text(model, text)
        return result
    return tokens.count_text(text, model)


async def _retrying(policy: RetryPolicy, attempt: Callable[[], Awaitable[T]]) -> T:
    # The first attempt runs bare: building tenacity's machinery costs tens of microseconds per call, and most calls
    # succeed at once. Only after a retryable failure does tenacity take over, under the same policy.
    try:
        return await attempt()
    except Exception as error:
        if policy.max_retries == 0 or not policy.should_retry(error):
            raise
        import asyncio

        await asyncio.sleep(policy.wait_for(1, error))
    async for retry_state in policy.retrying(previous_attempts=1):
        with retry_state:
            result = await attempt()
    return result


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _json_text(text: str) -> str:
    """The JSON in a reply, unwrapped from a Markdown fence if the model added one."""
    match = _FENCE.match(text)
    return match.group(1) if match else text.strip()


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema in the form OpenAI's strict structured outputs accept.

    Every object lists all its properties as required and forbids others; optional fields stay nullable
    (https://platform.openai.com/docs/guides/structured-outputs#supported-schemas).
    """
    schema = model.model_json_schema()

    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            node = {key: visit(value) for key, value in node.items() if key != "default"}
            if node.get("type") == "object" and "properties" in node:
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            return node
        if isinstance(node, list):
            return [visit(item) for item in node]
        return node

    result: dict[str, Any] = visit(schema)
    return result


def _error_name(error: BaseException) -> str:
    """How a stream ended, for the ledger: closed by the caller, cancelled, or the error's class."""
    if isinstance(error, GeneratorExit):
        return "closed"
    import asyncio

    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return type(error).__name__


def _validation_message(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or exc.title.lower()}: {error['msg']}" for error in exc.errors()[:5]
    ]
    return "invalid request: " + "; ".join(problems)

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

import asyncio
import os
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from pydantic import SecretStr, ValidationError

from llmclient import tokens
from llmclient._http import Timeouts, Transport, deadline, loop_time
from llmclient.cost import Budget, CostLedger, LedgerRecord, PriceEntry, PriceTable, Reservation, open_ledger
from llmclient.drivers import Driver, create_driver, is_known_provider, known_providers
from llmclient.errors import (
    APITimeoutError,
    BudgetExceededError,
    ConfigurationError,
    InvalidRequestError,
    ResponseFormatError,
    StreamError,
    StreamInterruptedError,
    UnknownProviderError,
    UnsupportedCapabilityError,
    UnsupportedParameterError,
)
from llmclient.retry import RetryPolicy
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

T = TypeVar("T")

Messages = str | Message | Mapping[str, Any] | Sequence[Message | Mapping[str, Any]]

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
    ) -> None:
        self.default_model = default_model
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
            if kind in ("openai", "openai-compatible", "deepseek") or options.get("http", False):
                options.pop("http", None)
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
        tools: Iterable[Tool | Mapping[str, Any]] | None,
        tool_choice: str | None,
        params: dict[str, Any],
        extra_body: Mapping[str, Any] | None,
    ) -> tuple[ChatRequest, dict[str, Any], list[str]]:
        capabilities = driver.capabilities
        given = {key: value for key, value in params.items() if value is not None}
        dropped = [key for key in given if key not in capabilities.params]
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
        try:
            tool_list = [tool if isinstance(tool, Tool) else Tool.model_validate(tool) for tool in tools or ()]
            if tool_list and not capabilities.tools:
                raise UnsupportedCapabilityError(f"{provider} does not support tools", provider=provider, model=model)
            request = ChatRequest(
                model=model,
                messages=to_messages(messages),
                tools=tool_list or None,
                tool_choice=tool_choice,
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
        tools: Iterable[Tool | Mapping[str, Any]] | None,
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
        tools: Iterable[Tool | Mapping[str, Any]] | None = None,
        tool_choice: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        response_format: Mapping[str, Any] | None = None,
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
            extra_body: Provider-specific fields merged into the request body as they are.
            max_retries: Overrides the client's retry count for this call.
            tags: Labels stored with the ledger record.

        Raises:
            LLMClientError: A subclass saying what went wrong (see the errors page).
        """
        params = {
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "max_tokens": max_tokens,
            "stop": stop,
            "seed": seed,
            "response_format": dict(response_format) if response_format is not None else None,
        }
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
        tools: Iterable[Tool | Mapping[str, Any]] | None = None,
        tool_choice: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        response_format: Mapping[str, Any] | None = None,
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
        params = {
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "max_tokens": max_tokens,
            "stop": stop,
            "seed": seed,
            "response_format": dict(response_format) if response_format is not None else None,
        }
        # Built and validated now, so a bad call fails where it is written; admitted (counted, budgeted) and sent
        # when iterated.
        call = self._build(model, messages, tools, tool_choice, params, extra_body, max_retries, tags)
        if not call.driver.capabilities.stream:
            raise UnsupportedCapabilityError(f"{call.provider} cannot stream", provider=call.provider, model=call.model)
        return ChatStream(call)

    # -- embeddings and counting --------------------------------------------------------------------------------

    async def embed(
        self, inputs: str | Sequence[str], *, model: str | None = None, max_retries: int | None = None
    ) -> EmbedResponse:
        """Embed one text or a list of texts; `vectors` is a float32 array of shape (len(inputs), dimensions).

        ```python
        from llmclient import Client

        async with Client() as client:
            result = await client.embed(["cat", "dog"], model="fake/embedder")
            assert result.vectors.shape == (2, 8)
        ```
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
        if not driver.capabilities.embed:
            raise UnsupportedCapabilityError(
                f"{provider} has no embeddings API; use one that does (e.g. openai/text-embedding-3-small)",
                provider=provider,
                model=name,
            )
        if not texts:
            return await driver.embed(name, texts)  # nothing to send, nothing to bill or record
        reservation = None
        budgets = self._active_budgets()
        if budgets:
            counted = sum([(await _count_text(driver, name, text)).tokens for text in texts])
            entry = self.prices.lookup(provider, name)
            amount = None if entry is None else entry.input * counted
            reservation = Budget.reserve_all(budgets, amount, f"{provider}/{name}")
        policy = self.retry.with_max_retries(max_retries)
        started = time.perf_counter()
        attempts = 0

        async def attempt() -> EmbedResponse:
            nonlocal attempts
            attempts += 1
            return await driver.embed(name, texts)

        total = self.timeouts.total
        try:
            when = None if total is None else loop_time() + total
            async with deadline(when, total, provider=provider, model=name):
                response = await _retrying(policy, attempt)
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise
        response.cost = self.prices.cost(provider, name, response.usage)
        if reservation is not None:
            reservation.settle(response.cost)
        self.ledger.add(
            LedgerRecord(
                provider=provider,
                model=name,
                kind="embed",
                usage=response.usage,
                cost=response.cost,
                latency_s=time.perf_counter() - started,
                attempts=attempts,
            )
        )
        return response

    async def count_tokens(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Iterable[Tool | Mapping[str, Any]] | None = None,
    ) -> TokenCount:
        """Count the tokens a string (text alone) or messages (with the chat framing) take on `model`."""
        provider, name = self.resolve(model)
        driver = self.driver(provider)
        if isinstance(messages, (bytes, bytearray)):
            raise TypeError("count_tokens() takes str or messages, not bytes; decode them first")
        tool_list = [tool if isinstance(tool, Tool) else Tool.model_validate(tool) for tool in tools or ()]
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
    async for retry_state in policy.retrying():
        with retry_state:
            result = await attempt()
    return result


def _error_name(error: BaseException) -> str:
    """How a stream ended, for the ledger: closed by the caller, cancelled, or the error's class."""
    if isinstance(error, GeneratorExit):
        return "closed"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return type(error).__name__


def _validation_message(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or exc.title.lower()}: {error['msg']}" for error in exc.errors()[:5]
    ]
    return "invalid request: " + "; ".join(problems)

"""The `Client`: one facade over every provider, whose methods read like the docs and hand the work to the pipeline.

```python
from llmclient import Client

async with Client(default_model="fake/echo") as client:
    reply = await client.chat("Hello")
    assert reply.text == "You said: Hello"
    assert reply.usage.input_tokens == 1
```

Each call resolves its model id to a driver (`model_ids`, `lifecycle.resolve`), builds a validated request
(`lifecycle.request`), and runs as one `lifecycle.flow.Lifecycle` over `client.pipeline`: admission (prompt count,
budgets), sending under one retry layer and deadline, then usage completed where the provider sent none, pricing,
settling and one ledger record. Streams, embedding jobs, structured output and the tool loop live in their own
modules and run the same lifecycle (the last two as chat calls).

`Client(routes={"chat": [Deployment(...), ...]})` makes `"chat"` a model group: `model="chat"` calls go to one of
its deployments (each a model id with provider options, weight, rate limits and price of its own), move to another
when a place fails, and skip places that are cooling down or out of capacity. A group is a list of deployments (or
model ids, or mappings of `Deployment`'s arguments) or a `ModelGroup` with a strategy and fallback groups; see
`llmclient.routing` and the Routing page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

from llmclient import tokens
from llmclient.accounting.budgets import Budget, BudgetScope, open_budgets
from llmclient.accounting.catalog import PriceTable
from llmclient.accounting.ledger import CostLedger
from llmclient.chat.streaming import ChatStream
from llmclient.chat.structured import structured_chat
from llmclient.drivers import Driver, check_options
from llmclient.embeddings.cache import EmbeddingCache, open_embedding_cache
from llmclient.embeddings.job import EmbedOptions, run_embed_job
from llmclient.errors import LLMClientError, UnsupportedCapabilityError
from llmclient.http import Timeouts, Transport
from llmclient.lifecycle import BudgetAdmission, CountPrompt, LedgerRecording, Pipeline, Pricing, Step
from llmclient.lifecycle.flow import chat as run_chat
from llmclient.lifecycle.request import count_tokens, messages_of
from llmclient.lifecycle.resolve import Drivers, Resolver, checked_timeout
from llmclient.lifecycle.retry import RetryPolicy
from llmclient.model_ids import ModelId, ModelResolver
from llmclient.options import ChatOptions, RunStepOptions, list_options
from llmclient.routing.groups import Deployment, ModelGroup
from llmclient.routing.router import Router, Routing
from llmclient.stores import urls
from llmclient.tools import OnToolError, RunResult
from llmclient.tools.loop import run_tools
from llmclient.types import ChatResponse, EmbedResponse, Message, ModelT, TokenCount, build_validators

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from typing_extensions import Unpack

    from llmclient.stores import SharedBudgets
    from llmclient.vectors.index import SearchResult
    from llmclient.vectors.similarity import Metric

Messages = str | Message | Mapping[str, Any] | Sequence[Message | Mapping[str, Any]]


def client_pipeline(
    pricing: Pricing,
    budgets: Callable[[], list[Budget]],
    ledger: CostLedger,
    track_drift: bool = False,
    budget_store: Any = None,
    *,
    routed: bool = False,
) -> Pipeline:
    """A `Client`'s steps, in order: routing (for model groups, so budgets price the deployment picked), the prompt
    count (with `track_drift`), pricing, in-process budgets, shared budgets (with a `budget_store`: a
    `postgresql://` URL or `stores.SharedBudgets`), and the ledger record. With shared budgets both budget steps
    count with the fleet's margins."""
    build_validators()  # here, not at import: see its docstring
    steps: list[Step] = [Routing()] if routed else []
    steps += [CountPrompt()] if track_drift else []
    shared = None if budget_store is None else urls.open_budget_step(budget_store, pricing, ledger)
    steps += [pricing, BudgetAdmission(budgets, pricing, shared.margins if shared is not None else None)]
    steps += [shared] if shared is not None else []
    return Pipeline([*steps, LedgerRecording(ledger)])


class Client:
    """One client for every provider.

    Args:
        default_model: The model used when a call names none (else the `LLMCLIENT_MODEL` environment variable).
        aliases: Short names for model ids, e.g. `{"fast": "ollama/qwen2:1.5b"}`.
        providers: Options per provider (`{"openai": {"api_key": "sk-…"}}`), or a ready driver. A name of your own
            with `"driver"` adds another server: `{"vllm": {"driver": "openai-compatible", "base_url": ...}}`.
        retry: A `RetryPolicy`, or an int for `max_retries` with the default backoff.
        timeout: A call's overall deadline in seconds (retries, streams included), `Timeouts`, or None for none.
        strict_params: Raise `UnsupportedParameterError` instead of dropping parameters a provider lacks.
        transport: An httpx transport for every driver that speaks HTTP (e.g. `httpx.MockTransport` in tests).
        ledger: A `CostLedger` to record into (another client's, to share one; `CostLedger(keep=...)` to keep
            more or fewer records), `"sqlite:///path.db"` or `"postgresql://..."` to keep every record; in memory
            by default (exact totals of every call, the last 1,000 records).
        prices: Overrides, `{"provider/model": {...LiteLLM fields...} | PriceEntry | number}` (a number: USD per
            million tokens in and out; wildcards such as `"openai-compatible/*"` allowed), or a whole `PriceTable`.
        budget_usd: A spending limit for every call of this client (see `budget` for scoped ones).
        embedding_cache: Where `embed` keeps vectors so repeated texts are not sent or billed again: memory (LRU,
            10,000 vectors) by default, `"sqlite:///path.db"` or a path, an `EmbeddingCache`, or False for none.
        track_drift: Count every prompt locally before sending, so each record shows the count's `input_drift`.
        budget_store: A `postgresql://` URL or `SharedBudgets`: named budgets that hold across processes and
            machines (by tag, `charge_to` and `SharedBudgets(always=...)`; see the Fleet page).
        routes: Model groups over several deployments, `{"chat": [Deployment(...), ...]}` (see the module doc).
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
        embedding_cache: EmbeddingCache | str | Path | bool | None = None,
        track_drift: bool = False,
        budget_store: str | SharedBudgets | None = None,
        routes: Mapping[str, ModelGroup | Sequence[Deployment | str | Mapping[str, Any]]] | None = None,
    ) -> None:
        for name, config in (providers or {}).items():  # a misspelt option or driver fails here, not on first use
            if isinstance(config, Mapping):
                check_options(name, config)
        self.retry = retry if isinstance(retry, RetryPolicy) else RetryPolicy().with_max_retries(retry)
        self.timeouts = Timeouts.from_value(timeout)
        self.strict_params = strict_params
        self.embedding_cache = open_embedding_cache(embedding_cache)
        self.ledger = urls.open_ledger(ledger)
        self._own_ledger = ledger is not None and not isinstance(ledger, CostLedger)  # opened here: closed here
        self.prices = PriceTable.from_option(prices)
        self._client_budget = None if budget_usd is None else Budget(budget_usd, name="the client's budget")
        drivers = Drivers(providers, transport=transport, timeouts=self.timeouts)
        router = Router(routes, drivers, self.prices, open_store=urls.open_rate_limit_store) if routes else None
        self._resolver = Resolver(
            ModelResolver(aliases=aliases, default_model=default_model, providers=providers or {}),
            drivers, retry=self.retry, strict_params=strict_params, router=router, prices=self.prices,
        )  # fmt: skip
        self._pricing = Pricing(self.prices)
        self.pipeline = client_pipeline(
            self._pricing, self._budgets, self.ledger, track_drift, budget_store, routed=bool(routes)
        )
        """The steps every call goes through; `pipeline.add(step)` adds cross-cutting behaviour."""

    def __repr__(self) -> str:
        settings = f"providers={self._resolver.drivers.names()}, retry={self.retry.max_retries}"
        return f"Client(default_model={self.default_model!r}, {settings}, timeout={self.timeouts.total})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every driver this client opened (connection pools, loaded models), wait for the records a shared
        store has still to write (or spool), and close the ledger file it opened from a URL or path. The client
        can still be used: what it needs is opened again. (A PostgreSQL store is shared by the whole process and
        closed at its exit.)"""
        await self._resolver.drivers.aclose()
        await self.pipeline.aclose()
        if self._own_ledger:
            self.ledger.close()

    @property
    def default_model(self) -> str | None:
        """The model used when a call names none."""
        return self._resolver.models.default_model

    @property
    def aliases(self) -> dict[str, str]:
        """Short names for model ids."""
        return self._resolver.models.aliases

    def resolve(self, model: str | None) -> ModelId:
        """Split a model id (or alias, or None for the default) into `(provider, model)`; see the model-id rules."""
        return self._resolver.resolve(model)

    def driver(self, provider: str) -> Driver:
        """The driver for `provider`, created on first use from its options."""
        return self._resolver.drivers.get(provider)

    def budget(self, usd: Decimal | str | int, *, allow_unknown_prices: bool = False) -> BudgetScope:
        """A spending limit for this client's calls inside the block (`async with` or `with`); nested ones all apply.

        Each call reserves its worst case first (counted input and `max_tokens`, else the model's maximum output)
        and raises `BudgetExceededError` with nothing sent when that does not fit, then settles to the actual cost.
        """
        return BudgetScope(id(self), Budget(usd, allow_unknown_prices=allow_unknown_prices))

    def _budgets(self) -> list[Budget]:
        budgets = open_budgets(id(self))
        return budgets if self._client_budget is None else [*budgets, self._client_budget]

    async def chat(
        self,
        messages: Messages,
        *,
        response_model: type[ModelT] | None = None,
        max_validation_retries: int = 2,
        **options: Unpack[ChatOptions],
    ) -> ChatResponse[ModelT]:
        """Send messages and return the complete reply, its usage and its cost.

        Args:
            messages: A string (one user message), a `Message`, an OpenAI-format dict, or a list of those.
            response_model: A pydantic model the reply must be; `reply.parsed` holds the validated object.
            max_validation_retries: With `response_model`, how often an invalid reply is sent back.
            **options: `ChatOptions`: `model` (else the client's default), `tools`, `tool_choice`, the sampling
                parameters (`temperature`, `top_p`, `top_k`, `max_tokens`, `stop`, `seed`, `response_format`,
                `parallel_tool_calls`), `extra_body`, `max_retries` and `tags`.

        Raises:
            LLMClientError: A subclass saying what went wrong (see the errors page).
        """
        if response_model is not None:

            async def attempt(transcript: list[Message], wire_format: dict[str, Any] | None) -> ChatResponse:
                step: ChatOptions = {**options, "response_format": wire_format}
                return await self.chat(transcript, **step)

            return await structured_chat(
                attempt,
                messages_of(messages),
                response_model,
                driver=self.driver(self.resolve(options.get("model")).provider),
                response_format=options.get("response_format"),
                max_validation_retries=max_validation_retries,
            )
        call = self._resolver.chat_call("chat", messages, options)
        return await run_chat(call, self.pipeline, self.timeouts.total)

    def stream(self, messages: Messages, **options: Unpack[ChatOptions]) -> ChatStream:
        """Stream the reply as `ChatChunk`s; the assembled `ChatResponse` is `stream.response` at the end.

        Takes the same options as `chat`. A failure before the first chunk is retried; after it, never (the error
        is a `StreamError` that keeps the partial text). The last chunk carries `finish_reason` and `usage`. The
        request is validated here; nothing is sent until the stream is iterated.
        """
        call = self._resolver.chat_call("stream", messages, options)
        if not call.driver.capabilities.stream:
            raise UnsupportedCapabilityError(f"{call.provider} cannot stream", provider=call.provider, model=call.model)
        return ChatStream(call, self.pipeline, self.timeouts.total)

    async def run(
        self,
        messages: Messages,
        *,
        tools: Iterable[Any],
        max_steps: int = 10,
        tool_timeout: float | None = None,
        on_tool_error: OnToolError = "message",
        max_tool_retries: int = 2,
        **chat_options: Unpack[RunStepOptions],
    ) -> RunResult:
        """Chat, run the tools the model asks for, send back their results, and repeat until it answers.

        Args:
            messages: The conversation so far.
            tools: Functions (or `FunctionTool`s, LangChain tools) the model may call.
            max_steps: The most model calls; past it, `MaxStepsExceededError` with the transcript so far.
            tool_timeout: Seconds a tool may run before it is cancelled and reported to the model.
            on_tool_error: "message" (report a tool's exception to the model) or "raise" (`ToolExecutionError`).
            max_tool_retries: Invalid calls allowed per tool before `ToolArgumentsError`.
            **chat_options: What `chat` takes but `tools` (model, temperature, max_tokens, tags, …), for every
                step. A forcing `tool_choice` ("required" or a tool's name) applies to the first step only.
        """

        async def step(transcript: list[Message], options: dict[str, Any]) -> ChatResponse:
            return await self.chat(transcript, **options)

        try:  # for the run's trace; a model that does not resolve fails in the first step, with its error
            model_id: ModelId | None = self.resolve(chat_options.get("model"))
        except LLMClientError:
            model_id = None
        return await run_tools(
            step,
            messages_of(messages),
            tools,
            max_steps=max_steps,
            tool_timeout=tool_timeout,
            on_tool_error=on_tool_error,
            max_tool_retries=max_tool_retries,
            secrets=self._resolver.drivers.secrets(),
            chat_options=dict(chat_options),
            observers=self.pipeline.observers,
            model_id=model_id,
        )

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
        timeout: float | None = None,
    ) -> EmbedResponse:
        """Embed one text or a list of texts; `vectors` is a float32 array of shape (len(inputs), dimensions).

        Repeated texts (within the call, or in the client's embedding cache) are neither sent nor billed (`cached`
        counts them); the rest go in batches that fit the provider's limits, `concurrency` at a time, and come back
        in input order. One ledger record (kind `"embed"`) sums the requests; `attempts` counts them.

        Args:
            inputs: A text or a list of texts.
            model: `"provider/model"` or an alias; else the client's default.
            dimensions: Shorter vectors where the model supports it (OpenAI text-embedding-3: `dimensions`).
            batch_size: The most inputs per request (the provider's limit when smaller).
            truncate: Cut inputs over the model's token limit to fit instead of raising `InputTooLongError`.
            concurrency: The most requests in flight at once.
            progress: A tqdm bar: None shows one for 1,000+ inputs on a terminal (if tqdm is installed).
            max_retries: Overrides the client's retry count for each request.
            tags: Labels stored with the ledger record.
            timeout: This call's overall deadline in seconds; None: the client's.

        Raises:
            InputTooLongError: An input has more tokens than the model accepts (its index is on the error).
            LLMClientError: A subclass saying what else went wrong; requests answered before it are recorded.
        """
        return await run_embed_job(
            self._resolver.call("embed", model, max_retries=max_retries, tags=tags),
            [inputs] if isinstance(inputs, str) else list(inputs),
            EmbedOptions(dimensions, batch_size, truncate, concurrency, progress),
            pipeline=self.pipeline,
            pricing=self._pricing,
            cache=self.embedding_cache,
            deadline_s=self.timeouts.total if timeout is None else checked_timeout(timeout),
        )

    @overload
    async def similarity(
        self,
        a: str,
        b: str,
        *,
        model: str | None = ...,
        metric: Metric = ...,
        dimensions: int | None = ...,
        tags: Sequence[str] = ...,
    ) -> float: ...
    @overload
    async def similarity(
        self,
        a: str,
        b: list[str] | tuple[str, ...],
        *,
        model: str | None = ...,
        metric: Metric = ...,
        dimensions: int | None = ...,
        tags: Sequence[str] = ...,
    ) -> npt.NDArray[np.float32]: ...
    @overload
    async def similarity(
        self,
        a: list[str] | tuple[str, ...],
        b: str,
        *,
        model: str | None = ...,
        metric: Metric = ...,
        dimensions: int | None = ...,
        tags: Sequence[str] = ...,
    ) -> npt.NDArray[np.float32]: ...
    @overload
    async def similarity(
        self,
        a: list[str] | tuple[str, ...],
        b: list[str] | tuple[str, ...],
        *,
        model: str | None = ...,
        metric: Metric = ...,
        dimensions: int | None = ...,
        tags: Sequence[str] = ...,
    ) -> npt.NDArray[np.float32]: ...
    @overload
    async def similarity(
        self,
        a: npt.ArrayLike,
        b: npt.ArrayLike,
        *,
        model: str | None = ...,
        metric: Metric = ...,
        dimensions: int | None = ...,
        tags: Sequence[str] = ...,
    ) -> float | npt.NDArray[np.float32]: ...
    async def similarity(
        self,
        a: str | Sequence[str] | npt.ArrayLike,
        b: str | Sequence[str] | npt.ArrayLike,
        *,
        model: str | None = None,
        metric: Metric = "cosine",
        dimensions: int | None = None,
        tags: Sequence[str] = (),
    ) -> float | npt.NDArray[np.float32]:
        """How similar `a` and `b` are: each a text, a list of texts, a vector or a matrix of vectors.

        Texts are embedded in one `embed` call (cached, recorded), vectors used as they are. Two texts give a
        `float`; a text and a list a 1-D array (one score per text of the list); two lists a matrix (a row per text
        of `a`). Arrays are float32, the precision embeddings come in, whatever the inputs (for float64 vectors,
        `llmclient.vectors.similarity.pairwise` keeps float64). `metric`: "cosine", "dot" or "euclidean" (a
        distance).
        """
        from llmclient.vectors.similarity import of_texts_or_vectors  # numpy: imported on first use

        score = await of_texts_or_vectors(a, b, self._vectors(model, dimensions, tags), metric=metric)
        return score if isinstance(score, float) else score.astype("float32", copy=False)

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
        """The `k` texts of `corpus` most similar to `query`, best first (`index`, `score`, `text` each).

        Query and corpus are embedded in one `embed` call; for a corpus searched often, use a `VectorIndex`.
        """
        from llmclient.vectors.index import search_texts  # numpy: imported on first use

        return await search_texts(query, corpus, self._vectors(model, dimensions, tags), k=k, metric=metric)

    def _vectors(
        self, model: str | None, dimensions: int | None, tags: Sequence[str]
    ) -> Callable[[list[str]], Awaitable[Any]]:
        async def vectors(texts: list[str]) -> Any:
            return (await self.embed(texts, model=model, dimensions=dimensions, tags=tags)).vectors

        return vectors

    async def count_tokens(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Iterable[Any] | None = None,
    ) -> TokenCount:
        """Count the tokens a string (text alone) or messages (with the chat framing) take on `model`."""
        provider, name = self.resolve(model)
        with tokens.asked():  # a missing tokenizer warns here, where a count was asked for, not in every call
            return await count_tokens(self.driver(provider), name, messages, tools)


# help(Client.chat) and help(SyncClient.chat) list every option (`temperature`, ...), not just `**options`.
list_options(Client.chat, ChatOptions)
list_options(Client.stream, ChatOptions)
list_options(Client.run, RunStepOptions)

"""LangChain interop: tools both ways, and `ChatLLMClient`, a LangChain chat model over any llmclient provider.

Needs the `langchain` extra (`pip install 'llmclient[langchain]'`); `import llmclient` never imports LangChain.

```python
from llmclient.integrations.langchain import ChatLLMClient

model = ChatLLMClient(model="fake/echo")
message = model.invoke("Hello")
assert message.content == "You said: Hello"
assert message.usage_metadata["input_tokens"] == 1
```
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, TypeVar

from llmclient.chat.streaming import ChatStream
from llmclient.chat.structured import strict_schema
from llmclient.client import Client
from llmclient.errors import MissingExtraError, UnknownProviderError
from llmclient.model_ids import ModelId
from llmclient.sync import LoopThread
from llmclient.tools import FunctionTool, to_tool
from llmclient.types import ChatChunk

try:
    from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
    from langchain_core.language_models import BaseChatModel, LangSmithParams
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
    from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
    from langchain_core.tools import BaseTool, StructuredTool
    from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
    from langchain_core.utils.pydantic import is_basemodel_subclass
    from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

    from llmclient.integrations._langchain_messages import (
        ai_message,
        chunk_message,
        last_chunk,
        schema_name,
        to_messages,
        usage_metadata,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError(
        "the LangChain integration needs langchain-core: pip install 'llmclient[langchain]'"
    ) from exc

T = TypeVar("T")


# -- tools --------------------------------------------------------------------------------------------------------


def to_langchain_tool(tool: Callable[..., Any] | FunctionTool) -> BaseTool:
    """A LangChain `StructuredTool` from a function or `FunctionTool`, with the same name, text and schema."""
    converted = to_tool(tool)
    if not isinstance(converted, FunctionTool):
        raise TypeError("to_langchain_tool needs a runnable tool (a function or FunctionTool)")
    function = converted.fn
    return StructuredTool.from_function(
        func=None if converted.is_async else function,
        coroutine=function if converted.is_async else None,
        name=converted.name,
        description=converted.tool.description,
        args_schema=converted.arguments_model,
    )


# -- where calls run -----------------------------------------------------------------------------------------------


class _Runtime:
    """The adapter's own `Client` on its own event loop thread, used from any thread and any event loop.

    One loop for the client's whole life: its connections are never used from a loop that has closed (pytest and
    `asyncio.run` make a loop per call), and they are closed with the client once no model refers to this runtime
    any more (or at exit).
    """

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.thread = LoopThread(name)
        weakref.finalize(self, _shut_down, self.thread, client)

    def run(self, make: Callable[[Client], Coroutine[Any, Any, T]]) -> T:
        return self.thread.run(make(self.client))

    async def arun(self, make: Callable[[Client], Coroutine[Any, Any, T]]) -> T:
        # Cancelling the caller cancels the work on the private loop (wrap_future cancels the concurrent future).
        return await asyncio.wrap_future(self.thread.submit(make(self.client)))

    def stream(self, open_stream: Callable[[Client], ChatStream]) -> Iterator[ChatChunk | ChatStream]:
        """The chunks, pulled one at a time from the private loop, then the finished stream."""
        stream = self.thread.run(_opened(open_stream, self.client))
        iterator = stream.__aiter__()
        try:
            while (chunk := self.thread.run(_next(iterator))) is not None:
                yield chunk
            yield stream
        finally:
            self.thread.run(stream.aclose())

    async def astream(self, open_stream: Callable[[Client], ChatStream]) -> AsyncIterator[ChatChunk | ChatStream]:
        """`stream` for a caller on another event loop."""
        stream = await asyncio.wrap_future(self.thread.submit(_opened(open_stream, self.client)))
        iterator = stream.__aiter__()
        try:
            while (chunk := await asyncio.wrap_future(self.thread.submit(_next(iterator)))) is not None:
                yield chunk
            yield stream
        finally:
            await asyncio.wrap_future(self.thread.submit(stream.aclose()))


async def _opened(open_stream: Callable[[Client], ChatStream], client: Client) -> ChatStream:
    return open_stream(client)  # made on the private loop, where it will run


async def _next(iterator: AsyncIterator[ChatChunk]) -> ChatChunk | None:
    return await anext(iterator, None)


def _shut_down(thread: LoopThread, client: Client) -> None:
    try:
        thread.run(client.aclose())
    except RuntimeError:  # collected on its own loop's thread (it cannot wait for itself), or already closed
        return
    thread.close()


# -- the chat model -----------------------------------------------------------------------------------------------


_CALL_OPTIONS = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "seed", "top_p", "top_k")


class ChatLLMClient(BaseChatModel):
    """A LangChain chat model backed by llmclient: any provider (local ones included) in a LangChain agent.

    Attributes:
        model: An llmclient model id such as `"deepseek/deepseek-chat"` (default: `LLMCLIENT_MODEL`). A per-call
            `model=` without a provider keeps this one's (`invoke(..., model="deepseek-reasoner")`).
        client: The `Client` to use for async calls (its ledger records every call). Sync calls run on a private
            event loop with a client of the same settings that shares that ledger. Without one, the model makes
            its own client, which lives on a private event loop thread and serves sync and async calls alike.
        api_key: Passed to the model's provider when no client is given.
        base_url: Passed to the model's provider when no client is given.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    model: str = Field(default_factory=lambda: os.environ.get("LLMCLIENT_MODEL", ""))
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None
    streaming: bool = False
    client: Client | None = Field(default=None, exclude=True)

    _own: _Runtime | None = PrivateAttr(default=None)
    _sync: _Runtime | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "llmclient"

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["llmclient", "integrations", "langchain"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "LLMCLIENT_API_KEY"}

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        model = kwargs.get("model", self.model)
        provider = _provider(model) or _provider(self.model) or "llmclient"
        params = LangSmithParams(ls_provider=provider, ls_model_name=model, ls_model_type="chat")
        if (temperature := kwargs.get("temperature", self.temperature)) is not None:
            params["ls_temperature"] = temperature
        if (max_tokens := kwargs.get("max_tokens", self.max_tokens)) is not None:
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # clients -----------------------------------------------------------------------------------------------------

    def _new_client(self, ledger: Any = None) -> Client:
        provider = _provider(self.model)
        options: dict[str, Any] = {}
        if self.api_key is not None:
            options["api_key"] = self.api_key.get_secret_value()
        if self.base_url is not None:
            options["base_url"] = self.base_url
        kwargs: dict[str, Any] = {"providers": {provider: options} if options and provider else None}
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        if self.max_retries is not None:
            kwargs["retry"] = self.max_retries
        return Client(ledger=ledger, **kwargs)

    def _own_runtime(self) -> _Runtime:
        with self._lock:
            if self._own is None:
                self._own = _Runtime(self._new_client(), "llmclient-langchain")
            return self._own

    def _sync_runtime(self) -> _Runtime:
        """Where sync calls run: the model's own client, or a sibling of the given one that shares its ledger."""
        if self.client is None:
            return self._own_runtime()
        with self._lock:
            if self._sync is None:
                self._sync = _Runtime(self._new_client(ledger=self.client.ledger), "llmclient-langchain-sync")
            return self._sync

    @property
    def ledger(self) -> Any:
        """The ledger every call of this model is recorded in."""
        return self.client.ledger if self.client is not None else self._own_runtime().client.ledger

    # calls -------------------------------------------------------------------------------------------------------

    def _options(self, client: Client, stop: list[str] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {
            "model": self._model_id(client, kwargs.get("model")),
            "temperature": kwargs.get("temperature", self.temperature),
            "max_tokens": kwargs.get("max_tokens", self.max_tokens),
            "top_p": kwargs.get("top_p", self.top_p),
            "seed": kwargs.get("seed", self.seed),
            "stop": (stop or self.stop) or None,
        }
        for key in _CALL_OPTIONS:
            if key in kwargs and key not in options:
                options[key] = kwargs[key]
        return options

    def _model_id(self, client: Client, override: str | None) -> str:
        """The model a call uses: this model's, or a per-call one; a bare name keeps this model's provider."""
        if not override:
            return self.model
        try:
            client.resolve(override)  # an id, or an alias the client knows
        except UnknownProviderError:
            provider = _provider(self.model)
            if provider is None:
                raise
            return f"{provider}/{override}"
        return override

    async def _achat(self, client: Client, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        stop = kwargs.pop("stop", None)
        response = await client.chat(to_messages(messages), **self._options(client, stop, kwargs))
        return ChatResult(generations=[ChatGeneration(message=ai_message(response))])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._sync_runtime().run(lambda client: self._achat(client, messages, {**kwargs, "stop": stop}))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        arguments = {**kwargs, "stop": stop}
        if self.client is not None:
            return await self._achat(self.client, messages, arguments)
        return await self._own_runtime().arun(lambda client: self._achat(client, messages, arguments))

    def _opener(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Any) -> Callable[[Client], Any]:
        return lambda client: client.stream(to_messages(messages), **self._options(client, stop, kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        opener = self._opener(messages, stop, kwargs)
        if self.client is not None:
            items: AsyncIterator[ChatChunk | ChatStream] = _with_end(opener(self.client))
        else:
            items = self._own_runtime().astream(opener)
        async for item in items:
            generation = _generation(item)
            if run_manager is not None and isinstance(item, ChatChunk) and item.delta:
                await run_manager.on_llm_new_token(item.delta, chunk=generation)
            yield generation

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for item in self._sync_runtime().stream(self._opener(messages, stop, kwargs)):
            generation = _generation(item)
            if run_manager is not None and isinstance(item, ChatChunk) and item.delta:
                run_manager.on_llm_new_token(item.delta, chunk=generation)
            yield generation

    # tools and structured output ---------------------------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        """Bind tools (LangChain tools, functions, pydantic models or OpenAI dicts) for the model to call."""
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        if tool_choice in ("any", True):
            tool_choice = "required"
        elif tool_choice is False:
            tool_choice = None
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: Any,
        *,
        method: str = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, Any]:
        """Return objects shaped by `schema` (a pydantic model, TypedDict or JSON schema), by tool call, JSON
        schema or JSON mode. With `strict=True` the schema is sent in the form OpenAI's strict mode accepts (every
        property required, optional ones nullable, no other properties)."""
        if kwargs:
            raise ValueError(f"unsupported arguments: {sorted(kwargs)}")
        is_model = isinstance(schema, type) and is_basemodel_subclass(schema)
        traced = {"kwargs": {"method": method, "strict": strict}, "schema": schema}  # for LangSmith and callbacks
        if method == "function_calling":
            name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=name, strict=strict, ls_structured_output_format=traced)
            parser: Runnable[Any, Any] = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)
                if is_model
                else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            )
        elif method in ("json_schema", "json_mode"):
            response_format = _response_format(schema, method, strict)
            llm = self.bind(response_format=response_format, ls_structured_output_format=traced)
            parser = PydanticOutputParser(pydantic_object=schema) if is_model else JsonOutputParser()
        else:
            raise ValueError(f"unknown method {method!r}; use function_calling, json_schema or json_mode")
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks(
            [RunnablePassthrough.assign(parsed=lambda _: None)], exception_key="parsing_error"
        )


def _response_format(schema: Any, method: str, strict: bool | None) -> dict[str, Any]:
    if method == "json_mode":
        return {"type": "json_object"}
    if isinstance(schema, dict):
        json_schema = schema
    elif isinstance(schema, type) and is_basemodel_subclass(schema):
        # pydantic v2 and v1 models: the model's own schema (with $defs), which its parser validates against
        v2 = hasattr(schema, "model_json_schema")
        json_schema = schema.model_json_schema() if v2 else schema.schema()  # type: ignore[attr-defined]
    else:
        json_schema = convert_to_json_schema(schema)  # a TypedDict or function
    spec: dict[str, Any] = {"name": schema_name(json_schema.get("title")), "schema": json_schema}
    if strict:
        spec["schema"] = strict_schema(json_schema)
    if strict is not None:
        spec["strict"] = strict
    if json_schema.get("description"):
        spec["description"] = json_schema["description"]
    return {"type": "json_schema", "json_schema": spec}


def _generation(item: ChatChunk | ChatStream) -> ChatGenerationChunk:
    """A streamed chunk, or the closing chunk made from the finished stream's reply."""
    if isinstance(item, ChatChunk):
        return ChatGenerationChunk(message=chunk_message(item))
    return ChatGenerationChunk(message=last_chunk(item.response))


async def _with_end(stream: ChatStream) -> AsyncIterator[ChatChunk | ChatStream]:
    async with stream:
        async for chunk in stream:
            yield chunk
    yield stream


def _register_for_load() -> None:
    """Let `langchain_core.load.load(..., allowed_objects="all")` revive `ChatLLMClient` as it does partner models.

    langchain-core admits only the classes in its own mapping under "all"; a third-party model is added there when
    this module is imported. Stricter loads (`"core"`, `"messages"`, explicit lists) are unaffected.
    """
    import importlib

    path = (*ChatLLMClient.get_lc_namespace(), "ChatLLMClient")
    try:
        loader = importlib.import_module("langchain_core.load.load")
    except ImportError:  # pragma: no cover - layout of another langchain-core version
        return
    mappings = getattr(loader, "ALL_SERIALIZABLE_MAPPINGS", None)
    if isinstance(mappings, dict):
        mappings.setdefault(path, path)
    cached = getattr(loader, "_default_class_paths_cache", {}).get("all")
    if isinstance(cached, set):
        cached.add(path)


_register_for_load()

__all__ = ["ChatLLMClient", "to_langchain_tool", "to_messages", "usage_metadata"]


def _provider(model: str) -> str | None:
    """The provider of a model id in any form a `Client` accepts ("openai/gpt-4o-mini", "openai:gpt-4o-mini")."""
    try:
        return ModelId.parse(model).provider
    except UnknownProviderError:
        return None

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

import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, TypeVar

from llmclient.client import Client
from llmclient.errors import MissingExtraError, UnknownProviderError
from llmclient.model_ids import ModelId
from llmclient.sync import LoopThread
from llmclient.tools import FunctionTool, to_tool
from llmclient.types import ChatChunk, ChatResponse, ImagePart, ImageURL, Message, TextPart, ToolCall, Usage

try:
    from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
    from langchain_core.language_models import BaseChatModel, LangSmithParams
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )
    from langchain_core.messages.ai import UsageMetadata
    from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
    from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
    from langchain_core.tools import BaseTool, StructuredTool
    from langchain_core.utils.function_calling import convert_to_openai_tool
    from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr
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


# -- messages -----------------------------------------------------------------------------------------------------


def to_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """llmclient messages from LangChain ones."""
    converted: list[Message] = []
    for message in messages:
        content = _content(message.content)
        if isinstance(message, SystemMessage):
            converted.append(Message(role="system", content=content))
        elif isinstance(message, HumanMessage):
            converted.append(Message(role="user", content=content, name=message.name))
        elif isinstance(message, AIMessage):
            calls = [
                ToolCall(id=call.get("id") or f"call_{index}", name=call["name"], arguments=call["args"])
                for index, call in enumerate(message.tool_calls)
            ]
            converted.append(Message(role="assistant", content=content or None, tool_calls=calls or None))
        elif isinstance(message, ToolMessage):
            converted.append(Message(role="tool", content=content, tool_call_id=message.tool_call_id))
        else:
            raise ValueError(f"unsupported LangChain message type {type(message).__name__}")
    return converted


def _content(content: str | list[Any]) -> str | list[TextPart | ImagePart]:
    if isinstance(content, str):
        return content
    parts: list[TextPart | ImagePart] = []
    for block in content:
        if isinstance(block, str):
            parts.append(TextPart(text=block))
        elif block.get("type") == "text":
            parts.append(TextPart(text=block["text"]))
        elif block.get("type") == "image_url":
            image = block["image_url"]
            parts.append(ImagePart(image_url=ImageURL(url=image["url"] if isinstance(image, dict) else image)))
        else:
            raise ValueError(f"unsupported content block {block.get('type')!r}")
    return parts


def usage_metadata(usage: Usage) -> UsageMetadata:
    """LangChain's usage shape (input counts cached tokens too, as LangChain defines it)."""
    metadata: dict[str, Any] = {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_input_tokens:
        metadata["input_token_details"] = {"cache_read": usage.cached_input_tokens}
    if usage.reasoning_tokens:
        metadata["output_token_details"] = {"reasoning": usage.reasoning_tokens}
    result: UsageMetadata = UsageMetadata(**metadata)  # type: ignore[typeddict-item]
    return result


def _ai_message(response: ChatResponse) -> AIMessage:
    return AIMessage(
        content=response.text,
        tool_calls=[
            {"name": call.name, "args": call.arguments, "id": call.id, "type": "tool_call"}
            for call in response.tool_calls
        ],
        usage_metadata=usage_metadata(response.usage),
        response_metadata=_metadata(response),
    )


def _metadata(response: ChatResponse) -> dict[str, Any]:
    return {
        "model_name": response.model,
        "model_provider": response.provider,
        "finish_reason": response.finish_reason,
        "usage_estimated": response.usage.estimated,
        "cost_usd": None if response.cost is None else str(response.cost.total),
    }


def _chunk_message(chunk: ChatChunk) -> AIMessageChunk:
    return AIMessageChunk(
        content=chunk.delta,
        tool_call_chunks=[
            {"name": d.name, "args": d.arguments, "id": d.id, "index": d.index, "type": "tool_call_chunk"}
            for d in chunk.tool_call_deltas
        ],
        usage_metadata=usage_metadata(chunk.usage) if chunk.usage is not None else None,
    )


# -- the chat model -----------------------------------------------------------------------------------------------


_CALL_OPTIONS = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "seed", "top_p", "top_k")


class ChatLLMClient(BaseChatModel):
    """A LangChain chat model backed by llmclient: any provider (local ones included) in a LangChain agent.

    Attributes:
        model: An llmclient model id such as `"deepseek/deepseek-chat"` (default: `LLMCLIENT_MODEL`).
        client: The `Client` to use for async calls (its ledger records every call). Sync calls run on a private
            event loop with a client of the same settings that shares that ledger.
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

    _async_client: Client | None = PrivateAttr(default=None)
    _sync_client: Client | None = PrivateAttr(default=None)
    _loop: LoopThread | None = PrivateAttr(default=None)
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
        params = LangSmithParams(ls_provider=_provider(model) or "llmclient", ls_model_name=model, ls_model_type="chat")
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

    def _client_for_async(self) -> Client:
        if self.client is not None:
            return self.client
        with self._lock:
            if self._async_client is None:
                self._async_client = self._new_client()
            return self._async_client

    def _run_sync(self, make: Callable[[Client], Coroutine[Any, Any, T]]) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread("llmclient-langchain")
            if self._sync_client is None:
                ledger = self.client.ledger if self.client is not None else None
                self._sync_client = self._new_client(ledger=ledger)
            loop, client = self._loop, self._sync_client
        return loop.run(make(client))

    @property
    def ledger(self) -> Any:
        """The ledger every call of this model is recorded in."""
        return self._client_for_async().ledger

    # calls -------------------------------------------------------------------------------------------------------

    def _options(self, stop: list[str] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {
            "model": kwargs.get("model", self.model),
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

    async def _achat(self, client: Client, messages: list[BaseMessage], options: dict[str, Any]) -> ChatResult:
        response = await client.chat(to_messages(messages), **options)
        return ChatResult(generations=[ChatGeneration(message=_ai_message(response))])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        options = self._options(stop, kwargs)
        return self._run_sync(lambda client: self._achat(client, messages, options))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await self._achat(self._client_for_async(), messages, self._options(stop, kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        options = self._options(stop, kwargs)
        async for chunk in self._client_for_async().stream(to_messages(messages), **options):
            generation = ChatGenerationChunk(message=_chunk_message(chunk))
            if run_manager is not None and chunk.delta:
                await run_manager.on_llm_new_token(chunk.delta, chunk=generation)
            yield generation

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        options = self._options(stop, kwargs)

        async def collect(client: Client) -> list[ChatChunk]:
            return [chunk async for chunk in client.stream(to_messages(messages), **options)]

        # Chunks are produced on the private loop and handed over once the stream ends: simple and correct for the
        # sync path, which LangChain uses mostly in scripts; use `astream` for token-by-token delivery.
        for chunk in self._run_sync(collect):
            generation = ChatGenerationChunk(message=_chunk_message(chunk))
            if run_manager is not None and chunk.delta:
                run_manager.on_llm_new_token(chunk.delta, chunk=generation)
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
        """Return objects shaped by `schema` (a pydantic model or JSON schema), by tool call, JSON schema or JSON
        mode."""
        if kwargs:
            raise ValueError(f"unsupported arguments: {sorted(kwargs)}")
        is_model = isinstance(schema, type) and issubclass(schema, BaseModel)
        if method == "function_calling":
            name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools([schema], tool_choice=name, strict=strict)
            parser: Runnable[Any, Any] = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)
                if is_model
                else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            )
        elif method in ("json_schema", "json_mode"):
            if method == "json_schema":
                json_schema = schema.model_json_schema() if is_model else schema
                spec: dict[str, Any] = {"name": json_schema.get("title", "output"), "schema": json_schema}
                if strict is not None:
                    spec["strict"] = strict
                response_format: dict[str, Any] = {"type": "json_schema", "json_schema": spec}
            else:
                response_format = {"type": "json_object"}
            llm = self.bind(response_format=response_format)
            parser = PydanticOutputParser(pydantic_object=schema) if is_model else JsonOutputParser()
        else:
            raise ValueError(f"unknown method {method!r}; use function_calling, json_schema or json_mode")
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks(
            [RunnablePassthrough.assign(parsed=lambda _: None)], exception_key="parsing_error"
        )


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

"""Tools from ordinary Python: JSON schemas from type hints and docstrings, validated calls, the tool-call loop.

```python
from typing import Literal
from llmclient import tool

@tool
def get_weather(city: str, unit: Literal["c", "f"] = "c") -> str:
    \"\"\"Current weather in a city.

    Args:
        city: The city's name, e.g. "Paris".
        unit: Celsius or Fahrenheit.
    \"\"\"
    return f"18°{unit.upper()} in {city}"

schema = get_weather.tool.to_openai()
assert schema["function"]["parameters"]["properties"]["city"]["description"] == 'The city\\'s name, e.g. "Paris".'
assert get_weather("Paris") == "18°C in Paris"       # still an ordinary function
```

Schemas equal what LangChain's `convert_to_openai_tool` produces for the same function, so agents built on either
library can share them. Tool names are resolved only against the tools given — never through getattr, eval or import.
"""

from __future__ import annotations

import functools
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, overload

from pydantic import BaseModel, ValidationError

from llmclient.errors import ToolArgumentsError, ToolError, ToolExecutionError, bound, redact
from llmclient.tools.schema import function_parts, model_parts
from llmclient.types import ChatResponse, Message, Tool, ToolCall, Usage

OnToolError = Literal["message", "raise"]
"""What `Client.run` does when a tool raises: tell the model ("message") or raise `ToolExecutionError`."""


class FunctionTool:
    """A Python function (sync or async) offered to a model as a tool, with its arguments validated first.

    Calling a `FunctionTool` calls the function itself, so decorated functions keep working as before.
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> None:
        if not callable(fn):
            raise ToolError(f"a tool must be callable, not {type(fn).__name__}")
        self.fn = fn
        self.arguments_model, tool_name, tool_description, parameters = function_parts(
            fn, name=name, description=description
        )
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
        self.tool = Tool(name=tool_name, description=tool_description, parameters=parameters)
        functools.update_wrapper(self, fn)

    @property
    def name(self) -> str:
        """The tool's name as the model sees it."""
        return self.tool.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments checked and converted against the signature, or `ToolArgumentsError` saying why not."""
        unknown = sorted(set(arguments) - set(self.arguments_model.model_fields))
        if unknown:
            expected = ", ".join(self.arguments_model.model_fields) or "none"
            raise ToolArgumentsError(f"unknown arguments for {self.name}: {', '.join(unknown)} (expected: {expected})")
        try:
            validated = self.arguments_model.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'arguments'}: {error['msg']}" for error in exc.errors()[:8]
            )
            raise ToolArgumentsError(f"invalid arguments for {self.name}: {problems}") from exc
        return {name: getattr(validated, name) for name in type(validated).model_fields}

    async def invoke(self, kwargs: Mapping[str, Any]) -> Any:
        """Run with validated arguments: async functions on the loop, sync ones in a worker thread."""
        if self.is_async:
            return await self.fn(**kwargs)
        import asyncio

        return await asyncio.to_thread(self.fn, **kwargs)

    async def acall(self, arguments: Mapping[str, Any]) -> Any:
        """Validate, then run."""
        return await self.invoke(self.validate(arguments))


class LangChainTool(FunctionTool):
    """A LangChain `BaseTool` (or `@tool` object) used as an llmclient tool: its own schema and validation."""

    def __init__(self, wrapped: Any) -> None:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        self.fn = wrapped
        self.wrapped = wrapped
        self.is_async = True
        self.tool = Tool.model_validate(convert_to_openai_tool(wrapped))
        schema = getattr(wrapped, "args_schema", None)
        self.arguments_model = schema if isinstance(schema, type) and issubclass(schema, BaseModel) else BaseModel

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.wrapped.invoke(*args, **kwargs)

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        if self.arguments_model is not BaseModel:
            super().validate(arguments)  # report bad arguments the same way; LangChain re-validates on invoke
        return dict(arguments)

    async def invoke(self, kwargs: Mapping[str, Any]) -> Any:
        return await self.wrapped.ainvoke(dict(kwargs))


class Toolset(ABC):
    """Tools that live somewhere that must be opened first, such as an MCP server
    (`llmclient.integrations.mcp.MCPTools`).

    `Client.run(tools=[..., toolset])` opens each toolset for the run (unless it is open already), lists its tools
    next to the others, and closes what it opened when the run ends.
    """

    @abstractmethod
    def opened(self) -> AbstractAsyncContextManager[Sequence[FunctionTool]]:
        """An async context manager that yields the tools, open for the duration of the block."""


@overload
def tool(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> FunctionTool: ...


@overload
def tool(
    fn: None = None, *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Turn a function into a `FunctionTool` (usable bare, `@tool`, or with overrides, `@tool(name="x")`)."""
    if fn is None:
        return lambda inner: FunctionTool(inner, name=name, description=description)
    return FunctionTool(fn, name=name, description=description)


def tool_from_function(
    function: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> Tool:
    """The tool definition of a Python function: schema from its type hints, text from its docstring.

    See `tool` for a runnable tool; this returns the definition only (the same as `tool(function).tool`).
    """
    _, tool_name, tool_description, parameters = function_parts(function, name=name, description=description)
    return Tool(name=tool_name, description=tool_description, parameters=parameters)


def tool_from_model(model: type[BaseModel], *, name: str | None = None, description: str | None = None) -> Tool:
    """A tool whose parameters are a pydantic model's fields (its name and docstring by default)."""
    tool_name, tool_description, parameters = model_parts(model, name=name, description=description)
    return Tool(name=tool_name, description=tool_description, parameters=parameters)


def to_tool(item: Any) -> Tool | FunctionTool:
    """A `Tool` (definition only) or `FunctionTool` (runnable) from anything `tools=` accepts.

    Functions, `FunctionTool`s, `Tool`s, pydantic model classes, OpenAI tool dicts and LangChain tools.
    """
    if isinstance(item, (Tool, FunctionTool)):
        return item
    if isinstance(item, Toolset):
        raise ToolError(
            f"{type(item).__name__} lists its tools when it is opened: pass it to client.run(tools=...), which opens "
            "it, or open it yourself (async with) and pass its tools"
        )
    if isinstance(item, Mapping):
        return Tool.model_validate(dict(item))
    if isinstance(item, type) and issubclass(item, BaseModel):
        return tool_from_model(item)
    if _is_langchain_tool(item):
        return LangChainTool(item)
    if callable(item):
        return FunctionTool(item)
    raise ToolError(f"cannot make a tool from {type(item).__name__}")


def definitions(items: Iterable[Any] | None) -> list[Tool]:
    """The tool definitions to send, from anything `tools=` accepts."""
    return [entry.tool if isinstance(entry, FunctionTool) else entry for entry in map(to_tool, items or ())]


def _is_langchain_tool(item: Any) -> bool:
    return hasattr(item, "ainvoke") and hasattr(item, "args_schema") and hasattr(item, "name")


# -- the loop -----------------------------------------------------------------------------------------------------


MAX_TOOL_MESSAGE_CHARS = 2000


@dataclass
class ToolResult:
    """What running one tool call gave: its message for the model, and the error if it failed."""

    call: ToolCall
    content: str
    error: str | None = None


@dataclass
class ToolRunner:
    """Runs tool calls against the tools given, turning every failure into a message the model can act on.

    Args:
        tools: The runnable tools by name.
        timeout: Seconds a tool may run before it is cancelled and reported.
        on_tool_error: "message" reports a tool's exception to the model; "raise" raises `ToolExecutionError`.
        max_retries: How many invalid calls (unknown name, bad JSON, failed validation) each tool may receive
            before `ToolArgumentsError` ends the run.
        secrets: Strings scrubbed from error text sent to the model.
    """

    tools: Mapping[str, FunctionTool]
    timeout: float | None = None
    on_tool_error: OnToolError = "message"
    max_retries: int = 2
    secrets: Sequence[str] = ()
    failures: dict[str, int] = field(default_factory=dict)

    async def run(
        self, calls: Sequence[ToolCall], *, each: Callable[[ToolCall], Awaitable[ToolResult]] | None = None
    ) -> list[ToolResult]:
        """Run every call concurrently (with `each`, by default `run_one`); results come back in the calls' order,
        one per call id.

        When one call ends the run (`ToolArgumentsError`, or `ToolExecutionError` under "raise"), the others are
        cancelled and awaited before it is raised: no tool keeps running after `run` ended (a sync tool's thread
        cannot be stopped; its result is dropped).
        """
        import asyncio

        run_one = each or self.run_one
        tasks = [asyncio.ensure_future(run_one(call)) for call in calls]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def run_one(self, call: ToolCall) -> ToolResult:
        """Run one call: its result, or an error message for the model (see the class docstring)."""
        import asyncio

        function = self.tools.get(call.name)
        if function is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return self._invalid(call, f"unknown tool {call.name!r}; the available tools are: {known}")
        arguments = _parsed_arguments(call)
        if arguments is None:
            raw = bound(call.raw_arguments, 200)
            return self._invalid(call, f"the arguments for {call.name} are not a JSON object: {raw!r}")
        try:
            kwargs = function.validate(arguments)
        except ToolArgumentsError as exc:
            return self._invalid(call, exc.message)
        self.failures.pop(call.name, None)  # a valid call: the tool's invalid-call count starts again
        try:
            result = await asyncio.wait_for(function.invoke(kwargs), self.timeout)
        except asyncio.TimeoutError:
            # A sync tool's thread cannot be killed; it is abandoned and the model is told.
            return ToolResult(call, f"Error: {call.name} timed out after {self.timeout:g} s", error="timeout")
        except Exception as exc:  # CancelledError and KeyboardInterrupt are BaseException: they propagate
            if self.on_tool_error == "raise":
                raise ToolExecutionError(f"tool {call.name} raised {type(exc).__name__}") from exc
            text = bound(redact(str(exc), self.secrets), MAX_TOOL_MESSAGE_CHARS)
            return ToolResult(call, f"Error: {type(exc).__name__}: {text}", error=type(exc).__name__)
        return ToolResult(call, as_text(result))

    def _invalid(self, call: ToolCall, reason: str) -> ToolResult:
        count = self.failures[call.name] = self.failures.get(call.name, 0) + 1
        if count > self.max_retries:
            raise ToolArgumentsError(bound(f"{reason} (after {count} invalid calls)", 300))
        text = bound(f"Error: {reason}. Fix the call and try again.", MAX_TOOL_MESSAGE_CHARS)
        return ToolResult(call, text, error="invalid_call")


def _parsed_arguments(call: ToolCall) -> dict[str, Any] | None:
    if call.arguments or not call.raw_arguments.strip():
        return call.arguments
    try:
        value = json.loads(call.raw_arguments)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply for the decoder
        return None
    return value if isinstance(value, dict) else None


def as_text(result: Any) -> str:
    """What a tool returned, as the text a model reads: strings as they are, models and data as JSON."""
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    try:
        return json.dumps(result, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(result)


def tool_messages(results: Sequence[ToolResult]) -> list[Message]:
    """One tool message per tool call id, in the calls' order."""
    return [
        Message(role="tool", tool_call_id=result.call.id, name=result.call.name, content=result.content)
        for result in results
    ]


class RunResult:
    """The outcome of `client.run`: the final reply, the whole transcript, and usage and cost over every step."""

    def __init__(self, messages: list[Message], responses: list[ChatResponse]) -> None:
        self.messages = messages
        """The full transcript: the input, each assistant reply, and every tool result."""
        self.responses = responses
        """Each step's `ChatResponse`, in order (each also has its own ledger record)."""

    @property
    def response(self) -> ChatResponse:
        """The last reply (the answer, when the run completed)."""
        return self.responses[-1]

    @property
    def steps(self) -> int:
        """How many model calls were made."""
        return len(self.responses)

    @property
    def usage(self) -> Usage:
        """Usage summed over every step."""
        return sum((response.usage for response in self.responses), Usage())

    @property
    def cost(self) -> Decimal | None:
        """Cost in USD summed over every step; None if any step's price was unknown."""
        total = Decimal(0)
        for response in self.responses:
            if response.cost is None:
                return None
            total += response.cost.total
        return total

    def __repr__(self) -> str:
        return f"RunResult(steps={self.steps}, usage={self.usage!r})"

"""The tool loop behind `Client.run`: chat, run the tools the model asks for, send back their results, repeat.

Async tools run concurrently, sync ones in worker threads; exactly one tool message per tool call id is appended,
in order. Invalid calls (unknown tool, bad JSON, failed validation) and tool exceptions become error messages the
model can act on (see `llmclient.tools.ToolRunner`). Each step is one `chat` call with its own ledger record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from typing import Any

from llmclient.errors import InvalidRequestError, MaxStepsExceededError
from llmclient.model_ids import ModelId
from llmclient.observability.observers import Hooks, Observer, Run, ToolExecution, notify
from llmclient.tools import (
    FunctionTool,
    OnToolError,
    RunResult,
    ToolResult,
    ToolRunner,
    Toolset,
    to_tool,
    tool_messages,
)
from llmclient.types import ChatResponse, Message, ToolCall


def runnable_tools(tools: Iterable[Any]) -> dict[str, FunctionTool]:
    """The tools by name, each one llmclient can execute; a bare definition is refused."""
    runnable: dict[str, FunctionTool] = {}
    for item in tools:
        converted = to_tool(item)
        if not isinstance(converted, FunctionTool):
            raise InvalidRequestError(
                f"run() needs tools it can execute; {converted.name!r} is a definition only (pass the function)"
            )
        runnable[converted.name] = converted
    return runnable


def unique_call_ids(response: ChatResponse) -> None:
    """Give every tool call of a reply its own id: a model that repeats an id (or sends none) would otherwise get
    two results under one id, which providers reject, or a result matched to the wrong call. A repeated id gets a
    suffix (`call_1`, `call_1~2`) in the reply itself, so the transcript and the results agree."""
    seen: set[str] = set()
    for index, call in enumerate(response.tool_calls):
        base = call.id or f"call_{index}"
        candidate, n = base, 1
        while candidate in seen:
            n += 1
            candidate = f"{base}~{n}"
        seen.add(candidate)
        call.id = candidate


async def run_tools(
    chat: Callable[[list[Message], dict[str, Any]], Awaitable[ChatResponse]],
    messages: list[Message],
    tools: Iterable[Any],
    *,
    max_steps: int,
    tool_timeout: float | None,
    on_tool_error: OnToolError,
    max_tool_retries: int,
    secrets: list[str],
    chat_options: dict[str, Any],
    observers: Sequence[Observer] = (),
    model_id: ModelId | None = None,
) -> RunResult:
    """Loop until the model answers without calling a tool, or `max_steps` model calls were made.

    Args:
        chat: Sends the transcript with the given options (tools included) as one `chat` call.
        messages: The conversation so far (appended to in place).
        tools: What the model may call; each must be executable. A `Toolset` (an MCP server) is opened for the
            run unless it is open already, and its tools join the others.
        max_steps: The most model calls; past it, `MaxStepsExceededError` with the transcript so far.
        tool_timeout: Seconds a tool may run before it is cancelled and reported to the model.
        on_tool_error: "message" (report a tool's exception to the model) or "raise" (`ToolExecutionError`).
        max_tool_retries: Invalid calls allowed per tool before `ToolArgumentsError`.
        secrets: Strings scrubbed from tool errors before the model sees them (the API keys in use).
        chat_options: Options for every step. A forcing `tool_choice` ("required" or a tool's name) applies to the
            first step only, then "auto" (as the OpenAI Agents SDK's reset_tool_choice does), or the model could
            never answer.
        observers: Told of the run's start and end and of each tool's (model calls report through the pipeline).
        model_id: Where the steps go, for the observers (None when the model does not resolve: the first step
            raises why).
    """
    if on_tool_error not in ("message", "raise"):
        raise InvalidRequestError('on_tool_error must be "message" or "raise"')
    async with AsyncExitStack() as toolsets:  # a toolset (an MCP server) stays open for the whole run
        listed: list[Any] = []
        for item in tools:
            listed.extend(await toolsets.enter_async_context(item.opened()) if isinstance(item, Toolset) else [item])
        runnable = runnable_tools(listed)
        runner = ToolRunner(
            runnable, timeout=tool_timeout, on_tool_error=on_tool_error, max_retries=max_tool_retries, secrets=secrets
        )
        options = {**chat_options, "tools": list(runnable.values())}
        hooks = Hooks(observers)
        run = Run(model=options.get("model"), tools=tuple(runnable), model_id=model_id)
        notify(hooks.on_run_start, run)
        try:
            result = await _loop(chat, messages, runner, options, max_steps, hooks)
        except BaseException as error:
            notify(hooks.on_run_end, run, None, error)
            raise
        notify(hooks.on_run_end, run, result, None)
        return result


async def _loop(
    chat: Callable[[list[Message], dict[str, Any]], Awaitable[ChatResponse]],
    transcript: list[Message],
    runner: ToolRunner,
    options: dict[str, Any],
    max_steps: int,
    hooks: Hooks,
) -> RunResult:
    responses: list[ChatResponse] = []
    for _ in range(max_steps):
        # A budget, a provider error or a cancellation ends the run here, with each finished step in the ledger.
        response = await chat(transcript, options)
        if options.get("tool_choice") not in (None, "auto", "none"):
            options = {**options, "tool_choice": "auto"}
        responses.append(response)
        unique_call_ids(response)
        transcript.append(response.message)
        if not response.tool_calls:
            return RunResult(transcript, responses)
        calls = response.tool_calls
        results = await (_observed(runner, calls, hooks) if hooks.on_tool_start else runner.run(calls))
        transcript.extend(tool_messages(results))
    partial = RunResult(transcript, responses)
    raise MaxStepsExceededError(
        f"the model was still calling tools after {max_steps} steps",
        messages=transcript,
        usage=partial.usage,
    )


async def _observed(runner: ToolRunner, calls: Sequence[ToolCall], hooks: Hooks) -> list[ToolResult]:
    """`runner.run(calls)` with each tool's start and end reported."""

    async def one(call: ToolCall) -> ToolResult:
        function = runner.tools.get(call.name)
        execution = ToolExecution(call, description=function.tool.description if function is not None else "")
        notify(hooks.on_tool_start, execution)
        try:
            result = await runner.run_one(call)
        except BaseException as error:
            notify(hooks.on_tool_end, execution, None, error)
            raise
        notify(hooks.on_tool_end, execution, result, None)
        return result

    return await runner.run(calls, each=one)

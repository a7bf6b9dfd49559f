"""The machinery the in-process drivers share: one engine call at a time, prompt stops, tool-call parsing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from llmclient.drivers.local.runtime import Finished, ModelWorker, Stop
from llmclient.drivers.local.templates import parse_tool_calls


def generate(tokens: int, delay: float = 0.01) -> Callable[[Stop, Callable[[str], None]], int]:
    def produce(stop: Stop, emit: Callable[[str], None]) -> int:
        made = 0
        for index in range(tokens):
            if stop:
                break
            time.sleep(delay)  # one "token" of blocking engine work
            emit(f"t{index} ")
            made += 1
        return made

    return produce


async def test_stream_bridges_a_thread_into_async_for() -> None:
    worker: ModelWorker[str] = ModelWorker("m")
    items = [item async for item in worker.stream(generate(5))]
    assert items[:5] == ["t0 ", "t1 ", "t2 ", "t3 ", "t4 "]
    last = items[-1]
    assert isinstance(last, Finished) and last.result == 5


async def test_two_concurrent_calls_never_run_the_engine_at_once() -> None:
    worker: ModelWorker[str] = ModelWorker("m")
    peak = 0

    def work(stop: Stop) -> int:
        nonlocal peak
        peak = max(peak, worker.busy)
        time.sleep(0.05)
        return worker.busy

    async def consume() -> None:
        nonlocal peak
        async for _ in worker.stream(generate(3)):
            peak = max(peak, worker.busy)

    await asyncio.gather(worker.run(work), consume(), worker.run(work), consume())
    assert peak == 1


async def test_cancelling_stops_within_a_token_and_frees_the_lock() -> None:
    worker: ModelWorker[str] = ModelWorker("m")
    produced: list[int] = []

    def produce(stop: Stop, emit: Callable[[str], None]) -> None:
        for index in range(1000):
            if stop:
                return
            time.sleep(0.01)
            produced.append(index)
            emit("x")

    async def consume() -> None:
        async for _ in worker.stream(produce):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    count = len(produced)
    await asyncio.sleep(0.05)
    assert len(produced) == count  # the thread has stopped: nothing more was generated
    assert count < 30
    assert await worker.run(lambda stop: "next call runs") == "next call runs"


async def test_closing_the_stream_early_stops_the_thread() -> None:
    worker: ModelWorker[str] = ModelWorker("m")
    stream = worker.stream(generate(1000))
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert worker.busy == 0
    assert await worker.run(lambda stop: 1) == 1


async def test_errors_in_the_thread_reach_the_caller() -> None:
    worker: ModelWorker[str] = ModelWorker("m")

    def broken(stop: Stop, emit: Callable[[str], None]) -> None:
        emit("partial")
        raise MemoryError("out of memory")

    received: list[Any] = []

    async def consume() -> None:
        async for item in worker.stream(broken):
            received.append(item)

    with pytest.raises(MemoryError):
        await consume()
    assert received == ["partial"]
    with pytest.raises(ValueError, match="bad"):
        await worker.run(lambda stop: (_ for _ in ()).throw(ValueError("bad")))


async def test_the_event_loop_keeps_ticking_during_generation() -> None:
    worker: ModelWorker[str] = ModelWorker("m")
    gaps: list[float] = []
    running = True

    async def heartbeat() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    async for _ in worker.stream(generate(20, delay=0.01)):
        pass
    running = False
    await beat
    assert max(gaps) < 0.05


# Recorded outputs of each format.
HERMES = (
    'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>'
)
LLAMA3 = (
    '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "parameters": {}}'
)
MISTRAL = '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]'


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        (HERMES, "Let me check.", [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]),
        (LLAMA3, "", [("get_weather", {"city": "Paris"}), ("get_time", {})]),
        ('{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [("get_weather", {"city": "Paris"})]),
        (MISTRAL, "", [("get_weather", {"city": "Paris"})]),
        ("The answer is 42.", "The answer is 42.", []),
        ('{"temperature": 21}', '{"temperature": 21}', []),  # JSON that is not a call stays text
    ],
)
def test_tool_call_formats(text: str, content: str, calls: list[tuple[str, dict[str, Any]]]) -> None:
    parsed_content, parsed = parse_tool_calls(text)
    assert parsed_content == content
    assert [(call.name, call.arguments) for call in parsed] == calls
    assert [call.id for call in parsed] == [f"call_{i}" for i in range(len(calls))]


def test_malformed_calls_keep_their_raw_text_for_feedback() -> None:
    _, (call,) = parse_tool_calls('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>')
    assert call.name == "get_weather"
    assert call.arguments == {}
    assert call.raw_arguments.startswith('{"name": "get_weather"')
    _, (mistral,) = parse_tool_calls("[TOOL_CALLS] [{broken")
    assert mistral.name == "" and mistral.raw_arguments == "[{broken"

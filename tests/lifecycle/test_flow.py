"""The one call lifecycle (`lifecycle/flow.py`): chat, stream, embed and the tool loop all run through it, and a
reply without usage is recorded as a flagged estimate on every path."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from llmclient import ChatChunk, ChatRequest, ChatResponse, Client, EmbedResponse, FakeDriver, ToolCall, Usage
from llmclient.drivers.fake import count_words
from llmclient.lifecycle.flow import Lifecycle

SRC = Path(__file__).resolve().parents[2] / "src" / "llmclient"
FLOW = SRC / "lifecycle" / "flow.py"


class Silent(FakeDriver):
    """A driver that reports no usage at all, as some servers and third-party drivers do: every reply (chat, the
    stream's last chunk, each embedding batch) carries an empty `Usage()`."""

    async def chat(self, request: ChatRequest) -> ChatResponse:
        response = await super().chat(request)
        response.usage = Usage()
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        async for chunk in super().stream(request):
            yield chunk.model_copy(update={"usage": None})

    async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> EmbedResponse:
        response = await super().embed(model, inputs, dimensions=dimensions)
        response.usage = Usage()
        return response


def silent_client() -> Client:
    # Priced, so a record of 0 tokens would also read $0: the estimate must make both visible.
    return Client(providers={"quiet": Silent(provider="quiet")}, prices={"quiet/*": 1})


# -- usage missing on a successful reply -------------------------------------------------------------------------


async def test_a_chat_reply_without_usage_is_counted_and_flagged() -> None:
    client = silent_client()
    reply = await client.chat("one two three", model="quiet/m")
    assert reply.text == "You said: one two three"
    expected = Usage(input_tokens=3, output_tokens=count_words(reply.text), estimated=True)
    [record] = client.ledger.records
    assert reply.usage == record.usage == expected
    assert reply.cost is not None and reply.cost.total == Decimal(3 + 5) / 1_000_000 == record.cost.total  # type: ignore[union-attr]
    assert record.counted_input_tokens == 3 and record.input_drift is None  # an estimate has no drift to report


async def test_a_stream_without_usage_is_counted_and_flagged() -> None:
    client = silent_client()
    stream = client.stream("one two three", model="quiet/m")
    reply = await stream.final_response()
    [record] = client.ledger.records
    assert reply.usage == record.usage == Usage(input_tokens=3, output_tokens=5, estimated=True)
    assert record.cost is not None and record.cost.total > 0 and record.error is None


async def test_tool_calls_without_usage_count_their_arguments() -> None:
    call = ToolCall(id="c1", name="lookup", arguments={"city": "Paris", "days": 3})
    client = Client(providers={"quiet": Silent(provider="quiet", replies=[call, call])}, prices={"quiet/*": 1})
    reply = await client.chat("weather", model="quiet/m")
    streamed = await client.stream("weather", model="quiet/m").final_response()
    arguments = count_words(call.raw_arguments)
    assert reply.usage.output_tokens == streamed.usage.output_tokens == arguments > 0
    assert reply.usage.estimated and streamed.usage.estimated


async def test_an_embedding_batch_without_usage_is_counted_and_flagged() -> None:
    client = silent_client()
    texts = ["one two", "three", "four five six", "one two"]
    result = await client.embed(texts, model="quiet/e", batch_size=2)
    [record] = client.ledger.records
    assert result.usage == record.usage == Usage(input_tokens=2 + 1 + 3, estimated=True)  # the repeat is not sent
    assert (record.attempts, record.cost is not None and record.cost.total > 0) == (2, True)


async def test_usage_the_provider_reported_is_kept_as_it_is() -> None:
    client = Client(prices={"fake/*": 1})
    reply = await client.chat("one two three", model="fake/m")
    assert reply.usage == Usage(input_tokens=3, output_tokens=5) and not reply.usage.estimated


# -- one lifecycle for every kind of call ------------------------------------------------------------------------


async def test_chat_stream_embed_and_the_tool_loop_run_through_the_lifecycle(monkeypatch: pytest.MonkeyPatch) -> None:
    entered: list[str] = []
    enter = Lifecycle.__aenter__

    async def spy(self: Lifecycle) -> Lifecycle:
        entered.append(self.call.kind)
        return await enter(self)

    monkeypatch.setattr(Lifecycle, "__aenter__", spy)

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    scripted = FakeDriver(
        provider="tools", self_hosted=True, replies=[ToolCall(id="1", name="add", arguments={"a": 1, "b": 2}), "3"]
    )
    async with Client(providers={"tools": scripted}) as client:
        await client.chat("hi", model="fake/m")
        await client.stream("hi", model="fake/m").final_response()
        await client.embed(["a", "b"], model="fake/e")
        assert entered == ["chat", "stream", "embed"]
        entered.clear()
        result = await client.run("add 1 and 2", tools=[add], model="tools/m")
    assert result.response.text == "3" and entered == ["chat", "chat"]  # one lifecycle per step of the loop
    assert len(client.ledger) == 5


def _calls_outside_the_lifecycle() -> list[str]:
    """Every place outside lifecycle/flow.py that admits, finishes or releases a call on a pipeline, starts a
    deadline, or runs the retry layer or a route: the lifecycle's own work, done anywhere else."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path == FLOW:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            name = ast.unparse(function)
            receiver = ast.unparse(function.value) if isinstance(function, ast.Attribute) else ""
            lifecycle_work = (
                (
                    (isinstance(function, ast.Attribute) and function.attr in ("admit", "finish", "release", "fail"))
                    and "pipeline" in receiver.lower()
                )
                or name in ("Deadline", "deadline.Deadline")
                or name.endswith((".policy.run", ".route.run"))
            )
            if lifecycle_work:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {name}")
    return found


def test_admit_send_and_finish_exist_once() -> None:
    assert _calls_outside_the_lifecycle() == []
    # The check sees what it looks for: the lifecycle itself does each of these.
    flow = ast.unparse(ast.parse(FLOW.read_text(encoding="utf-8")))
    for work in ("self.pipeline.admit(", "self.pipeline.finish(", "self.pipeline.release(", "Deadline(",
                 "call.policy.run(", "call.route.run("):  # fmt: skip
        assert work in flow, work


def test_the_three_kinds_of_call_use_the_lifecycle() -> None:
    for module in ("lifecycle/flow.py", "chat/streaming.py", "embeddings/job.py"):
        tree = ast.parse((SRC / module).read_text(encoding="utf-8"))
        entered = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.AsyncWith)
            and any(
                "Lifecycle(" in ast.unparse(item.context_expr)
                or ast.unparse(item.context_expr).split(".")[-1] == "life"
                for item in node.items
            )
        ]
        assert entered, module

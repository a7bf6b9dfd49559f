"""Typed values: OpenAI-format dicts in, validation, and the small conveniences users rely on."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from llmclient import ChatRequest, EmbedResponse, ImagePart, Message, TextPart, TokenCount, Tool, ToolCall, Usage
from llmclient.types import to_messages


def test_messages_accept_openai_dicts_with_parts() -> None:
    message = Message.model_validate(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is "},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "text", "text": "this?"},
            ],
        }
    )
    assert isinstance(message.content, list)
    assert isinstance(message.content[1], ImagePart)
    assert message.text == "What is this?"
    assert Message(role="assistant").text == ""


def test_deepseek_reasoning_content_becomes_reasoning() -> None:
    message = Message.model_validate({"role": "assistant", "content": "4", "reasoning_content": "2+2"})
    assert message.reasoning == "2+2"


@pytest.mark.parametrize(
    ("wire", "arguments", "raw"),
    [
        ({"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}, {"x": 1}, '{"x": 1}'),
        ({"function": {"name": "f", "arguments": {"x": 1}}}, {"x": 1}, '{"x": 1}'),  # Ollama: already an object
        ({"id": "a", "name": "f", "arguments": {"x": "猫"}}, {"x": "猫"}, '{"x": "猫"}'),
        ({"id": "a", "function": {"name": "f", "arguments": "{not json"}}, {}, "{not json"),  # kept raw for feedback
        ({"id": "a", "function": {"name": "f", "arguments": "[1, 2]"}}, {}, "[1, 2]"),
        ({"id": "a", "function": {"name": "f", "arguments": ""}}, {}, ""),
    ],
)
def test_tool_calls_parse_every_argument_shape(wire: dict[str, object], arguments: object, raw: str) -> None:
    call = ToolCall.model_validate(wire)
    assert call.name == "f"
    assert call.arguments == arguments
    assert call.raw_arguments == raw
    assert call.to_openai()["function"]["arguments"] == (raw or "{}")


def test_tools_round_trip_the_openai_shape() -> None:
    wire = {
        "type": "function",
        "function": {"name": "lookup", "description": "Find.", "parameters": {"type": "object"}, "strict": True},
    }
    tool = Tool.model_validate(wire)
    assert tool.to_openai() == wire
    with pytest.raises(ValidationError):
        Tool(name="has spaces")


def test_chat_request_validates_ranges_and_normalises_stop() -> None:
    request = ChatRequest(model="m", messages=[Message(role="user", content="x")], stop="END")
    assert request.stop == ["END"]
    for bad in ({"temperature": -0.1}, {"temperature": 2.5}, {"top_p": 0}, {"max_tokens": 0}, {"top_k": 0}):
        with pytest.raises(ValidationError):
            ChatRequest(model="m", messages=[Message(role="user", content="x")], **bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ChatRequest(model="m", messages=[])


def test_to_messages_normalises_every_input_form() -> None:
    assert to_messages("hi") == [Message(role="user", content="hi")]
    assert to_messages({"role": "system", "content": "s"}) == [Message(role="system", content="s")]
    assert to_messages([Message(role="user", content="a"), {"role": "assistant", "content": "b"}])[1].text == "b"
    with pytest.raises(TypeError, match="bytes"):
        to_messages(b"hi")


def test_usage_adds_up_and_knows_its_totals() -> None:
    a = Usage(input_tokens=10, cached_input_tokens=90, output_tokens=5, reasoning_tokens=2)
    b = Usage(input_tokens=1, output_tokens=1, estimated=True)
    total = a + b
    assert (total.input_tokens, total.cached_input_tokens, total.output_tokens, total.reasoning_tokens) == (
        11,
        90,
        6,
        2,
    )
    assert total.estimated
    assert a.prompt_tokens == 100 and a.total_tokens == 105
    with pytest.raises(ValidationError):
        Usage(input_tokens=-1)


def test_embed_response_holds_a_float32_matrix() -> None:
    response = EmbedResponse(vectors=[[1, 2], [3, 4]])
    assert response.vectors.dtype == np.float32 and response.vectors.shape == (2, 2)
    with pytest.raises(ValidationError):
        EmbedResponse(vectors=[1.0, 2.0])


def test_token_count_is_an_int() -> None:
    assert int(TokenCount(tokens=7, exact=True, tokenizer="t")) == 7


def test_text_part_defaults() -> None:
    assert TextPart(text="a").type == "text"


async def test_printing_a_reply_shows_what_matters() -> None:
    from llmclient import Client, ToolCall

    script = ["Paris.", ToolCall(id="c1", name="add", arguments={"a": 2})]
    async with Client(providers={"fake": {"replies": script}}) as client:
        reply = await client.chat("Capital of France?", model="fake/scripted")
        called = await client.chat("Add", model="fake/scripted")
    assert str(reply) == (
        "text='Paris.' finish_reason='stop' model='fake/scripted' usage=Usage(input_tokens=3, output_tokens=1) "
        "cost=Decimal('0')"
    )  # was every field of the pydantic model, the message's and the request's included
    assert repr(reply).startswith("ChatResponse(text='Paris.', finish_reason='stop', model='fake/scripted'")
    assert "tool_calls=[ToolCall(id='c1', name='add', arguments={'a': 2}" in str(called)
    assert repr(Usage(input_tokens=5, output_tokens=2, estimated=True)) == (
        "Usage(input_tokens=5, output_tokens=2, estimated=True)"
    )
    assert reply.model_dump()["message"]["content"] == "Paris."  # every field is still there

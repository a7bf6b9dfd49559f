"""The toolkit's stream assembler: calls joined by the driver's own numbers, usage that arrives in pieces."""

from __future__ import annotations

from llmclient import ChatChunk, ChatRequest, ToolCallDelta, Usage
from llmclient.drivers.streams import StreamAssembler, accumulate

REQUEST = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])


def test_calls_are_joined_by_sparse_interleaved_block_numbers() -> None:
    # Anthropic numbers content blocks: text 0, a call 1, more text 2, a call 3; fragments may interleave.
    assembler = StreamAssembler()
    for chunk in (
        ChatChunk(delta="Let me look. "),
        ChatChunk(tool_call_deltas=[ToolCallDelta(index=3, id="toolu_b", name="get_time")]),
        ChatChunk(tool_call_deltas=[ToolCallDelta(index=1, id="toolu_a", name="get_weather")]),
        ChatChunk(tool_call_deltas=[ToolCallDelta(index=1, arguments='{"city": ')]),
        ChatChunk(tool_call_deltas=[ToolCallDelta(index=3, arguments="{}")]),
        ChatChunk(tool_call_deltas=[ToolCallDelta(index=1, arguments='"Paris"}')]),
        ChatChunk(finish_reason="tool_calls"),
    ):
        assembler.add(chunk)
    reply = assembler.response(REQUEST, "p")
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("toolu_a", "get_weather", {"city": "Paris"}),
        ("toolu_b", "get_time", {}),
    ]
    assert (reply.text, reply.finish_reason) == ("Let me look. ", "tool_calls")
    assert assembler.generated() == 'Let me look. {}{"city": "Paris"}'  # what arrived, to count it


def test_usage_in_several_events_is_accumulated_not_replaced() -> None:
    # Anthropic: message_start carries the input and 1 output token, message_delta the cumulative output.
    assembler = StreamAssembler()
    assembler.add(
        ChatChunk(usage=Usage(input_tokens=472, cached_input_tokens=100, cache_write_tokens=20, output_tokens=1))
    )
    assembler.add(ChatChunk(delta="Hi"))
    assembler.add(ChatChunk(finish_reason="stop", usage=Usage(output_tokens=15)))
    assert assembler.response(REQUEST, "p").usage == Usage(
        input_tokens=472, cached_input_tokens=100, cache_write_tokens=20, output_tokens=15
    )
    # Gemini repeats the whole running total in each chunk: the last one stands.
    repeated = StreamAssembler()
    for output in (3, 9, 14):
        repeated.add(ChatChunk(usage=Usage(input_tokens=8, output_tokens=output, reasoning_tokens=5)))
    assert repeated.usage == Usage(input_tokens=8, output_tokens=14, reasoning_tokens=5)
    assert accumulate(Usage(input_tokens=1), Usage(output_tokens=2, estimated=True)).estimated


def test_a_stream_without_usage_is_flagged_and_the_signature_is_kept() -> None:
    assembler = StreamAssembler()
    assembler.add(ChatChunk(reasoning_delta="Think", reasoning_signature="sig-1"))
    assembler.add(ChatChunk(reasoning_delta="ing.", reasoning_signature="sig-2"))
    assembler.add(ChatChunk(delta="Done", finish_reason="stop", request_id="req_1"))
    reply = assembler.response(REQUEST, "p")
    assert (reply.reasoning, reply.message.reasoning_signature) == ("Thinking.", "sig-2")
    assert (reply.usage.estimated, reply.request_id) == (True, "req_1")


def test_several_choices_are_assembled_apart() -> None:
    assembler = StreamAssembler()
    assembler.add(ChatChunk(delta="a", choice=0))
    assembler.add(ChatChunk(delta="b", choice=1, finish_reason="stop"))
    assembler.add(ChatChunk(finish_reason="length", choice=0))
    reply = assembler.response(REQUEST, "p")
    assert [(c.index, c.message.text, c.finish_reason) for c in reply.choices] == [(0, "a", "length"), (1, "b", "stop")]

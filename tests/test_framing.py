"""Stream framing (llmclient.http.framing): lines end at LF, CRLF or a bare CR wherever the chunks are cut, and every
line is bounded."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmclient.http.framing import iter_lines, iter_ndjson, iter_sse

ENDINGS = [b"\n", b"\r\n", b"\r"]


async def pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """`data` cut at `points` (empty pieces kept: a transport may deliver them)."""
    edges = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def lines_of(data: bytes, points: list[int], limit: int | None = None) -> list[str]:
    async def read() -> list[str]:
        return [line async for line in iter_lines(pieces(*cut(data, points)), max_line_bytes=limit)]

    return asyncio.run(read())


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12),
        max_size=8,
    ),
    endings=st.lists(st.sampled_from(ENDINGS), min_size=8, max_size=8),
    points=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_every_line_end_wherever_the_chunks_are_cut(lines: list[str], endings: list[bytes], points: list[int]) -> None:
    # A CR followed by an empty line's LF would be one CRLF: the empty line then has another ending than LF.
    data = b""
    for text, end in zip(lines, endings, strict=False):
        if data.endswith(b"\r") and not text and end == b"\n":
            end = b"\r"
        data += text.encode() + end
    assert lines_of(data, points) == lines


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
async def test_events_and_ndjson_with_each_line_end(end: str) -> None:
    stream = end.join(["data: a", "data: b", "", ": keep-alive", "event: done", "data: c", "", ""]).encode()
    for at in range(len(stream) + 1):
        lines = iter_lines(pieces(stream[:at], stream[at:]))
        assert [event async for event in iter_sse(lines)] == [("message", "a\nb"), ("done", "c")], at
    ndjson = end.join(['{"a": 1}', "", '{"b": 2}', ""]).encode()
    for at in range(len(ndjson) + 1):
        assert [line async for line in iter_ndjson(pieces(ndjson[:at], ndjson[at:]))] == [b'{"a": 1}', b'{"b": 2}']


def test_a_line_over_the_limit_raises_before_it_grows() -> None:
    with pytest.raises(ValueError, match="over the 10 byte limit"):
        lines_of(b"x" * 11 + b"\r", [3], limit=10)
    with pytest.raises(ValueError, match="over the 10 byte limit"):
        lines_of(b"x" * 5 + b"\r" + b"y" * 11, [2, 9], limit=10)
    assert lines_of(b"x" * 10 + b"\r" + b"y" * 10, [4, 13], limit=10) == ["x" * 10, "y" * 10]

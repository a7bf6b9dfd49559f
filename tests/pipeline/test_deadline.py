"""The call's one deadline (llmclient.pipeline.deadline)."""

from __future__ import annotations

import asyncio

import pytest

from llmclient import APITimeoutError
from llmclient.pipeline import Deadline


async def test_deadline_raises_a_typed_timeout() -> None:
    with pytest.raises(APITimeoutError, match=r"0\.05 s deadline"):
        async with Deadline(0.05).scope():
            await asyncio.sleep(5)
    async with Deadline(None).scope():
        await asyncio.sleep(0)

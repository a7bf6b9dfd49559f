"""SyncClient's methods are derived from Client's, so their signatures cannot drift apart."""

from __future__ import annotations

import inspect

import pytest

from llmclient import Client, SyncClient


@pytest.mark.parametrize("name", ["chat", "stream", "embed", "count_tokens", "similarity", "search", "run"])
def test_sync_methods_have_the_clients_signatures(name: str) -> None:
    sync, original = getattr(SyncClient, name), getattr(Client, name)
    assert inspect.signature(sync) == inspect.signature(original)
    assert sync.__doc__ == original.__doc__


def test_an_unknown_option_is_refused_like_a_misspelt_keyword() -> None:
    with SyncClient() as client, pytest.raises(TypeError, match="temprature"):
        client.chat("hi", model="fake/echo", temprature=0.2)  # type: ignore[call-arg]

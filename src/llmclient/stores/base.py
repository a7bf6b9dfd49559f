"""What every store module shares: the errors of a store, what settling one call on shared budgets needs, psycopg
imported on first use, its errors translated, and the passwords to keep out of every message."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from llmclient._sanitize import redact
from llmclient.errors import ConfigurationError, LLMClientError, MissingExtraError

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class StoreUnavailableError(LLMClientError):
    """The shared store (PostgreSQL) could not be reached, failed mid-operation or did not answer in time."""

    retryable = True


class FleetDegradedWarning(UserWarning):
    """A call went ahead without the shared store (fail-open), or a record goes to the spool for later upload."""


@dataclass(frozen=True)
class Settlement:
    """What settling one call on shared budgets needs: the reservation to drop, the budgets to charge, when, and
    what to charge when the call's cost is unknown (a timeout after the request left: its reservation)."""

    reservation_id: str | None
    budgets: tuple[str, ...]
    at: datetime | None = None
    unknown_cost: Decimal | None = None


def identifier(name: str) -> str:
    """A table name safe to place in SQL: lower-case letters, digits and underscores only."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid table name: use lower-case letters, digits and underscores")
    return name


def load_psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401  (fail here, not on first call, when the pool is missing)
    except ImportError as exc:
        raise MissingExtraError(
            "the PostgreSQL store needs psycopg 3 and its pool: pip install 'llmclient[postgres]'"
        ) from exc
    return psycopg


def secrets_of(url: str) -> tuple[str, ...]:
    """The passwords `url` carries (as a URL's user information, `?password=`, `sslpassword=` or a keyword/value
    `password=`), as written and decoded, and `PGPASSWORD`'s, which libpq reads when the URL has none."""
    found = [os.environ.get("PGPASSWORD", "")]
    with contextlib.suppress(Exception):  # an unreadable URL is refused elsewhere; its text is redacted anyway
        params = load_psycopg().conninfo.conninfo_to_dict(url)
        found += [str(params.get(key) or "") for key in ("password", "sslpassword")]
    found += [quote(secret, safe="") for secret in found]
    return tuple(sorted({secret for secret in found if secret}, key=len, reverse=True))


def translate(exc: BaseException, where: str, secrets: tuple[str, ...]) -> LLMClientError:
    """A psycopg error as the package's own: a `ConfigurationError` for what the user must fix, else unavailable."""
    psycopg = load_psycopg()
    text = redact(str(exc), secrets)
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return ConfigurationError(
            f"the database user may not do this on {where}: {redact(exc.diag.message_primary or '', secrets)}; the "
            "client needs USAGE and CREATE on the schema to migrate, then SELECT, INSERT, UPDATE, DELETE on the "
            "llmclient_* tables and EXECUTE on the llmclient_* functions (see docs/fleet.md, Permissions)"
        )
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
        return ConfigurationError(
            f"the llmclient schema is missing on {where} ({redact(exc.diag.message_primary or '', secrets)}); run "
            "`llmclient db migrate --url ...` as a user allowed to create tables, or let the client migrate"
        )
    if isinstance(exc, psycopg.OperationalError):
        # libpq reports failures while connecting as text only (no SQLSTATE reaches the client before login).
        for hint, what in (
            ("password authentication failed", "the password is wrong"),
            ("no password supplied", "the URL has no password"),
            ("does not exist", "the database or role in the URL does not exist"),
            ("no pg_hba.conf entry", "the server does not accept this user from this host (pg_hba.conf)"),
            ("invalid dsn", "the URL is not a valid PostgreSQL URL"),
        ):
            if hint in text:
                return ConfigurationError(f"cannot use {where}: {what} ({first})")
        return StoreUnavailableError(f"PostgreSQL at {where} is unavailable: {first}")
    if isinstance(exc, psycopg.ProgrammingError) and "conninfo" in text.lower():
        return ConfigurationError(f"{where} is not a valid PostgreSQL URL: {first}")
    return StoreUnavailableError(f"PostgreSQL at {where} failed: {type(exc).__name__}: {first}")

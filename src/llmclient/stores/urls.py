"""From what a user writes to a store: the one place where a URL or a path becomes a ledger, a shared budget step
or a rate-limit store.

Only the composition root calls these (`llmclient.client` and the command line); the modules below it know the
interfaces (`CostLedger`, `Step`, `RateLimitStore`), never PostgreSQL. A location that is not one of the forms
accepted raises `ConfigurationError` naming its scheme alone, since the rest of a URL may hold a password.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmclient._sanitize import split_location
from llmclient.accounting.ledger import CostLedger, SQLiteLedger
from llmclient.errors import ConfigurationError

if TYPE_CHECKING:
    from llmclient.lifecycle import Pricing
    from llmclient.stores.pg_admission import SharedBudgetAdmission
    from llmclient.stores.pg_budgets import SharedBudgets
    from llmclient.stores.pg_ratelimit import PostgresRateLimitStore
    from llmclient.stores.postgres import PostgresStore

_LEDGER_SCHEMES = ("sqlite", "postgresql")
_POSTGRES_ONLY = ("postgresql",)


def checked(location: str, schemes: tuple[str, ...], what: str) -> tuple[str | None, str]:
    """`split_location` with its complaint as a `ConfigurationError` saying which option it was about."""
    try:
        return split_location(location, schemes)
    except ValueError as exc:
        raise ConfigurationError(f"{what}: {exc}") from None  # the ValueError's context may quote the URL


def postgres_store(url: str, what: str) -> PostgresStore:
    """The process's one store for a `postgresql://` URL (one pool per URL and process)."""
    scheme, _ = checked(url, _POSTGRES_ONLY, what)
    if scheme is None:
        raise ConfigurationError(f"{what}: expected a postgresql:// URL, got a path")
    from llmclient.stores.postgres import PostgresStore  # psycopg is imported on first use of the store

    return PostgresStore.shared(url)


def open_ledger(spec: CostLedger | str | Path | None) -> CostLedger:
    """A ledger from `Client(ledger=...)`: an instance (shared), `"sqlite:///path.db"` or a path (a SQLite file),
    `"postgresql://..."` (the fleet's shared ledger), or None (memory)."""
    if spec is None:
        return CostLedger()
    if isinstance(spec, CostLedger):
        return spec
    scheme, rest = checked(str(spec), _LEDGER_SCHEMES, "ledger")
    if scheme == "postgresql":
        from llmclient.stores.pg_ledger import PostgresLedger

        return PostgresLedger(postgres_store(rest, "ledger"))
    return SQLiteLedger(rest)


def open_budget_step(spec: str | SharedBudgets, pricing: Pricing, ledger: CostLedger) -> SharedBudgetAdmission:
    """The step `Client(budget_store=...)` adds: from a URL (budgets by tag and `charge_to`) or `SharedBudgets`."""
    from llmclient.stores.pg_admission import SharedBudgetAdmission
    from llmclient.stores.pg_budgets import SharedBudgets

    budgets = spec if isinstance(spec, SharedBudgets) else SharedBudgets(postgres_store(spec, "budget_store"))
    return SharedBudgetAdmission(budgets, pricing, ledger=ledger)


def open_rate_limit_store(url: str) -> PostgresRateLimitStore:
    """The shared rate-limit store a model group names by URL (`ModelGroup(store="postgresql://...")`)."""
    from llmclient.stores.pg_ratelimit import PostgresRateLimitStore

    postgres_store(url, "rate-limit store")  # the scheme checked before anything opens
    return PostgresRateLimitStore.shared(url)

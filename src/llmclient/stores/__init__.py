"""Stores shared by every process and machine: the ledger, budgets and vector index on PostgreSQL.

```
PostgresStore        one database: a connection pool per process, the versioned schema, the clock
PostgresLedger       CostLedger rows for the whole fleet, idempotent per call, spooled when the database is down
SharedBudgets        named budgets with windows, reserved atomically with leases (SharedBudgetAdmission step)
PgVectorIndex        VectorIndex's API on pgvector
PostgresRateLimitStore  routing's rate-limit windows shared by the fleet (ModelGroup(store=...))
```

`Client(ledger="postgresql://...", budget_store="postgresql://...")` uses the first three; see docs/fleet.md.
`stores.urls` is where the client turns URLs into these. Each name is imported on first use (PEP 562), so importing
this package costs nothing: psycopg comes with the first connection, numpy with `PgVectorIndex`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmclient.stores.base import FleetDegradedWarning, StoreUnavailableError
    from llmclient.stores.pg_admission import SharedBudgetAdmission, SharedMargins, charge_to
    from llmclient.stores.pg_budgets import BudgetStatus, SharedBudgets, Window
    from llmclient.stores.pg_index import PgVectorIndex
    from llmclient.stores.pg_ledger import PostgresLedger
    from llmclient.stores.pg_ratelimit import PostgresRateLimitStore
    from llmclient.stores.postgres import PostgresStore

_HOMES = {
    "BudgetStatus": "pg_budgets",
    "FleetDegradedWarning": "base",
    "PgVectorIndex": "pg_index",
    "PostgresLedger": "pg_ledger",
    "PostgresRateLimitStore": "pg_ratelimit",
    "PostgresStore": "postgres",
    "SharedBudgetAdmission": "pg_admission",
    "SharedBudgets": "pg_budgets",
    "SharedMargins": "pg_admission",
    "StoreUnavailableError": "base",
    "Window": "pg_budgets",
    "charge_to": "pg_admission",
}

__all__ = [
    "BudgetStatus",
    "FleetDegradedWarning",
    "PgVectorIndex",
    "PostgresLedger",
    "PostgresRateLimitStore",
    "PostgresStore",
    "SharedBudgetAdmission",
    "SharedBudgets",
    "SharedMargins",
    "StoreUnavailableError",
    "Window",
    "charge_to",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'llmclient.stores' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"llmclient.stores.{home}"), name)
    globals()[name] = value
    return value

"""Stores shared by every process and machine: the ledger, budgets and vector index on PostgreSQL.

```
PostgresStore        one database: a connection pool per process, the versioned schema, the clock
PostgresLedger       CostLedger rows for the whole fleet, idempotent per call, spooled when the database is down
SharedBudgets        named budgets with windows, reserved atomically with leases (SharedBudgetAdmission step)
PgVectorIndex        VectorIndex's API on pgvector
PostgresRateLimitStore  routing's rate-limit windows shared by the fleet (ModelGroup(store=...))
```

`Client(ledger="postgresql://...", budget_store="postgresql://...")` uses the first three; see docs/fleet.md.
psycopg is imported on first use, so importing this package costs nothing without PostgreSQL.
"""

from __future__ import annotations

from llmclient.stores.pg_budgets import (
    BudgetStatus,
    SharedBudgetAdmission,
    SharedBudgets,
    Window,
    charge_to,
    shared_budget_step,
)
from llmclient.stores.pg_index import PgVectorIndex
from llmclient.stores.pg_ledger import PostgresLedger
from llmclient.stores.pg_ratelimit import PostgresRateLimitStore
from llmclient.stores.postgres import FleetDegradedWarning, PostgresStore, StoreUnavailableError

__all__ = [
    "BudgetStatus",
    "FleetDegradedWarning",
    "PgVectorIndex",
    "PostgresLedger",
    "PostgresRateLimitStore",
    "PostgresStore",
    "SharedBudgetAdmission",
    "SharedBudgets",
    "StoreUnavailableError",
    "Window",
    "charge_to",
    "shared_budget_step",
]

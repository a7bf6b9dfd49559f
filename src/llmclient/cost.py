"""Kept so that imports written against llmclient 0.1 keep working: cost is now three modules.

`llmclient.prices` (PriceEntry, PriceTable), `llmclient.ledger` (CostLedger, LedgerRecord, SQLiteLedger) and
`llmclient.budget` (Budget, Reservation); the common names are also exported from `llmclient` itself.
"""

from __future__ import annotations

from llmclient.budget import Budget, Reservation
from llmclient.ledger import CSV_COLUMNS, SQLITE_SCHEMA, CostLedger, LedgerRecord, SQLiteLedger, Summary, open_ledger
from llmclient.prices import MILLION, PriceEntry, PriceTable, UnknownPriceWarning

__all__ = [
    "CSV_COLUMNS",
    "MILLION",
    "SQLITE_SCHEMA",
    "Budget",
    "CostLedger",
    "LedgerRecord",
    "PriceEntry",
    "PriceTable",
    "Reservation",
    "SQLiteLedger",
    "Summary",
    "UnknownPriceWarning",
    "open_ledger",
]

"""The command line's ledger: where it is, and `llmclient cost` / `llmclient db` over SQLite or the fleet's PostgreSQL.

`cost` groups records `--by` model, provider, tag, day, deployment, budget (shared budgets) or call, the same way in
every format (table, csv, json), with ISO 8601 UTC times and unpriced calls counted beside the totals.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from llmclient._sanitize import redact as scrub
from llmclient.accounting.ledger import CostLedger, LedgerRecord, SQLiteLedger, Summary
from llmclient.config import client_options
from llmclient.errors import LLMClientError
from llmclient.stores import urls
from llmclient.types import Usage


def print_json(data: Any, out: TextIO) -> None:
    """`data` as indented JSON on `out` (Decimals and other values as their text)."""
    out.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def ledger_location(spec: str, what: str = "--ledger") -> tuple[str | None, str]:
    """A ledger's (scheme, rest): `("postgresql", url)`, `("sqlite", path)` or `(None, path)`; an unknown or
    malformed scheme is a `ConfigurationError` naming the scheme alone."""
    return urls.checked(spec, ("sqlite", "postgresql"), what)


def redact(url: str) -> str:
    """A database URL without its password, in any form libpq reads it (and without `PGPASSWORD`'s value)."""
    from llmclient.stores.base import secrets_of

    return scrub(url, secrets_of(url))


def default_ledger() -> Path:
    """Where the command keeps its ledger when nothing else is configured."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "llmclient" / "ledger.db"


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc).isoformat(timespec="seconds")


def _summary_fields(s: Summary) -> dict[str, Any]:
    return {
        "calls": s.calls,
        "input_tokens": s.usage.prompt_tokens,
        "output_tokens": s.usage.output_tokens,
        "cost_usd": str(s.cost),
        "unpriced_calls": s.unpriced_calls,
    }


def _call_fields(record: LedgerRecord) -> dict[str, Any]:
    return {
        "time": _iso(record.timestamp),
        "model": f"{record.provider}/{record.model}",
        "kind": record.kind,
        "input_tokens": record.usage.prompt_tokens,
        "output_tokens": record.usage.output_tokens,
        "estimated": record.usage.estimated,
        "cost_usd": None if record.cost is None else str(record.cost.total),
        "latency_s": round(record.latency_s, 4),
        "attempts": record.attempts,
        "request_id": record.request_id,
        "tags": " ".join(record.tags),
        "error": record.error,
    }


async def cmd_cost(args: argparse.Namespace, out: TextIO) -> int:
    spec = args.ledger or client_options(args.config).get("ledger") or ""
    scheme, rest = ledger_location(spec) if spec else (None, "")
    if scheme == "postgresql":
        return _shared_cost(args, spec, out)
    if args.by == "budget":
        raise LLMClientError("--by budget reports shared budgets: pass --ledger postgresql://...")
    path = Path(rest).expanduser() if args.ledger else _configured_ledger(args)
    if not path.exists():
        raise LLMClientError(f"no ledger at {path}; run a command first, or pass --ledger")
    ledger = SQLiteLedger(path, keep=0)
    try:
        rows, total = _report(ledger, args.by)
    finally:
        ledger.close()
    _cost_report(args, str(path), rows, total, out)
    return 0


def _report(ledger: CostLedger, by: str) -> tuple[list[dict[str, Any]], Summary]:
    """The rows of a `cost` report and its total: every call (`--by call`, read a page at a time) or the ledger's
    groups (sums: no record is loaded)."""
    if by == "call":
        rows = [_call_fields(record) for record in ledger]
    else:
        rows = [{by: key, **_summary_fields(summary)} for key, summary in sorted(ledger.summary(by).items())]
    providers = ledger.summary("provider").values()  # one group per call: summed into the total
    total = Summary(
        calls=sum(s.calls for s in providers),
        usage=sum((s.usage for s in providers), Usage()),
        cost=sum((s.cost for s in providers), Decimal(0)),
        unpriced_calls=sum(s.unpriced_calls for s in providers),
    )
    return rows, total


def _shared_cost(args: argparse.Namespace, url: str, out: TextIO) -> int:
    """`cost` on the fleet's PostgreSQL ledger: grouped in the database (only `--by call` loads every row)."""
    from llmclient.stores import PostgresLedger, PostgresStore

    ledger = PostgresLedger(PostgresStore(url, migrate=False), keep=0)
    try:
        rows, total = _report(ledger, args.by)
    finally:
        ledger.store.close()
    _cost_report(args, redact(url), rows, total, out)
    return 0


def _cost_report(
    args: argparse.Namespace, ledger: str, rows: list[dict[str, Any]], total: Summary, out: TextIO
) -> None:
    """The `cost` report in the chosen format: groups (or calls) and the total, the same for every ledger."""
    if args.format == "json":
        report: dict[str, Any] = {"ledger": ledger, "by": args.by, "total_usd": str(total.cost)}
        report["total"] = _summary_fields(total)
        if args.by == "call":
            report["calls"] = rows
        else:
            report["groups"] = {row.pop(args.by): row for row in rows}
        print_json(report, out)
    elif args.format == "csv":
        import csv

        fields = list(rows[0]) if rows else [args.by, *_summary_fields(total)]
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        if args.by != "call":
            writer.writerow({args.by: "total", **_summary_fields(total)})
    else:
        _cost_table(args.by, rows, total, out)


def _cost_table(by: str, rows: list[dict[str, Any]], total: Summary, out: TextIO) -> None:
    def unpriced(count: int) -> str:
        return f" (+{count} unpriced)" if count else ""

    if by == "call":
        out.write(f"{'time':<26} {'model':<32} {'input':>8} {'output':>8} {'cost USD':>12}\n")
        for row in rows:
            cost = "unpriced" if row["cost_usd"] is None else f"{Decimal(row['cost_usd']):.6f}"
            out.write(
                f"{row['time']:<26} {row['model']:<32} {row['input_tokens']:>8} {row['output_tokens']:>8} {cost:>12}\n"
            )
    else:
        out.write(f"{by:<36} {'calls':>6} {'input':>10} {'output':>10} {'cost USD':>14}\n")
        for row in rows:
            out.write(
                f"{row[by]:<36} {row['calls']:>6} {row['input_tokens']:>10} {row['output_tokens']:>10} "
                f"{Decimal(row['cost_usd']):>14.6f}{unpriced(row['unpriced_calls'])}\n"
            )
    out.write(
        f"{'total':<36} {total.calls:>6} {total.usage.prompt_tokens:>10} {total.usage.output_tokens:>10} "
        f"{total.cost:>14.6f}{unpriced(total.unpriced_calls)}\n"
    )


async def cmd_db(args: argparse.Namespace, out: TextIO) -> int:
    """`llmclient db migrate|status|flush --url postgresql://...`: the shared store's schema and spool."""
    from llmclient.stores import PostgresLedger, PostgresStore

    url = args.url or os.environ.get("LLMCLIENT_DATABASE_URL")
    if not url:
        raise LLMClientError("pass --url postgresql://... or set LLMCLIENT_DATABASE_URL")
    urls.checked(url, ("postgresql",), "--url")
    store = PostgresStore(url, migrate=False)
    try:
        if args.action == "migrate":
            out.write(f"{redact(url)}: llmclient schema version {store.migrate()}\n")
        elif args.action == "status":
            out.write(f"{redact(url)}: llmclient schema version {store.version()}\n")
        else:
            out.write(f"uploaded {PostgresLedger(store).flush()} spooled records to {redact(url)}\n")
    finally:
        store.close()
    return 0


def _configured_ledger(args: argparse.Namespace) -> Path:
    spec = client_options(args.config).get("ledger")
    return Path(ledger_location(spec, "ledger")[1]) if spec else default_ledger()

"""Budgets shared by every process and machine: named limits in PostgreSQL, reserved atomically with leases.

A budget has a name ("org", "team:search", "user:42", "tag:batch" …), a limit in USD (NUMERIC: exact), and an
optional window: per day or per month, on the calendar of a stated time zone or rolling. A call reserves its
worst case on every budget that applies to it in one database statement (`llmclient_reserve`: all or none,
nothing sent when any lacks room), then settles to its actual cost in the transaction that writes its ledger row.
A reservation carries a lease: if the process dies before settling, the reservation stops counting when the lease
ends. Spend is kept per window bucket and never reset, so a rollover cannot lose or overwrite a cent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from llmclient.errors import BudgetExceededError, ConfigurationError
from llmclient.stores.base import Settlement, StoreUnavailableError
from llmclient.stores.postgres import PostgresStore
from llmclient.stores.writer import SettleWrite

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class Window:
    """When a budget's spend starts again from zero.

    Attributes:
        period: "day" or "month".
        rolling: False: calendar days or months in `time_zone` (a monthly budget restarts on the 1st at 00:00
            there). True: the last 24 hours or 30 days, counted in whole hours.
        time_zone: An IANA name ("Europe/Berlin"); calendar windows start at midnight there.
    """

    period: Literal["day", "month"]
    rolling: bool = False
    time_zone: str = "UTC"

    @classmethod
    def day(cls, *, rolling: bool = False, time_zone: str = "UTC") -> Window:
        """A daily window."""
        return cls("day", rolling, time_zone)

    @classmethod
    def month(cls, *, rolling: bool = False, time_zone: str = "UTC") -> Window:
        """A monthly window (a rolling month is 30 days)."""
        return cls("month", rolling, time_zone)


@dataclass(frozen=True)
class BudgetStatus:
    """A shared budget as it stands now (in its current window)."""

    name: str
    limit: Decimal
    spent: Decimal
    reserved: Decimal
    calls: int
    window: Window | None

    @property
    def remaining(self) -> Decimal:
        """What is left after the spent and reserved amounts."""
        return self.limit - self.spent - self.reserved


class SharedBudgets:
    """The named budgets in a PostgreSQL database: define them once, and every process's calls respect them.

    Args:
        store: The database, or its URL.
        always: Budgets every call of a client using these is charged to (the client-wide ones: "org",
            "key:ci"); `charge_to` adds more around some calls.
        by_tag: Also charge a call tagged "x" to the budget "tag:x", where one is defined.
        lease: How long a reservation holds unless renewed: a call in progress renews it every third of it, so
            it outlives the call however long that takes, and ends at most `lease` after its process died.
        fail_open: When the database is down at admission, send the call anyway (with a `FleetDegradedWarning`;
            its record is spooled and charged when uploaded) instead of raising `StoreUnavailableError`.
    """

    def __init__(
        self,
        store: PostgresStore | str,
        *,
        always: Sequence[str] = (),
        by_tag: bool = True,
        lease: timedelta = timedelta(minutes=15),
        fail_open: bool = False,
    ) -> None:
        self.store = store if isinstance(store, PostgresStore) else PostgresStore.shared(store)
        self.always = tuple(always)
        self.by_tag = by_tag
        self.lease = lease
        self.fail_open = fail_open

    def define(
        self,
        name: str,
        usd: Decimal | str | int,
        *,
        window: Window | None = None,
        allow_unknown_prices: bool = False,
    ) -> None:
        """Create the budget `name`, or change its limit, window or unknown-price policy (spend is kept)."""
        limit = Decimal(str(usd))
        if limit < 0:
            raise ValueError("a budget cannot be negative")
        period, rolling, zone = ("none", False, "UTC") if window is None else astuple(window)

        if window is not None:  # an unknown zone is a clear error now, not a failed admission later
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigurationError(f"unknown time zone {zone!r} for the budget {name!r}") from exc
        sql = (
            "INSERT INTO llmclient_budgets (name, limit_usd, period, rolling, time_zone, allow_unknown_prices) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET limit_usd = excluded.limit_usd, "
            "period = excluded.period, rolling = excluded.rolling, time_zone = excluded.time_zone, "
            "allow_unknown_prices = excluded.allow_unknown_prices"
        )
        self.store.run(partial(_execute, sql=sql, params=(name, limit, period, rolling, zone, allow_unknown_prices)))

    def delete(self, name: str) -> bool:
        """Remove a budget (its spend history and reservations go with it); False when there was none."""
        rows = self.store.fetch("DELETE FROM llmclient_budgets WHERE name = %s RETURNING name", (name,))
        return bool(rows)

    def status(self, name: str) -> BudgetStatus:
        """Limit, spend and live reservations of `name` in its current window (KeyError when undefined), after
        this process's queued settlements."""
        sql = (
            "SELECT b.limit_usd, b.period, b.rolling, b.time_zone, "
            "llmclient_used(b, coalesce(%s, clock_timestamp())), "
            "(SELECT coalesce(sum(r.amount), 0) FROM llmclient_reservations r WHERE r.budget = b.name "
            " AND r.expires_at > coalesce(%s, clock_timestamp())), "
            "(SELECT coalesce(sum(s.calls), 0) FROM llmclient_budget_spend s WHERE s.budget = b.name) "
            "FROM llmclient_budgets b WHERE b.name = %s"
        )
        at = self.store.now()
        rows = self.store.fetch(sql, (at, at, name))
        if not rows:
            raise KeyError(name)
        limit, period, rolling, zone, used, reserved, calls = rows[0]
        window = None if period == "none" else Window(period, rolling, zone)
        return BudgetStatus(
            name, Decimal(limit), Decimal(used) - Decimal(reserved), Decimal(reserved), int(calls), window
        )

    def names(self) -> list[str]:
        """Every defined budget's name."""
        return [row[0] for row in self.store.fetch("SELECT name FROM llmclient_budgets ORDER BY name")]

    async def areserve(
        self,
        reservation_id: str,
        required: Sequence[str],
        optional: Sequence[str],
        amount: Decimal | None,
        *,
        lease: timedelta,
        what: str = "the call",
    ) -> tuple[str, ...]:
        """Reserve `amount` on every budget named (all or none, one statement); returns the budgets reserved.

        `required` budgets must exist (a typo must not leave calls unlimited); `optional` ones apply when defined
        (the per-tag budgets). Raises `BudgetExceededError` when any lacks room, `ConfigurationError` when a
        required one is undefined, `StoreUnavailableError` when the database cannot be reached in time (then the
        reservation may or may not have been made: release it, `release`).
        """
        params = (reservation_id, list(required), list(optional), amount, lease, self.store.now())
        rows = await self.store.call(partial(_fetch, sql=_RESERVE, params=params), retries=0)
        return _reserved(rows, amount, what)

    def reserve(
        self,
        reservation_id: str,
        required: Sequence[str],
        optional: Sequence[str],
        amount: Decimal | None,
        *,
        lease: timedelta,
        what: str = "the call",
    ) -> tuple[str, ...]:
        """`areserve`, blocking."""
        params = (reservation_id, list(required), list(optional), amount, lease, self.store.now())
        rows = self.store.run(partial(_fetch, sql=_RESERVE, params=params), retries=0)
        return _reserved(rows, amount, what)

    async def renew(self, reservation_ids: Sequence[str], lease: timedelta) -> None:
        """Keep reservations for `lease` more from now (a call that outlives its lease keeps its worst case)."""
        params = (self.store.now(), lease, list(reservation_ids))
        await self.store.call(partial(_execute, sql=_RENEW, params=params))

    def release(self, reservation_id: str) -> None:
        """Give a reservation back unspent (now, blocking; the admission step hands it to the writer instead)."""
        self.store.run(
            partial(_execute, sql="DELETE FROM llmclient_reservations WHERE id = %s", params=(reservation_id,))
        )

    def settle_reservation(self, reservation_id: str | None, budgets: Sequence[str], amount: Decimal | None) -> None:
        """Charge `amount` to `budgets` and drop the reservation, without a ledger row (at the store's clock)."""
        self.settle(Settlement(reservation_id, tuple(budgets), self.store.now()), amount)

    def settle(self, settlement: Settlement, amount: Decimal | None) -> None:
        """Settle without a ledger row (when the ledger lives elsewhere), now and once (blocking)."""
        write = SettleWrite(uuid.uuid4().hex, settlement, amount)
        sql, params = write.statement()
        self.store.run(partial(_execute, sql=sql, params=params))


_RESERVE = "SELECT * FROM llmclient_reserve(%s, %s, %s, %s, %s, %s)"
_RENEW = (
    "UPDATE llmclient_reservations SET expires_at = greatest(expires_at, coalesce(%s::timestamptz, "
    "clock_timestamp()) + %s) WHERE id = ANY(%s)"
)


async def _execute(connection: psycopg.AsyncConnection[Any], sql: str, params: Sequence[Any]) -> None:
    await connection.execute(sql, params)


async def _fetch(connection: psycopg.AsyncConnection[Any], sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    return await (await connection.execute(sql, params)).fetchall()


def _reserved(rows: list[tuple[Any, ...]], amount: Decimal | None, what: str) -> tuple[str, ...]:
    if len(rows) == 1 and rows[0][1] != "reserved":
        name, reason, remaining, limit = rows[0]
        if reason == "released":  # this id was given up on already: nothing is held
            raise StoreUnavailableError(f"the reservation for {what} was released before it was made")
        if reason == "missing":
            raise ConfigurationError(
                f"no shared budget named {name!r}; define it with SharedBudgets.define({name!r}, usd=...)"
            )
        if reason == "unpriced":
            raise BudgetExceededError(
                f"{what} has no known price, so the shared budget {name!r} cannot bound it; set a price with "
                "Client(prices=...) or define the budget with allow_unknown_prices=True"
            )
        raise BudgetExceededError(
            f"{what} may cost up to ${amount:.6f}, more than the ${remaining:.6f} left in the shared budget "
            f"{name!r} (limit ${limit})"
        )
    return tuple(row[0] for row in rows)


def astuple(window: Window) -> tuple[str, bool, str]:
    """A window as the budget table's columns."""
    return window.period, window.rolling, window.time_zone

"""Budgets shared by every process and machine: named limits in PostgreSQL, reserved atomically with leases.

A budget has a name ("org", "team:search", "user:42", "tag:batch" …), a limit in USD (NUMERIC: exact), and an
optional window: per day or per month, on the calendar of a stated time zone or rolling. A call reserves its
worst case on every budget that applies to it in one database statement (`llmclient_reserve`: all or none,
nothing sent when any lacks room), then settles to its actual cost in the transaction that writes its ledger row.
A reservation carries a lease: if the process dies before settling, the reservation stops counting when the lease
ends. Spend is kept per window bucket and never reset, so a rollover cannot lose or overwrite a cent.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from llmclient.accounting.ledger import CostLedger
from llmclient.errors import BudgetExceededError, ConfigurationError
from llmclient.lifecycle.budget_admission import worst_case
from llmclient.lifecycle.call import Call, Outcome
from llmclient.lifecycle.steps import Pricing, Step
from llmclient.stores.pg_ledger import PostgresLedger
from llmclient.stores.postgres import PostgresStore, Settlement, StoreUnavailableError, warn_degraded

if TYPE_CHECKING:
    pass

# Budget names charged by the `charge_to` blocks around a call (per task, like `client.budget`).
_CHARGED: ContextVar[tuple[str, ...]] = ContextVar("llmclient_shared_budgets", default=())


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
        lease: How long a reservation holds if its process dies before settling; make it longer than a call
            can last (the client's timeout).
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
        params = (name, limit, period, rolling, zone, allow_unknown_prices)
        self.store.run(lambda c: c.execute(sql, params))

    def delete(self, name: str) -> bool:
        """Remove a budget (its spend history and reservations go with it); False when there was none."""
        row = self.store.run(
            lambda c: c.execute("DELETE FROM llmclient_budgets WHERE name = %s RETURNING name", (name,)).fetchone()
        )
        return row is not None

    def status(self, name: str) -> BudgetStatus:
        """Limit, spend and live reservations of `name` in its current window (KeyError when undefined)."""
        sql = (
            "SELECT b.limit_usd, b.period, b.rolling, b.time_zone, "
            "llmclient_used(b, coalesce(%s, clock_timestamp())), "
            "(SELECT coalesce(sum(r.amount), 0) FROM llmclient_reservations r WHERE r.budget = b.name "
            " AND r.expires_at > coalesce(%s, clock_timestamp())), "
            "(SELECT coalesce(sum(s.calls), 0) FROM llmclient_budget_spend s WHERE s.budget = b.name) "
            "FROM llmclient_budgets b WHERE b.name = %s"
        )
        at = self.store.now()
        row = self.store.run(lambda c: c.execute(sql, (at, at, name)).fetchone())
        if row is None:
            raise KeyError(name)
        limit, period, rolling, zone, used, reserved, calls = row
        window = None if period == "none" else Window(period, rolling, zone)
        return BudgetStatus(
            name, Decimal(limit), Decimal(used) - Decimal(reserved), Decimal(reserved), int(calls), window
        )

    def names(self) -> list[str]:
        """Every defined budget's name."""
        rows = self.store.run(lambda c: c.execute("SELECT name FROM llmclient_budgets ORDER BY name").fetchall())
        return [row[0] for row in rows]

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
        """Reserve `amount` on every budget named (all or none, one statement); returns the budgets reserved.

        `required` budgets must exist (a typo must not leave calls unlimited); `optional` ones apply when defined
        (the per-tag budgets). Raises `BudgetExceededError` when any lacks room, `ConfigurationError` when a
        required one is undefined, `StoreUnavailableError` when the database cannot be reached.
        """
        sql = "SELECT * FROM llmclient_reserve(%s, %s, %s, %s, %s, %s)"
        params = (reservation_id, list(required), list(optional), amount, lease, self.store.now())
        rows = self.store.run(lambda c: c.execute(sql, params).fetchall())
        if len(rows) == 1 and rows[0][1] != "reserved":
            name, reason, remaining, limit = rows[0]
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

    def release(self, reservation_id: str) -> None:
        """Give a reservation back unspent."""
        self.store.run(lambda c: c.execute("DELETE FROM llmclient_reservations WHERE id = %s", (reservation_id,)))

    def settle_reservation(self, reservation_id: str | None, budgets: Sequence[str], amount: Decimal | None) -> None:
        """Charge `amount` to `budgets` and drop the reservation, without a ledger row (at the store's clock)."""
        self.settle(Settlement(reservation_id, tuple(budgets), self.store.now()), amount)

    def settle(self, settlement: Settlement, amount: Decimal | None) -> None:
        """Settle without a ledger row (when the ledger lives elsewhere)."""
        sql = "SELECT llmclient_settle(%s, %s, %s, %s)"
        params = (settlement.reservation_id, list(settlement.budgets), amount, settlement.at)
        self.store.run(lambda c: c.execute(sql, params))


def astuple(window: Window) -> tuple[str, bool, str]:
    """A window as the budget table's columns."""
    return window.period, window.rolling, window.time_zone


@contextlib.contextmanager
def charge_to(*names: str) -> Iterator[None]:
    """Charge the calls inside the block (this task and the tasks it starts) to these shared budgets as well.

    Blocks nest: an inner `charge_to("user:42")` inside `charge_to("team:search")` charges both.
    """
    token = _CHARGED.set((*_CHARGED.get(), *names))
    try:
        yield
    finally:
        _CHARGED.reset(token)


class SharedBudgetAdmission(Step):
    """The pipeline step for shared budgets: reserve before sending, settle with the ledger row, release on failure.

    Add it before `LedgerRecording` (`Client(budget_store=...)` does): the settlement then rides in the ledger
    row's transaction when the ledger is the same database.

    Args:
        budgets: The shared budgets, with which apply to a call and how failures are handled.
        pricing: The client's pricing step (worst cases and actual costs come from the same prices).
        ledger: The client's ledger.
    """

    def __init__(self, budgets: SharedBudgets, pricing: Pricing, *, ledger: CostLedger | None = None) -> None:
        self.budgets = budgets
        self._pricing = pricing
        self._ledger = ledger
        self._held: weakref.WeakKeyDictionary[Call, Settlement] = weakref.WeakKeyDictionary()

    async def admit(self, call: Call) -> None:
        budgets = self.budgets
        required = (*budgets.always, *_CHARGED.get())
        optional = tuple(f"tag:{tag}" for tag in call.tags) if budgets.by_tag else ()
        if not required and not optional:
            return
        amount = await worst_case(call, self._pricing)
        reservation_id = uuid.uuid4().hex
        try:
            reserved = await asyncio.to_thread(
                self.budgets.reserve,
                reservation_id,
                required,
                optional,
                amount,
                lease=budgets.lease,
                what=str(call.model_id),
            )
        except StoreUnavailableError as exc:
            if not budgets.fail_open:
                raise
            warn_degraded(f"shared budgets unavailable; {call.model_id} sent without admission (fail_open): {exc}")
            self._held[call] = Settlement(None, (*required, *optional))
            return
        if reserved:
            self._held[call] = Settlement(reservation_id, reserved)

    def finish(self, call: Call, outcome: Outcome) -> None:
        settlement = self._held.pop(call, None)
        if settlement is None:
            return
        settlement = replace(settlement, at=self.budgets.store.now())
        ledger = self._ledger
        if isinstance(ledger, PostgresLedger) and ledger.store.url == self.budgets.store.url:
            ledger.settle_with_next_record(settlement)
            return
        try:
            self.budgets.settle(settlement, None if outcome.cost is None else outcome.cost.total)
        except StoreUnavailableError as exc:  # the lease gives the reservation back; the spend is not counted
            warn_degraded(f"could not settle shared budgets {settlement.budgets}: {exc}")

    def release(self, call: Call, error: BaseException | None) -> None:
        settlement = self._held.pop(call, None)
        if settlement is None or settlement.reservation_id is None:
            return
        with contextlib.suppress(StoreUnavailableError):  # the lease returns it
            self.budgets.release(settlement.reservation_id)

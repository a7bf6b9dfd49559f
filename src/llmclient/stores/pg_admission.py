"""Shared budgets as a pipeline step: reserve before sending, keep the reservation alive while the call runs, settle
with the ledger row (or alone), give it back when nothing was billed; and count margins the whole fleet learns.

Nothing here waits on the database after admission: settling and releasing are writes handed to the store's
writer (`stores.writer`), and the lease is renewed on the store loop. A reservation whose fate is unknown (the
database failed or fell silent before answering, or the caller gave up) is released by a write too: if it was
made, it would otherwise hold the budget until its lease ran out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmclient.accounting.ledger import CostLedger
from llmclient.errors import LLMClientError
from llmclient.lifecycle.budget_admission import CountMargins, worst_case
from llmclient.lifecycle.call import Call, Outcome
from llmclient.lifecycle.steps import Pricing, Step
from llmclient.stores._loop import StoreLoop
from llmclient.stores.base import Settlement, StoreUnavailableError
from llmclient.stores.pg_budgets import SharedBudgets
from llmclient.stores.pg_ledger import PostgresLedger
from llmclient.stores.postgres import PostgresStore, warn_degraded
from llmclient.stores.writer import MarginWrite, ReleaseWrite, SettleWrite

if TYPE_CHECKING:
    import psycopg

# Budget names charged by the `charge_to` blocks around a call (per task, like `client.budget`).
_CHARGED: ContextVar[tuple[str, ...]] = ContextVar("llmclient_shared_budgets", default=())


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


class SharedMargins(CountMargins):
    """`CountMargins` kept in the store (`llmclient_margins`): a shortfall any process sees raises the margin of
    that model or deployment for every process, and a new process starts from what the fleet learned.

    Learned margins are read again at most every `refresh_s` seconds, on an admission; a database that is down
    leaves the ones already known (never fewer: a margin only grows).
    """

    refresh_s = 5.0

    def __init__(self, store: PostgresStore, floor: float = 0.25, cap: float = 3.0) -> None:
        super().__init__(floor, cap)
        self.store = store
        self._loaded_at = float("-inf")
        self._loading: concurrent.futures.Future[None] | None = None
        self._guard = threading.Lock()

    async def refresh(self) -> None:
        if time.monotonic() - self._loaded_at < self.refresh_s or self.store.down:
            return
        with self._guard:  # one read in flight, whichever loops the admissions run on
            if self._loading is None or self._loading.done():
                self._loading = StoreLoop.get().submit(self._load())
            loading = self._loading
        with contextlib.suppress(LLMClientError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(loading)), self.store.timeout)

    async def _load(self) -> None:
        try:
            rows = await self.store.call(_margins)
        finally:
            self._loaded_at = time.monotonic()
        with self._lock:
            for key, margin in rows:
                self._learned[key] = max(self._learned.get(key, 0.0), min(self.cap, float(margin)))

    def learn(self, key: str, counted: int, reported: int) -> None:
        before = self._learned.get(key, 0.0)
        super().learn(key, counted, reported)
        after = self._learned.get(key, 0.0)
        if after > before:
            self.store.writer.put(MarginWrite(key, after))


async def _margins(connection: psycopg.AsyncConnection[Any]) -> list[tuple[str, float]]:
    return await (await connection.execute("SELECT key, margin FROM llmclient_margins")).fetchall()


class Renewals:
    """The reservations of calls in progress, their leases renewed together every third of a lease by one task on
    the store loop (one statement for all of them; holding or dropping one wakes no thread)."""

    def __init__(self, budgets: SharedBudgets) -> None:
        self.budgets = budgets
        self._held: set[str] = set()  # the calls in progress: each dropped as its call ends
        self._lock = threading.Lock()
        self._running_in: int | None = None  # the process whose store loop runs the task (a fork starts anew)

    def hold(self, reservation_id: str) -> None:
        with self._lock:
            self._held.add(reservation_id)
            start, self._running_in = self._running_in != os.getpid(), os.getpid()
        if start:
            StoreLoop.get().submit(self._run())

    def drop(self, reservation_id: str) -> None:
        with self._lock:
            self._held.discard(reservation_id)

    async def _run(self) -> None:
        lease = self.budgets.lease
        try:
            while True:
                await asyncio.sleep(lease.total_seconds() / 3)
                with self._lock:
                    held = list(self._held)
                    if not held:  # nothing in progress: the task ends, the next `hold` starts another
                        self._running_in = None
                        return
                with contextlib.suppress(LLMClientError):  # down: the next round may reach it, else the lease ends
                    await self.budgets.renew(held, lease)
        except BaseException:
            with self._lock:
                self._running_in = None
            raise


class SharedBudgetAdmission(Step):
    """The pipeline step for shared budgets: reserve before sending, settle with the ledger row, release otherwise.

    Add it before `LedgerRecording` (`Client(budget_store=...)` does): the settlement then rides in the ledger
    row's statement when the ledger is the same database.

    Args:
        budgets: The shared budgets, with which apply to a call and how failures are handled.
        pricing: The client's pricing step (worst cases and actual costs come from the same prices).
        ledger: The client's ledger.
        margins: The count margins (the client gives its in-process budgets the same); the store's by default.
    """

    def __init__(
        self,
        budgets: SharedBudgets,
        pricing: Pricing,
        *,
        ledger: CostLedger | None = None,
        margins: CountMargins | None = None,
    ) -> None:
        self.budgets = budgets
        self._pricing = pricing
        self._ledger = ledger
        self.margins = margins if margins is not None else SharedMargins(budgets.store)
        self._held: weakref.WeakKeyDictionary[Call, Settlement] = weakref.WeakKeyDictionary()
        self._renewals = Renewals(budgets)

    def _names(self, call: Call) -> tuple[tuple[str, ...], tuple[str, ...]]:
        required = (*self.budgets.always, *_CHARGED.get())
        optional = tuple(f"tag:{tag}" for tag in call.tags) if self.budgets.by_tag else ()
        return required, optional

    def reserves(self, call: Call) -> bool:
        required, optional = self._names(call)
        return bool(required or optional)

    async def admit(self, call: Call) -> None:
        budgets = self.budgets
        required, optional = self._names(call)
        if not required and not optional:
            return
        amount = await worst_case(call, self._pricing, self.margins)
        reservation_id = uuid.uuid4().hex
        try:
            reserved = await budgets.areserve(
                reservation_id, required, optional, amount, lease=budgets.lease, what=str(call.model_id)
            )
        except StoreUnavailableError as exc:
            budgets.store.writer.put(ReleaseWrite(reservation_id, unknown=True))  # made, perhaps: the answer was lost
            if not budgets.fail_open:
                raise
            warn_degraded(f"shared budgets unavailable; {call.model_id} sent without admission (fail_open): {exc}")
            self._held[call] = Settlement(None, (*required, *optional), unknown_cost=amount)
            call.bound_by(amount)
            return
        except BaseException:  # cancelled while reserving: the reservation may exist, or come to
            budgets.store.writer.put(ReleaseWrite(reservation_id, unknown=True))
            raise
        if reserved:
            self._renewals.hold(reservation_id)
            self._held[call] = Settlement(reservation_id, reserved, unknown_cost=amount)
            call.bound_by(amount)

    def _pop(self, call: Call) -> Settlement | None:
        settlement = self._held.pop(call, None)
        if settlement is not None and settlement.reservation_id is not None:
            self._renewals.drop(settlement.reservation_id)
        return settlement

    def finish(self, call: Call, outcome: Outcome) -> None:
        held = self._pop(call)
        if held is None:
            return
        store = self.budgets.store
        settlement = replace(held, at=store.now())
        ledger = self._ledger
        if isinstance(ledger, PostgresLedger) and ledger.store.url == store.url:
            outcome.settlement = settlement  # the recording step writes it in the call's ledger row
            return
        amount: Decimal | None = outcome.cost.total if outcome.cost is not None else settlement.unknown_cost
        store.writer.put(SettleWrite(uuid.uuid4().hex, settlement, amount))

    def release(self, call: Call, error: BaseException | None) -> None:
        held = self._pop(call)
        if held is not None and held.reservation_id is not None:
            self.budgets.store.writer.put(ReleaseWrite(held.reservation_id))

    async def aclose(self) -> None:
        await self.budgets.store.drain()

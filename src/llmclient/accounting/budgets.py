"""Budgets: spending limits in USD that calls reserve against before they are sent and settle afterwards.

A reservation is the budget's own: every change to `spent` and `reserved` happens under this module's lock, so
nested budgets reserve all-or-nothing and concurrent callers never see a half-applied reservation. A call whose
actual cost is above its reservation (the provider billed more than the worst case admitted) still settles to
what it cost: the excess is added to the budget's `overshoot`, warned once per budget (`BudgetOvershootWarning`),
and, being spent, leaves less room for every later admission.

```python
from decimal import Decimal
from llmclient import Budget

budget = Budget("0.10")
reservation = Budget.reserve_all([budget], Decimal("0.04"), "fake/paid")
assert budget.remaining == Decimal("0.06")
reservation.release()
assert (budget.remaining, budget.calls) == (Decimal("0.10"), 0)
```
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType

from llmclient.errors import BudgetExceededError
from llmclient.types import Cost

# One lock for every budget, so a reservation across nested budgets is all-or-nothing.
_LOCK = threading.Lock()

# Budgets opened with `client.budget(...)` in this task and its parents, each tagged with its owner's id.
_OPEN: ContextVar[tuple[tuple[int, Budget], ...]] = ContextVar("llmclient_budgets", default=())


class BudgetOvershootWarning(UserWarning):
    """A call cost more than the worst case its budget reserved for it (warned once per budget)."""


class Budget:
    """A spending limit in USD. Calls reserve their worst case before they are sent and settle to the actual cost.

    Reservation is atomic across threads and tasks: with room for N calls, concurrent callers admit at most N.

    Args:
        usd: The limit.
        allow_unknown_prices: Admit calls whose model has no known price (they reserve and spend nothing).
        name: How errors name this budget.
    """

    def __init__(self, usd: Decimal | str | int, *, allow_unknown_prices: bool = False, name: str = "budget") -> None:
        self.limit = Decimal(str(usd))
        if self.limit < 0:
            raise ValueError("a budget cannot be negative")
        self.allow_unknown_prices = allow_unknown_prices
        self.name = name
        self.spent = Decimal(0)
        self.reserved = Decimal(0)
        self.calls = 0
        self.overshoot = Decimal(0)
        """How much settled calls cost beyond what they reserved (part of `spent`)."""
        self._warned = False

    def __repr__(self) -> str:
        return f"Budget({self.name}: spent {self.spent} + reserved {self.reserved} of {self.limit} USD)"

    @property
    def remaining(self) -> Decimal:
        """What is left after the spent and reserved amounts."""
        return self.limit - self.spent - self.reserved

    @classmethod
    def reserve_all(cls, budgets: Sequence[Budget], amount: Decimal | None, what: str) -> Reservation:
        """Reserve `amount` on every budget or on none; raise `BudgetExceededError` if any lacks room."""
        with _LOCK:
            for budget in budgets:
                if amount is None and not budget.allow_unknown_prices:
                    raise BudgetExceededError(
                        f"{what} has no known price, so {budget.name} cannot bound it; set a price with "
                        "Client(prices=...) or pass allow_unknown_prices=True"
                    )
                if amount is not None and amount > budget.remaining:
                    raise BudgetExceededError(
                        f"{what} may cost up to ${amount:.6f}, more than the ${budget.remaining:.6f} left in "
                        f"{budget.name} (limit ${budget.limit})"
                    )
            for budget in budgets:
                budget.reserved += amount or Decimal(0)
        return Reservation(tuple(budgets), amount or Decimal(0))


@dataclass
class Reservation:
    """Money set aside for one call on one or more budgets, released when the call settles."""

    budgets: tuple[Budget, ...]
    amount: Decimal
    settled: bool = False

    def settle(self, cost: Cost | None) -> None:
        """Replace the reservation with the actual cost (an unknown cost counts as the reservation); a cost above
        the reservation is booked in full and its excess recorded as the budget's `overshoot`."""
        actual = self.amount if cost is None else cost.total
        excess = actual - self.amount
        first_overshoots: list[Budget] = []
        with _LOCK:
            if self.settled:
                return
            self.settled = True
            for budget in self.budgets:
                budget.reserved -= self.amount
                budget.spent += actual
                budget.calls += 1
                if excess > 0:
                    budget.overshoot += excess
                    if not budget._warned:
                        budget._warned = True
                        first_overshoots.append(budget)
        for budget in first_overshoots:
            warnings.warn(
                f"a call cost ${actual:.6f}, ${excess:.6f} more than the worst case {budget.name} reserved for it "
                f"(the provider billed more than counted); {budget!r}. Later calls are admitted against what was "
                "spent; warned once per budget",
                BudgetOvershootWarning,
                stacklevel=2,
            )

    def release(self) -> None:
        """Give the reservation back unspent (the call failed before anything was billed)."""
        with _LOCK:
            if self.settled:
                return
            self.settled = True
            for budget in self.budgets:
                budget.reserved -= self.amount


class BudgetScope:
    """`client.budget(...)`: enter it with `async with` (or `with`) to apply the budget inside the block.

    Args:
        owner: The id of the client whose calls the budget applies to.
        budget: The budget.
    """

    def __init__(self, owner: int, budget: Budget) -> None:
        self._owner = owner
        self._budget = budget
        self._tokens: list[Token[tuple[tuple[int, Budget], ...]]] = []

    def __enter__(self) -> Budget:
        self._tokens.append(_OPEN.set((*_OPEN.get(), (self._owner, self._budget))))
        return self._budget

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        _OPEN.reset(self._tokens.pop())

    async def __aenter__(self) -> Budget:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)


def open_budgets(owner: int) -> list[Budget]:
    """The budgets opened with `BudgetScope`s of `owner` in this task and its parents, innermost last."""
    return [budget for opened_by, budget in _OPEN.get() if opened_by == owner]

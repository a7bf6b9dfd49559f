"""Budget admission as a pipeline step: reserve the worst case before sending, settle to the actual cost after.

The worst case is the counted prompt at the input price plus the output the call may produce at the output price:
its `max_tokens`, else the cap its driver sends by default (`Capabilities.default_max_tokens`), else the model's
maximum output from the catalog, else the driver's ceiling (`Capabilities.max_output_tokens`). A call that does
not fit raises `BudgetExceededError` with nothing sent. When the prompt count is an estimate (a tokenizer that is
not the model's own), the count is raised by a margin first (`CountMargins`: 25%, or the largest shortfall seen in
that model's (or deployment's) reported usage, whichever is more; a shared store shares what it learns across
the fleet). A stream whose running cost outgrows its reservation is stopped (`check_stream`), whichever budget
made it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from decimal import Decimal

from llmclient.accounting.budgets import Budget
from llmclient.errors import BudgetExceededError, OutputCapRequiredError
from llmclient.lifecycle.call import Call, Outcome
from llmclient.lifecycle.steps import Pricing, Step


class CountMargins:
    """How far an estimated prompt count may fall short of the provider's billed input, per model.

    The margin is `floor` (25%) until a model's reported usage shows a larger shortfall; then it is that shortfall
    plus 10%, capped at `cap` (a provider that reports absurd usage must not shut a budget for good: what one
    reservation misses is recorded as overshoot instead).

    Args:
        floor: The margin before anything is learned, as a fraction of the count.
        cap: The largest margin learned.
    """

    def __init__(self, floor: float = 0.25, cap: float = 3.0) -> None:
        self.floor = floor
        self.cap = cap
        self._learned: dict[str, float] = {}  # per model (or deployment and model): one float each, never per call
        self._lock = threading.Lock()

    def margin(self, key: str) -> float:
        """The margin for `key` (a model id, or a deployment and its model: `margin_key`) now."""
        return max(self.floor, self._learned.get(key, 0.0))

    def reserved_tokens(self, key: str, counted: int) -> int:
        """The prompt tokens to reserve for an estimated count of `counted`."""
        return math.ceil(counted * (1 + self.margin(key)))

    def learn(self, key: str, counted: int, reported: int) -> None:
        """Take in one call's estimate and the provider's reported prompt tokens."""
        if counted <= 0 or reported <= counted:
            return
        shortfall = min(self.cap, (reported / counted - 1) * 1.1)
        with self._lock:
            self._learned[key] = max(self._learned.get(key, 0.0), shortfall)

    async def refresh(self) -> None:
        """Take in what other processes learned (margins kept in a shared store); in-process margins have none."""


def margin_key(call: Call) -> str:
    """Whose margin a call's count takes: its model, and the deployment when routed (two servers of one model may
    tokenize alike and bill differently)."""
    return str(call.model_id) if call.deployment is None else f"{call.deployment}:{call.model_id}"


class BudgetAdmission(Step):
    """Reserve on every open budget (all-or-nothing), then settle or release.

    Args:
        budgets: The budgets that apply to a call now (the client's own plus those opened around it).
        pricing: Where prices come from (the same step that prices the outcome).
        margins: The margins for estimated prompt counts, learned per model.
    """

    def __init__(
        self, budgets: Callable[[], list[Budget]], pricing: Pricing, margins: CountMargins | None = None
    ) -> None:
        self._budgets = budgets
        self._pricing = pricing
        self.margins = margins or CountMargins()

    def reserves(self, call: Call) -> bool:
        return bool(self._budgets())

    async def admit(self, call: Call) -> None:
        budgets = self._budgets()
        if not budgets:
            return
        amount = await worst_case(call, self._pricing, self.margins)
        call.reservation = Budget.reserve_all(budgets, amount, str(call.model_id))
        call.bound_by(amount)

    def finish(self, call: Call, outcome: Outcome) -> None:
        counted, usage = call.counted_input_tokens, outcome.usage
        if counted is not None and not call.counted_exact and not usage.estimated and call.request is not None:
            self.margins.learn(margin_key(call), counted, usage.prompt_tokens)
        if call.reservation is not None:
            call.reservation.settle(outcome.cost)

    def release(self, call: Call, error: BaseException | None) -> None:
        if call.reservation is not None:
            call.reservation.release()


async def worst_case(call: Call, pricing: Pricing, margins: CountMargins | None = None) -> Decimal | None:
    """The most a call may cost (None when its model has no known price); sets `call.price_entry`.

    Shared by every budget step: the in-process `BudgetAdmission` and the PostgreSQL one in `llmclient.stores`.
    An estimated prompt count is raised by the model's margin first (`margins`, when given).
    """
    entry = call.price_entry = pricing.entry(call)
    if margins is not None:
        await margins.refresh()
    if call.request is None:  # an embedding job: input only
        amount = None if entry is None else entry.input * call.worst_case_input_tokens
    else:
        counted = await call.count_prompt()
        if margins is not None and not call.counted_exact:
            counted = margins.reserved_tokens(margin_key(call), counted)
        request = call.request
        amount = (
            entry.worst_case(counted, output_bound(call), service_tier=request.service_tier, choices=request.n or 1)
            if entry
            else None
        )
        if entry is not None and amount is None:
            raise OutputCapRequiredError(
                f"{call.model_id} has no known maximum output, so a budget cannot bound this call; pass max_tokens=",
                provider=call.provider,
                model=call.model,
            )
    call.price_entry = entry
    return amount


def output_bound(call: Call) -> int | None:
    """The most output a call may produce, as far as the call and its driver say: its `max_tokens`, else the
    driver's default cap, else (when the catalog has no maximum for the model) the driver's ceiling."""
    capabilities = call.driver.capabilities
    entry = call.price_entry
    if call.request is not None and call.request.max_tokens is not None:
        return call.request.max_tokens
    if capabilities.default_max_tokens is not None:
        return capabilities.default_max_tokens
    return None if entry is not None and entry.max_output_tokens else capabilities.max_output_tokens


def watches_stream(call: Call) -> bool:
    """Whether a stream's output must be counted as it arrives to keep it within its reservation (in-process or
    shared)."""
    return call.reserved_usd is not None and call.price_entry is not None


def check_stream(call: Call, output_tokens: int) -> None:
    """Stop a stream whose running cost has outgrown the least any budget reserved for it (the documented policy)."""
    entry, reserved = call.price_entry, call.reserved_usd
    if entry is None or reserved is None:
        return
    so_far = entry.input * (call.counted_input_tokens or 0) + entry.output * output_tokens
    if so_far > reserved:
        raise BudgetExceededError(
            f"the stream from {call.model_id} passed its reserved ${reserved:.6f}; stopped",
            provider=call.provider,
            model=call.model,
        )

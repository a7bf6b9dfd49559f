"""Budget admission as a pipeline step: reserve the worst case before sending, settle to the actual cost after.

The worst case is the counted prompt at the input price plus `max_tokens` (else the model's maximum output) at the
output price; a call that does not fit raises `BudgetExceededError` with nothing sent. A stream whose running cost
outgrows its reservation is stopped (`check_stream`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from llmclient.budget import Budget
from llmclient.errors import BudgetExceededError
from llmclient.pipeline.call import Call, Outcome
from llmclient.pipeline.steps import Pricing, Step


class BudgetAdmission(Step):
    """Reserve on every open budget (all-or-nothing), then settle or release.

    Args:
        budgets: The budgets that apply to a call now (the client's own plus those opened around it).
        pricing: Where prices come from (the same step that prices the outcome).
    """

    def __init__(self, budgets: Callable[[], list[Budget]], pricing: Pricing) -> None:
        self._budgets = budgets
        self._pricing = pricing

    async def admit(self, call: Call) -> None:
        budgets = self._budgets()
        if not budgets:
            return
        amount = await worst_case(call, self._pricing)
        call.reservation = Budget.reserve_all(budgets, amount, str(call.model_id))

    def finish(self, call: Call, outcome: Outcome) -> None:
        if call.reservation is not None:
            call.reservation.settle(outcome.cost)

    def release(self, call: Call, error: BaseException | None) -> None:
        if call.reservation is not None:
            call.reservation.release()


async def worst_case(call: Call, pricing: Pricing) -> Decimal | None:
    """The most a call may cost (None when its model has no known price); sets `call.price_entry`.

    Shared by every budget step: the in-process `BudgetAdmission` and the PostgreSQL one in `llmclient.stores`.
    """
    entry = pricing.entry(call)
    if call.request is None:  # an embedding job: input only
        amount = None if entry is None else entry.input * call.worst_case_input_tokens
    else:
        counted = await call.count_prompt()
        amount = entry.worst_case(counted, call.request.max_tokens) if entry else None
        if entry is not None and amount is None:
            raise BudgetExceededError(
                f"{call.model_id} has no known maximum output; pass max_tokens= so the budget can bound the call",
                provider=call.provider,
                model=call.model,
            )
    call.price_entry = entry
    return amount


def watches_stream(call: Call) -> bool:
    """Whether a stream's output must be counted as it arrives to keep it within its reservation."""
    return call.reservation is not None and call.price_entry is not None


def check_stream(call: Call, output_tokens: int) -> None:
    """Stop a stream whose running cost has outgrown its reservation (the documented policy)."""
    entry, reservation = call.price_entry, call.reservation
    if entry is None or reservation is None:
        return
    so_far = entry.input * (call.counted_input_tokens or 0) + entry.output * output_tokens
    if not reservation.fits(so_far):
        raise BudgetExceededError(
            f"the stream from {call.model_id} passed its reserved ${reservation.amount:.6f}; stopped",
            provider=call.provider,
            model=call.model,
        )

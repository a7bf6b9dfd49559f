"""One logical call as the pipeline's steps see it, and what it ended with."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from llmclient import tokens
from llmclient.types import ChatRequest, ChatResponse, TokenCount, Usage

if TYPE_CHECKING:
    from llmclient.accounting.budgets import Reservation
    from llmclient.accounting.ledger import LedgerRecord
    from llmclient.accounting.prices import PriceEntry
    from llmclient.drivers import Driver
    from llmclient.lifecycle.retry import RetryPolicy
    from llmclient.model_ids import ModelId
    from llmclient.observability.observers import Hooks
    from llmclient.routing.router import Route
    from llmclient.types import Cost

CallKind = Literal["chat", "stream", "embed"]


@dataclass(eq=False)
class Call:
    """The state of one logical call, from admission to its single ledger record.

    Steps read what they need and write what they own: admission sets `reservation` and `price_entry`, sending
    counts `attempts`, and the record is written once (`recorded`).
    """

    kind: CallKind
    model_id: ModelId
    driver: Driver
    policy: RetryPolicy
    tags: tuple[str, ...] = ()
    request: ChatRequest | None = None
    applied: dict[str, Any] = field(default_factory=dict)
    """The sampling parameters sent, by name."""
    dropped: list[str] = field(default_factory=list)
    """The parameters the provider does not accept, dropped with a warning."""
    timeout: float | None = None
    """The call's own deadline in seconds (`timeout=`); None: the client's."""
    worst_case_input_tokens: int = 0
    """For jobs without a `request` (embeddings): the tokens the budget reserves for."""
    attempts: int = 0
    billed_unknown: bool = False
    """An attempt may have been billed though nothing came back (it timed out after its request left): the call is
    recorded with an unknown cost however it ends, and its reservation settled, not released."""
    counted_input_tokens: int | None = None
    counted_exact: bool = False
    """Whether `counted_input_tokens` is the model's own count (else an estimate: budgets add a margin)."""
    reservation: Reservation | None = None
    reserved_usd: Decimal | None = None
    """The least any budget (in-process or shared) reserved for this call: a stream is stopped past it."""
    price_entry: PriceEntry | None = None
    started: float = field(default_factory=time.perf_counter)
    recorded: bool = False
    route: Route | None = None
    """For a model group: the deployments this call may go to (`routing.router`)."""
    deployment: str | None = None
    """The deployment the call is bound to (a routed call's next attempt goes there)."""
    price_override: PriceEntry | None = None
    """The deployment's own price, over the price table's."""
    observers: Hooks | None = None
    """Who hears this call's events: the pipeline's observers once it is admitted, none after its end."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Per-observer state (a tracer keeps its span here)."""

    @property
    def provider(self) -> str:
        """The provider name of the model id (the user's own for a second server: `"gpu-box"`)."""
        return self.model_id.provider

    @property
    def model(self) -> str:
        """The model name the provider knows."""
        return self.model_id.model

    def attempt_failed(self, error: BaseException) -> None:
        """Note an attempt's failure: a timeout after the request left may have been billed (`billed_unknown`)."""
        from llmclient.errors import APITimeoutError

        if isinstance(error, APITimeoutError) and error.request_sent is not False:
            self.billed_unknown = True

    def bound_by(self, amount: Decimal | None) -> None:
        """A budget reserved `amount` for this call (None: unpriced, nothing to bound a stream by)."""
        if amount is not None and (self.reserved_usd is None or amount < self.reserved_usd):
            self.reserved_usd = amount

    def retrying(self, retry: int, wait: float, error: BaseException) -> None:
        """Tell the observers that retry number `retry` follows in `wait` seconds because of `error`."""
        if self.observers is not None:
            from llmclient.observability.observers import notify

            notify(self.observers.on_retry, self, retry, wait, error)

    async def count_prompt(self) -> int:
        """The prompt's tokens with the driver's tokenizer, counted once and kept."""
        if self.counted_input_tokens is None:
            if self.request is None:
                return self.worst_case_input_tokens
            request = self.request
            counted = await self.driver.count_tokens(self.model, request.messages, request.tools or [])
            self.counted_input_tokens, self.counted_exact = counted.tokens, counted.exact
        return self.counted_input_tokens

    async def prompt_tokens(self) -> int:
        """The prompt's tokens for a record that has no reported usage: counted now if it was not before, else (when
        counting fails or is cancelled again) a tokenizer-free estimate."""
        try:
            return await self.count_prompt()
        except BaseException:  # the call is already failing; its own error is what the caller sees
            text = "" if self.request is None else "".join(message.text for message in self.request.messages)
            return tokens.estimate_tokens(text)

    async def count_text(self, text: str) -> TokenCount:
        """Tokens of plain text on this call's model (the driver's tokenizer, else a flagged estimate)."""
        return await self.driver.count_text(self.model, text)

    async def estimate_output(self, text: str) -> int:
        """Output tokens of text already generated; a tokenizer-free estimate if counting is cancelled again."""
        try:
            return (await self.count_text(text)).tokens
        except BaseException:  # cancelled while counting: the estimate needs no tokenizer
            return tokens.estimate_tokens(text)


@dataclass
class Outcome:
    """How a call ended, as the finishing steps (price, settle, record) see it.

    `cost` is filled in by the pricing step; `error` names how a failed or cut call ended (`"closed"`,
    `"cancelled"` or the error's class) and is None on success.
    """

    usage: Usage
    request_id: str | None = None
    served_model: str | None = None
    service_tier: str | None = None
    """The processing tier the provider says served the call; priced at its own rates where it has them."""
    error: str | None = None
    cost: Cost | None = None
    priced: bool = False
    response: ChatResponse | None = None
    """The reply of a chat or stream call that succeeded."""
    record: LedgerRecord | None = None
    """The ledger record written for the call (set by the recording step)."""
    dimensions: int | None = None
    """For an embedding job: the length of its vectors (traces report it)."""
    settlement: object | None = None
    """A shared budget's settlement that rides in the call's ledger row (set by the shared-budget step when the
    ledger is in the budgets' own database; the recording step hands both to the ledger, `add_settled`)."""


def ended_by(error: BaseException) -> str:
    """How a call ended, for the ledger: closed by the caller, cancelled, or the error's class."""
    if isinstance(error, GeneratorExit):
        return "closed"
    import asyncio

    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return type(error).__name__

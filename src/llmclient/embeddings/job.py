"""One `Client.embed` call as a job: cache lookups, limits, batches sent concurrently, one ledger record.

Repeated texts (within the call, or found in the cache) are neither sent nor billed. The rest are checked against
the provider's limits, split into batches, sent `concurrency` at a time, and put back in input order. The job is
one call of the lifecycle (`lifecycle.flow.Lifecycle`), admitted only when something must be sent (budgets reserve
its input cost first): each batch is sent under the call's retry policy and deadline, and every billed request adds
to its single record, even when a later batch fails. A batch whose answer carries no usage is counted here and
flagged as an estimate.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from llmclient.embeddings import batches as batching
from llmclient.embeddings.cache import EmbeddingCache, cache_keys
from llmclient.embeddings.texts import EmbedJob, ReceivedVectors
from llmclient.errors import InvalidRequestError, ResponseFormatError, UnsupportedCapabilityError
from llmclient.lifecycle import Call, Outcome, Pipeline, Pricing
from llmclient.lifecycle.flow import Lifecycle
from llmclient.types import Cost, EmbedResponse, Usage


@dataclass(frozen=True)
class EmbedOptions:
    """What the caller asked of one `embed` call (see `Client.embed` for each)."""

    dimensions: int | None = None
    batch_size: int | None = None
    truncate: bool = False
    concurrency: int = 4
    progress: bool | None = None

    @property
    def extra(self) -> dict[str, Any]:
        """The driver's keyword arguments: `dimensions` only when given, so a driver written before it existed still
        embeds."""
        return {} if self.dimensions is None else {"dimensions": self.dimensions}

    def check(self, call: Call) -> None:
        """Refuse bad options and options the driver lacks, before anything is sent."""
        for option, value in (
            ("dimensions", self.dimensions),
            ("batch_size", self.batch_size),
            ("concurrency", self.concurrency),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidRequestError(
                    f"{option} must be a positive int, got {value!r}", provider=call.provider, model=call.model
                )
        capabilities = call.driver.capabilities
        if not capabilities.embed:
            raise UnsupportedCapabilityError(
                f"{call.provider} has no embeddings API; use one that does (e.g. openai/text-embedding-3-small)",
                provider=call.provider,
                model=call.model,
            )
        if self.dimensions is not None and not capabilities.embed_dimensions:
            from llmclient.errors import UnsupportedParameterError

            raise UnsupportedParameterError(
                f"the {call.provider} driver does not take dimensions= for embeddings",
                provider=call.provider,
                model=call.model,
            )


@dataclass
class Plan:
    """How a job's pending texts go out: their token counts (when anything needs them) and the batches."""

    job: EmbedJob
    counted: list[int]
    batches: list[range]


async def plan_job(
    call: Call, job: EmbedJob, options: EmbedOptions, pipeline: Pipeline, pricing: Pricing, cache: EmbeddingCache | None
) -> Plan:
    """Take what the cache holds, check the rest against the provider's limits, and split it into batches."""
    driver, name, limits = call.driver, call.model, call.driver.embedding_limits
    entry = pricing.entry(call)
    known = [n for n in (limits.max_input_tokens, entry.max_input_tokens if entry else None) if n]
    max_input_tokens = min(known) if known else None
    job.lookup(cache, truncated_to=max_input_tokens if options.truncate else None)
    # Counted when a budget (in-process or shared: `pipeline.reserves`) must reserve the input, or for limits.
    needs_counts = bool(job.pending) and (
        bool(max_input_tokens or limits.max_tokens_per_request) or pipeline.reserves(call)
    )
    counted = await batching.fit_to_limits(
        job,
        (lambda text: driver.count_text(name, text)) if needs_counts else None,
        limits=limits,
        max_input_tokens=max_input_tokens,
        truncate=options.truncate,
        provider=call.provider,
        model=name,
    )
    call.worst_case_input_tokens = sum(counted)
    size = min(options.batch_size or limits.max_inputs_per_request, limits.max_inputs_per_request)
    if counted:
        return Plan(job, counted, batching.plan_batches(counted, size, limits.max_tokens_per_request))
    pending = len(job.pending)  # by size alone: no need to walk the texts
    return Plan(job, counted, [range(start, min(start + size, pending)) for start in range(0, pending, size)])


class Sender:
    """Sends a job's batches for its lifecycle: each under the call's retry policy and deadline, its vectors placed
    in the result as they arrive, its usage (counted and flagged where the provider sent none) billed to the
    call."""

    def __init__(self, life: Lifecycle, plan: Plan, options: EmbedOptions) -> None:
        self.life, self.plan = life, plan
        self.dimensions = options.dimensions
        self.extra = options.extra
        self.served_model = ""

    def bill(self, usage: Usage) -> None:
        """Add an answered request's usage to what the call is billed, kept even if a later batch fails."""
        billed = self.life.billed
        self.life.billed = usage if billed is None else billed + usage

    async def tokens(self, batch: range) -> int:
        """The input tokens of a batch: as counted for the plan, else counted now."""
        if self.plan.counted:
            return sum(self.plan.counted[batch.start : batch.stop])
        call = self.life.call
        return sum([(await call.count_text(text)).tokens for text in self.plan.job.sent[batch.start : batch.stop]])

    async def send(self, batch: range) -> None:
        """Send one batch and take in its answer."""
        call, job = self.life.call, self.plan.job
        texts = job.sent[batch.start : batch.stop]
        try:
            result = await self.life.send(lambda: call.driver.embed(call.model, texts, **self.extra))
        except ResponseFormatError as exc:
            if exc.status is not None and exc.status < 300:  # answered, so billed, though unusable
                self.bill(Usage(input_tokens=await self.tokens(batch), estimated=True))
            raise
        self.bill(await self.life.completed(result.usage, lambda: self.tokens(batch)))
        rows, width = result.vectors.shape
        expected = self.dimensions or job.width or width
        if rows != len(texts) or width != expected:
            raise ResponseFormatError(
                f"{call.provider} returned vectors of shape {result.vectors.shape} for {len(texts)} inputs; "
                f"expected ({len(texts)}, {expected})",
                provider=call.provider,
                model=call.model,
                status=200,
            )
        self.served_model = self.served_model or result.model
        job.fill(batch, result.vectors)

    def response(self, cost: Cost | None) -> EmbedResponse:
        """The job's answer: one row per input, in order, with what it was billed and cost."""
        job, call = self.plan.job, self.life.call
        return EmbedResponse(
            vectors=job.assemble(job.width or self.dimensions or 0),
            usage=self.life.billed or Usage(),
            cost=cost,
            model=self.served_model or call.model,
            provider=call.provider,
            cached=job.unsent,
        )


async def run_embed_job(
    call: Call,
    texts: list[str],
    options: EmbedOptions,
    *,
    pipeline: Pipeline,
    pricing: Pricing,
    cache: EmbeddingCache | None,
    deadline_s: float | None,
) -> EmbedResponse:
    """Embed `texts` for `call` (kind "embed"); see the module docstring for what happens on the way."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequestError(
                f"embed() inputs must be str; item {index} is {type(text).__name__}",
                provider=call.provider,
                model=call.model,
            )
    options.check(call)
    if not texts:  # drivers answer [] with a (0, d) array and no I/O: nothing to bill or record
        empty = await call.driver.embed(call.model, texts, **options.extra)
        empty.cost = Cost()
        return empty
    job = EmbedJob(texts, functools.partial(cache_keys, call.provider, call.model, options.dimensions))
    plan = await plan_job(call, job, options, pipeline, pricing, cache)
    sender = Sender(Lifecycle(call, pipeline, deadline_s), plan, options)
    if not job.pending:  # the cache held every text: nothing sent, nothing to admit or record
        return sender.response(Cost())
    bar = batching.progress_bar(options.progress, len(job.pending), f"embedding with {call.model_id}")
    async with sender.life as life:
        try:
            await batching.run_batches(
                plan.batches,
                sender.send,
                concurrency=options.concurrency,
                on_done=None if bar is None else lambda batch, _: bar.update(len(batch)),
            )
        finally:  # what arrived is cached even when a later batch failed: never paid twice
            if bar is not None:
                bar.close()
            if cache is not None and job.received:
                cache.put_many(ReceivedVectors(job))
        call.counted_input_tokens = sum(plan.counted) if plan.counted else None
        outcome = life.finish(Outcome(life.billed or Usage(), dimensions=job.width or options.dimensions))
    return sender.response(outcome.cost)

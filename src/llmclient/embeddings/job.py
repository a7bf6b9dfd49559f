"""One `Client.embed` call as a job: cache lookups, limits, batches sent concurrently, one ledger record.

Repeated texts (within the call, or found in the cache) are neither sent nor billed. The rest are checked against
the provider's limits, split into batches, sent `concurrency` at a time, and put back in input order. The job is
one call of the lifecycle (`lifecycle.flow.Lifecycle`): admitted once something must be sent (budgets reserve its
input cost first), each batch sent under the call's retry policy and deadline, and every billed request added to
its single record, even when a later batch fails. A batch whose answer carries no usage is counted here and
flagged as an estimate.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from llmclient.embeddings import batches as batching
from llmclient.embeddings.cache import EmbeddingCache, cache_keys
from llmclient.embeddings.texts import Batch, EmbedJob
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
    """Check the texts against the provider's limits and split them into batches.

    When a budget must reserve the input, or a token limit applies, the texts are looked up in the cache first and
    only the rest counted; otherwise batches are cut by size alone and each is looked up just before it is sent.
    """
    driver, name, limits = call.driver, call.model, call.driver.embedding_limits
    entry = pricing.entry(call)
    known = [n for n in (limits.max_input_tokens, entry.max_input_tokens if entry else None) if n]
    max_input_tokens = min(known) if known else None
    size = min(options.batch_size or limits.max_inputs_per_request, limits.max_inputs_per_request)
    # Counted when a budget (in-process or shared: `pipeline.reserves`) must reserve the input, or for limits.
    needs_counts = bool(max_input_tokens or limits.max_tokens_per_request) or pipeline.reserves(call)
    if needs_counts:
        job.lookup(cache, truncated_to=max_input_tokens if options.truncate else None)
    counted = await batching.fit_to_limits(
        job,
        (lambda text: driver.count_text(name, text)) if needs_counts and job.pending else None,
        limits=limits,
        max_input_tokens=max_input_tokens,
        truncate=options.truncate,
        provider=call.provider,
        model=name,
    )
    call.worst_case_input_tokens = sum(counted)
    if counted:
        return Plan(job, counted, batching.plan_batches(counted, size, limits.max_tokens_per_request))
    pending = len(job.pending)
    return Plan(job, counted, [range(start, min(start + size, pending)) for start in range(0, pending, size)])


class Sender:
    """Sends a job's batches for its lifecycle: each under the call's retry policy and deadline, its vectors placed
    and cached as they arrive, its usage (counted and flagged where the provider sent none) billed to the call."""

    def __init__(self, life: Lifecycle, plan: Plan, options: EmbedOptions, cache: EmbeddingCache | None) -> None:
        self.life, self.plan, self.cache = life, plan, cache
        self.dimensions = options.dimensions
        self.extra = options.extra
        self.served_model = ""
        self.batches: dict[range, Batch] = {}

    def batch(self, positions: range) -> Batch:
        """The batch for `positions`, looked up in the cache once."""
        batch = self.batches.pop(positions, None)
        return batch if batch is not None else self.plan.job.batch(positions, self.cache)

    def first_to_send(self) -> int | None:
        """The index of the first batch with a text the cache does not hold (looked up ahead, in order); None when
        the cache holds them all, so the job is answered without being admitted."""
        for index, positions in enumerate(self.plan.batches):
            batch = self.batches[positions] = self.plan.job.batch(positions, self.cache)
            if batch.texts:
                return index
        return None

    def bill(self, usage: Usage) -> None:
        """Add an answered request's usage to what the call is billed, kept even if a later batch fails."""
        billed = self.life.billed
        self.life.billed = usage if billed is None else billed + usage

    async def tokens(self, batch: Batch) -> int:
        """The input tokens of a batch: as counted for the plan, else counted now."""
        if self.plan.counted:
            return sum(self.plan.counted[batch.positions.start : batch.positions.stop])
        call = self.life.call
        return sum([(await call.count_text(text)).tokens for text in batch.texts])

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

    async def send(self, positions: range) -> None:
        """Send one batch (what of it the cache does not hold), and take in its answer."""
        batch = self.batch(positions)
        if not batch.texts:  # every text of it was in the cache
            return
        call, job = self.life.call, self.plan.job
        try:
            result = await self.life.send(lambda: call.driver.embed(call.model, batch.texts, **self.extra))
        except ResponseFormatError as exc:
            if exc.status is not None and exc.status < 300:  # answered, so billed, though unusable
                self.bill(Usage(input_tokens=await self.tokens(batch), estimated=True))
            raise
        usage = await self.life.completed(result.usage, lambda: self.tokens(batch))
        self.bill(usage)
        rows, width = result.vectors.shape
        expected = self.dimensions or job.width or width
        if rows != len(batch.texts) or width != expected:
            raise ResponseFormatError(
                f"{call.provider} returned vectors of shape {result.vectors.shape} for {len(batch.texts)} inputs; "
                f"expected ({len(batch.texts)}, {expected})",
                provider=call.provider,
                model=call.model,
                status=200,
            )
        self.served_model = self.served_model or result.model
        job.place(batch.rows, result.vectors)
        if self.cache is not None:  # cached at once: a later batch's failure never makes this one paid twice
            self.cache.put_many(dict(zip(batch.keys, result.vectors, strict=True)))


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
    life = Lifecycle(call, pipeline, deadline_s)
    sender = Sender(life, plan, options, cache)
    first = sender.first_to_send()
    if first is None:  # the cache held every text: nothing sent, nothing to admit or record
        return sender.response(Cost())
    bar = batching.progress_bar(options.progress, len(job.pending), f"embedding with {call.model_id}")
    async with life:
        try:
            await batching.run_batches(
                plan.batches[first:],
                sender.send,
                concurrency=options.concurrency,
                on_done=None if bar is None else lambda positions, _: bar.update(len(positions)),
            )
        finally:
            if bar is not None:
                bar.close()
        call.counted_input_tokens = sum(plan.counted) if plan.counted else None
        outcome = life.finish(Outcome(life.billed or Usage(), dimensions=job.width or options.dimensions))
    return sender.response(outcome.cost)

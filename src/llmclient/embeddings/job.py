"""One `Client.embed` call as a job: cache lookups, limits, batches sent concurrently, one ledger record.

Repeated texts (within the call, or found in the cache) are neither sent nor billed. The rest are checked against
the provider's limits, split into batches, sent `concurrency` at a time under the call's retry policy and deadline,
and put back in input order. The job is one logical call of the pipeline: budgets reserve its input cost before
anything is sent, and every billed request adds to its single record, even when a later batch fails.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmclient.embeddings import batches as batching
from llmclient.embeddings.cache import EmbeddingCache, Vector, cache_key
from llmclient.errors import InvalidRequestError, ResponseFormatError, UnsupportedCapabilityError
from llmclient.lifecycle import Call, Deadline, Outcome, Pipeline, Pricing
from llmclient.lifecycle.call import ended_by
from llmclient.types import Cost, EmbedResponse, Usage


@dataclass(frozen=True)
class EmbedOptions:
    """What the caller asked of one `embed` call (see `Client.embed` for each)."""

    dimensions: int | None = None
    batch_size: int | None = None
    truncate: bool = False
    concurrency: int = 4
    progress: bool | None = None

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


class EmbedJob:
    """The texts of one `embed` call: each distinct text once, what the cache answered, and what is left to send.

    `pending` holds the distinct texts still to send, in first-appearance order; `sent[i]` is what will actually be
    sent for `pending[i]` (the text itself, or its truncation) and `keys[i]` the cache key its vector is stored under.
    """

    def __init__(self, texts: Sequence[str], key: Callable[..., str], *, keyed: bool = True) -> None:
        self.texts = texts
        self._key = key
        self.first_index: dict[str, int] = {}
        for index, text in enumerate(texts):
            self.first_index.setdefault(text, index)
        self.found: dict[str, Vector] = {}
        """Vectors the cache held, by text."""
        self.received: list[tuple[range, Vector]] = []
        """The vectors each request returned, with the positions in `pending` they belong to."""
        self.width: int | None = None
        self.pending: list[str] = list(self.first_index)
        self.sent: list[str] = list(self.pending)
        # Cache keys (a SHA-256 each) only when there is a cache to ask and feed.
        self._keyed = keyed
        self.keys: list[str] = [key(text) for text in self.pending] if keyed else [""] * len(self.pending)
        self._rows: list[int] = list(self.first_index.values())  # the output row of each pending text

    def lookup(self, cache: EmbeddingCache | None, *, truncated_to: int | None = None) -> None:
        """Take what the cache holds (under the plain key, or the truncated one when truncation is allowed)."""
        if cache is None or not self.pending:
            return
        truncated = {text: self._key(text, truncated_to=truncated_to) for text in self.pending} if truncated_to else {}
        hits = cache.get_many([*self.keys, *truncated.values()])
        if not hits:
            return
        keep = []
        for position, text in enumerate(self.pending):
            vector = hits.get(self.keys[position])
            if vector is None and text in truncated:
                vector = hits.get(truncated[text])
            if vector is None:
                keep.append(position)
            else:
                self.found[text] = vector
                self.width = self.width or int(vector.shape[0])
        self.pending = [self.pending[p] for p in keep]
        self.sent = [self.sent[p] for p in keep]
        self.keys = [self.keys[p] for p in keep]
        self._rows = [self._rows[p] for p in keep]

    def truncate(self, position: int, text: str, limit: int) -> None:
        """Send `text` (a cut of `pending[position]`) instead, stored under the truncated key."""
        self.sent[position] = text
        if self._keyed:
            self.keys[position] = self._key(self.pending[position], truncated_to=limit)

    def fill(self, batch: range, vectors: Vector) -> None:
        """Take the vectors a request returned for `pending[batch]`."""
        self.received.append((batch, vectors))
        self.width = self.width or int(vectors.shape[1])

    @property
    def fresh(self) -> dict[str, Vector]:
        """The vectors received in this call by cache key (rows of the answers' matrices): what to cache."""
        return {
            key: row
            for batch, vectors in self.received
            for key, row in zip(self.keys[batch.start : batch.stop], vectors, strict=True)
        }

    @property
    def unsent(self) -> int:
        """Inputs answered without a request: cache hits and repeats of an earlier input."""
        return len(self.texts) - len(self.pending)

    def assemble(self, dimensions: int) -> Vector:
        """One float32 row per input, in input order: each answer's matrix placed in one step, then cache hits
        and repeats."""
        import numpy as np

        out = np.empty((len(self.texts), dimensions), dtype=np.float32)
        for batch, vectors in self.received:
            out[self._rows[batch.start : batch.stop]] = vectors
        first = self.first_index
        for text, vector in self.found.items():
            out[first[text]] = vector
        if len(first) != len(self.texts):  # a repeated text takes the row of its first appearance
            repeats = [index for index, text in enumerate(self.texts) if first[text] != index]
            out[repeats] = out[[first[self.texts[index]] for index in repeats]]
        return out


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
    driver, provider, name = call.driver, call.provider, call.model
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequestError(
                f"embed() inputs must be str; item {index} is {type(text).__name__}", provider=provider, model=name
            )
    options.check(call)
    dimensions = options.dimensions
    # Passed only when given, so a driver written before `dimensions=` existed still embeds.
    extra = {} if dimensions is None else {"dimensions": dimensions}
    if not texts:  # drivers answer [] with a (0, d) array and no I/O: nothing to bill or record
        empty = await driver.embed(name, texts, **extra)
        empty.cost = Cost()
        return empty
    limits = driver.embedding_limits
    entry = pricing.entry(call)
    known = [n for n in (limits.max_input_tokens, entry.max_input_tokens if entry else None) if n]
    max_input_tokens = min(known) if known else None
    job = EmbedJob(texts, functools.partial(cache_key, provider, name, dimensions), keyed=cache is not None)
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
        provider=provider,
        model=name,
    )
    if job.pending:
        call.worst_case_input_tokens = sum(counted)
        await pipeline.admit(call)
    batches = batching.plan_batches(
        counted or [0] * len(job.pending),
        min(options.batch_size or limits.max_inputs_per_request, limits.max_inputs_per_request),
        limits.max_tokens_per_request,
    )
    billed = 0
    usage, served_model = Usage(), ""
    bar = batching.progress_bar(options.progress, len(job.pending), f"embedding with {call.model_id}")

    async def send(batch: range) -> EmbedResponse:
        nonlocal billed, usage
        chunk = job.sent[batch.start : batch.stop]

        async def attempt() -> EmbedResponse:
            call.attempts += 1
            try:
                return await driver.embed(name, chunk, **extra)
            except Exception as exc:  # a timeout after the request left may have been billed
                call.attempt_failed(exc)
                raise

        try:
            result = await call.policy.run(attempt, call.retrying if call.observers is not None else None)
        except ResponseFormatError as exc:
            if exc.status is not None and exc.status < 300:  # answered, so billed, though unusable
                billed += 1
                tokens_sent = sum(counted[batch.start : batch.stop]) if counted else None
                if tokens_sent is None:
                    tokens_sent = sum([(await driver.count_text(name, text)).tokens for text in chunk])
                usage += Usage(input_tokens=tokens_sent, estimated=True)
            raise
        rows, width = result.vectors.shape
        expected = dimensions or job.width or width
        if rows != len(chunk) or width != expected:
            billed += 1
            usage += result.usage
            raise ResponseFormatError(
                f"{provider} returned vectors of shape {result.vectors.shape} for {len(chunk)} inputs; expected "
                f"({len(chunk)}, {expected})",
                provider=provider,
                model=name,
                status=200,
            )
        return result

    def done(batch: range, result: EmbedResponse) -> None:
        nonlocal billed, usage, served_model
        billed += 1
        usage += result.usage
        served_model = served_model or result.model
        job.fill(batch, result.vectors)
        if bar is not None:
            bar.update(len(batch))

    error: BaseException | None = None
    deadline = Deadline(deadline_s)
    try:
        async with deadline.scope(provider=provider, model=name):
            await batching.run_batches(batches, send, concurrency=options.concurrency, on_done=done)
    except BaseException as exc:
        error = exc
    finally:
        deadline.close()
        if bar is not None:
            bar.close()
    if cache is not None and job.received:  # kept even when a later batch failed: never paid twice
        cache.put_many(job.fresh)
    cost: Cost | None = Cost()
    if billed or call.billed_unknown:
        call.counted_input_tokens = sum(counted) if counted and error is None else None
        outcome = Outcome(usage, error=None if error is None else ended_by(error))
        outcome.dimensions = job.width or dimensions
        pipeline.finish(call, outcome, error)
        cost = outcome.cost
    else:
        pipeline.release(call, error)
    if error is not None:
        raise error
    return EmbedResponse(
        vectors=job.assemble(job.width or dimensions or 0),
        usage=usage,
        cost=cost,
        model=served_model or name,
        provider=provider,
        cached=job.unsent,
    )

"""Batched generation for the transformers driver: the batcher that gathers one model's requests on the event loop,
and, on the engine thread, the rows of a batch, the stopping criterion that feeds them, and the `generate()` call.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmclient.drivers.local.hf_models import LocalModel
from llmclient.drivers.local.runtime import Finished, ModelWorker, Stop
from llmclient.errors import LLMClientError, LocalEngineError, OutOfMemoryError
from llmclient.types import ChatRequest, FinishReason, Usage

PROVIDER = "transformers"


def partial_suffix(text: str, needles: Sequence[str]) -> int:
    """The length of the longest end of `text` that begins one of `needles` (and so may complete it)."""
    return max(
        (k for needle in needles for k in range(min(len(needle) - 1, len(text)), 0, -1) if text.endswith(needle[:k])),
        default=0,
    )


# -- batching -----------------------------------------------------------------------------------------------------


def settings_for(request: ChatRequest) -> tuple[dict[str, Any], int | None, tuple[Any, ...]]:
    """Generation settings, the seed, and the key that requests must share to be batched together.

    Temperature 0 is greedy; otherwise OpenAI's defaults (temperature 1, top_p 1, no top-k). `extra_body` holds
    more `GenerationConfig` fields (`repetition_penalty`, `min_p`, ...). A seeded sampled request gets a batch of
    its own, so the same seed gives the same reply however busy the model is.
    """
    extra = dict(sorted((request.extra_body or {}).items()))
    temperature = 1.0 if request.temperature is None else request.temperature
    if temperature == 0:
        return {"do_sample": False, **extra}, None, ("greedy", repr(extra))
    settings = {
        "do_sample": True,
        "temperature": temperature,
        "top_p": request.top_p or 1.0,
        "top_k": request.top_k or 0,
        **extra,
    }
    alone = () if request.seed is None else (object(),)
    return settings, request.seed, ("sample", repr(settings), *alone)


@dataclass(eq=False)
class Job:
    """One request waiting for (or in) a batch; its row's text deltas and `RowResult` arrive on `queue`."""

    prompt: list[int]
    max_new_tokens: int
    stops: tuple[str, ...]
    settings: dict[str, Any]
    seed: int | None
    key: tuple[Any, ...]
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    cancelled: Stop = field(default_factory=Stop)


@dataclass
class RowResult:
    """How one row ended: every generated token (end-of-turn included), the text, and why it stopped."""

    tokens: list[int]
    text: str
    finish: FinishReason
    prompt_tokens: int

    @property
    def usage(self) -> Usage:
        # Every generated token counts, the end-of-turn token included (it was computed like any other).
        return Usage(input_tokens=self.prompt_tokens, output_tokens=len(self.tokens))


class Batcher:
    """Gathers one model's requests for a short window and runs them in batches, one engine call at a time."""

    def __init__(self, entry: LocalModel) -> None:
        self.entry = entry
        self.worker: ModelWorker[tuple[int, str]] = ModelWorker(entry.name)
        self.pending: list[Job] = []
        self.task: asyncio.Task[None] | None = None

    def submit(self, job: Job) -> None:
        self.pending.append(job)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._drain())

    async def idle(self) -> None:
        """Wait until no batch is running or waiting (the engine thread has returned)."""
        while self.task is not None and not self.task.done():
            await asyncio.shield(self.task)

    def discard(self, job: Job) -> None:
        if job in self.pending:
            self.pending.remove(job)

    async def _drain(self) -> None:
        if self.entry.options.max_batch_size > 1:
            await asyncio.sleep(self.entry.options.batch_window_ms / 1000)
        # Requests that arrive while a batch runs form the next one, without another window.
        while self.pending:
            first = self.pending[0].key
            batch = [job for job in self.pending if job.key == first][: self.entry.options.max_batch_size]
            for job in batch:
                self.pending.remove(job)
            await self._run(batch)
        self.task = None  # a finished task keeps its loop alive, and this batcher is kept per loop

    async def _run(self, jobs: list[Job]) -> None:
        stats = self.entry.stats
        stats.requests += len(jobs)
        stats.batches += 1
        stats.largest = max(stats.largest, len(jobs))
        try:
            async for item in self.worker.stream(functools.partial(generate_batch, self.entry, jobs)):
                if isinstance(item, Finished):
                    for job, result in zip(jobs, item.result, strict=True):
                        job.queue.put_nowait(result)
                else:
                    jobs[item[0]].queue.put_nowait(item[1])
        except asyncio.CancelledError:  # the loop is shutting down: nobody is left to generate for
            for job in [*jobs, *self.pending]:
                job.queue.put_nowait(
                    LocalEngineError("generation stopped: the event loop is closing", provider=PROVIDER)
                )
            raise
        except Exception as exc:
            for job in jobs:
                job.queue.put_nowait(engine_error(exc, self.entry.name))


def engine_error(exc: BaseException, model: str) -> LLMClientError:
    """A failure inside the engine as a typed error (one instance per caller, chained to the original)."""
    if isinstance(exc, LLMClientError):
        return exc
    import torch

    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    error: LLMClientError
    if isinstance(exc, (oom, MemoryError)):
        error = OutOfMemoryError(
            f"{model} ran out of memory ({str(exc)[:200]}); lower max_batch_size or max_tokens, or use a smaller "
            "dtype or model",
            provider=PROVIDER,
            model=model,
        )
    else:
        error = LocalEngineError(
            f"{model} failed: {type(exc).__name__}: {str(exc)[:300]}", provider=PROVIDER, model=model
        )
    error.__cause__ = exc
    return error


# -- the engine thread --------------------------------------------------------------------------------------------


class _Row:
    """One request's row in a batch: its tokens, its text released so far, and why it ended."""

    def __init__(self, index: int, job: Job, tokenizer: Any, eos: set[int], emit: Callable[[tuple[int, str]], None]):
        self.index, self.job, self.tokenizer, self.eos, self.emit = index, job, tokenizer, eos, emit
        self.tokens: list[int] = []
        self.content: list[int] = []  # the tokens that are text (not the end-of-turn token)
        self.text = ""
        self.sent = 0
        self.offsets = (0, 0)
        self.finish: FinishReason | None = None

    def feed(self, token: int) -> None:
        if self.finish is not None:
            return
        if self.job.cancelled:
            self.finish = "cancelled"
            return
        self.tokens.append(token)
        if token in self.eos:
            return self._end("stop")
        self.content.append(token)
        self.text += self._decoded()
        if not self._stopped():
            self._release(len(self.text) - partial_suffix(self.text[self.sent :], self.job.stops))
            if len(self.tokens) >= self.job.max_new_tokens:
                self._end("length")

    def _decoded(self) -> str:
        # Incremental detokenisation as in text-generation-inference: decode a short window twice and keep the
        # difference, holding back an incomplete UTF-8 sequence ("\ufffd") until its next byte arrives.
        prefix, read = self.offsets
        before = self.tokenizer.decode(self.content[prefix:read], skip_special_tokens=True)
        after = self.tokenizer.decode(self.content[prefix:], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.offsets = (read, len(self.content))
            return str(after[len(before) :])
        return ""

    def _stopped(self) -> bool:
        # Released text never ends in the start of a stop string, so a match can only begin in the held part.
        found = [index for index in (self.text.find(stop, self.sent) for stop in self.job.stops) if index >= 0]
        if not found:
            return False
        self.text = self.text[: min(found)]
        self._release(len(self.text))
        self.finish = "stop"
        return True

    def _end(self, reason: FinishReason) -> None:
        full = self.tokenizer.decode(self.content, skip_special_tokens=True)
        if full.startswith(self.text):  # bytes held back at the very end
            self.text = full
        if not self._stopped():
            self._release(len(self.text))
            self.finish = reason

    def _release(self, upto: int) -> None:
        if upto > self.sent:
            self.emit((self.index, self.text[self.sent : upto]))
            self.sent = upto

    def result(self) -> RowResult:
        finish: FinishReason = self.finish or "length"
        return RowResult(self.tokens, self.text, finish, len(self.job.prompt))


class _RowStops:
    """A stopping criterion that feeds each row its newest token and reports which rows are done.

    generate() calls it once per step with every row's ids; a cancelled request's row (or the whole batch, when
    the worker's stop flag is set) reports done at the next token.
    """

    def __init__(self, rows: list[_Row], stop: Stop) -> None:
        self.rows, self.stop = rows, stop

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        for row, token in zip(self.rows, input_ids[:, -1].tolist(), strict=True):
            row.feed(int(token))
        flags = [bool(self.stop) or row.finish is not None for row in self.rows]
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)


def generate_batch(entry: LocalModel, jobs: list[Job], stop: Stop, emit: Callable[[tuple[int, str]], None]) -> Any:
    """Generate for `jobs` together (they share their settings), left-padded; runs on the worker thread."""
    import torch
    from transformers import GenerationConfig, StoppingCriteriaList

    model, tokenizer = entry.lm, entry.tokenizer
    eos = model.generation_config.eos_token_id
    eos = eos if eos is not None else tokenizer.eos_token_id
    eos_ids = [int(token) for token in (eos if isinstance(eos, list) else [eos])]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    width = max(len(job.prompt) for job in jobs)
    # Left padding keeps every row's next token in the last column; the attention mask hides the padding and
    # generate() derives each row's position ids from it, so a row computes what it would alone up to rounding
    # (about 1e-4 in float32 logits: padding and batch size change summation orders; docs/providers/transformers.md).
    ids = torch.tensor([[pad] * (width - len(job.prompt)) + job.prompt for job in jobs], device=model.device)
    mask = torch.tensor([[0] * (width - len(job.prompt)) + [1] * len(job.prompt) for job in jobs], device=model.device)
    rows = [_Row(index, job, tokenizer, set(eos_ids), emit) for index, job in enumerate(jobs)]
    config = GenerationConfig(  # type: ignore[no-untyped-call]
        max_new_tokens=max(job.max_new_tokens for job in jobs),
        eos_token_id=eos_ids,
        pad_token_id=pad,
        **jobs[0].settings,
    )
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    with entry.engine, torch.inference_mode():
        if jobs[0].seed is not None:
            torch.manual_seed(jobs[0].seed)  # the engine lock makes the global generator this request's alone
        try:
            model.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=config,
                stopping_criteria=StoppingCriteriaList([_RowStops(rows, stop)]),
            )
        except oom:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the cached blocks back before the caller retries smaller
            raise
    return [row.result() for row in rows]

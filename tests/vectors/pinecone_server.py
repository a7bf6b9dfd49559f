"""A loopback stand-in for Pinecone's data plane, written to its published API, to test the Pinecone adapter with.

There is no local Pinecone engine to test against, so this server answers as Pinecone's data-plane REST API
documents, version 2026-07 (the version the `pinecone` SDK 10.x sends):

* the OpenAPI document `2026-07/db_data_2026-07.oas.yaml` of https://github.com/pinecone-io/pinecone-api (commit
  6d2d0834766f956e84f6c065a8ccd03ca39dc861, Apache-2.0; read 2026-12-07): the paths `/vectors/upsert`, `/query`,
  `/vectors/fetch`, `/vectors/delete`, `/vectors/list` and `/describe_index_stats`, their camelCase request and
  response bodies (`upsertedCount`, `topK`, `includeMetadata`, `matches`, `vectorCount`, `pagination.next`, ...),
  the required `X-Pinecone-Api-Version` header, errors as `rpcStatus` (`code`, `message`, `details`) and a
  text/plain 401;
* the metadata rules of https://docs.pinecone.io/guides/index-data/indexing-overview#metadata-format (flat object;
  string, number, boolean or list-of-strings values; no null; keys not starting with `$`) and its similarity
  metrics (#similarity-metrics: a euclidean index scores by the *squared* distance, lowest first);
* the filter operators of https://docs.pinecone.io/guides/search/filter-by-metadata (`$eq`, `$ne`, `$gt`, `$gte`,
  `$lt`, `$lte`, `$in`, `$nin`, `$exists`, `$and`, `$or`; `{"key": value}` means `$eq`);
* the limits of https://docs.pinecone.io/reference/api/database-limits (1000 records or 2 MB per upsert, 40 KB of
  metadata per record, ids of at most 512 characters, `topK` at most 10,000).

It searches exactly (the hosted service searches approximately) and is consistent at once (the hosted service is
eventually consistent). One path is not Pinecone's: `POST /_loopback/fault` makes the next upserts to a namespace
fail, for the tests of partial writes.

    python tests/vectors/pinecone_server.py --index notes=8,cosine --index big=384,dotproduct
    # prints {"notes": <port>, "big": <port>} once every index listens on 127.0.0.1, then serves until killed
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

API_VERSION = "2026-07"
MAX_BATCH = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_ID_LENGTH = 512
MAX_TOP_K = 10_000
LIST_PAGE = 100
METRICS = ("cosine", "dotproduct", "euclidean")
INVALID_ARGUMENT, NOT_FOUND = 3, 5  # gRPC status codes, as rpcStatus carries them


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: int = INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class Namespace:
    """The records of one namespace: float32 rows with their norms, ids and metadata (deletes swap the last in)."""

    def __init__(self, dimension: int) -> None:
        self.vectors = np.zeros((16, dimension), dtype=np.float32)
        self.norms = np.zeros(16, dtype=np.float64)
        self.ids: list[str] = []
        self.metadata: list[dict[str, Any] | None] = []
        self.rows: dict[str, int] = {}

    def upsert(self, id: str, values: np.ndarray[Any, Any], metadata: dict[str, Any] | None) -> None:
        row = self.rows.get(id)
        if row is None:
            row = len(self.ids)
            if row == len(self.vectors):
                self.vectors = np.concatenate([self.vectors, np.zeros_like(self.vectors)])
                self.norms = np.concatenate([self.norms, np.zeros_like(self.norms)])
            self.rows[id] = row
            self.ids.append(id)
            self.metadata.append(None)
        self.vectors[row] = values
        self.norms[row] = float(np.linalg.norm(values.astype(np.float64)))
        self.metadata[row] = metadata  # an upsert replaces the whole record

    def delete(self, id: str) -> None:
        row = self.rows.pop(id, None)
        if row is None:
            return
        last = len(self.ids) - 1
        if row != last:
            self.vectors[row], self.norms[row] = self.vectors[last], self.norms[last]
            self.ids[row], self.metadata[row] = self.ids[last], self.metadata[last]
            self.rows[self.ids[row]] = row
        self.ids.pop()
        self.metadata.pop()

    def record(self, id: str) -> dict[str, Any]:
        row = self.rows[id]
        found: dict[str, Any] = {"id": id, "values": self.vectors[row].tolist()}
        if self.metadata[row] is not None:
            found["metadata"] = self.metadata[row]
        return found


class Index:
    """One index: its dimension and metric, namespaces, and the faults the tests asked for."""

    def __init__(self, dimension: int, metric: str) -> None:
        self.dimension, self.metric = dimension, metric
        self.namespaces: dict[str, Namespace] = {}
        self.faults: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def namespace(self, name: str) -> Namespace:
        return self.namespaces.setdefault(name, Namespace(self.dimension))

    def upsert(self, body: dict[str, Any]) -> dict[str, Any]:
        vectors, name = body.get("vectors"), _namespace(body)
        if not isinstance(vectors, list) or not vectors:
            raise ApiError(400, "vectors: a non-empty array is required")
        if len(vectors) > MAX_BATCH:
            raise ApiError(400, f"Upsert batch size {len(vectors)} exceeds the maximum of {MAX_BATCH}")
        checked = [self._checked(vector) for vector in vectors]
        fault = self.faults.get(name)
        if fault is not None and fault["after"] <= 0:
            if fault["store"]:
                self._store(name, checked)
            fault["times"] -= 1
            if fault["times"] <= 0:
                del self.faults[name]
            raise ApiError(fault["status"], "injected by the test (POST /_loopback/fault)")
        if fault is not None:
            fault["after"] -= 1
        self._store(name, checked)
        return {"upsertedCount": len(checked)}

    def _store(self, name: str, checked: list[tuple[str, Any, Any]]) -> None:
        namespace = self.namespace(name)
        for id, values, metadata in checked:
            namespace.upsert(id, values, metadata)

    def _checked(self, vector: Any) -> tuple[str, np.ndarray[Any, Any], dict[str, Any] | None]:
        if not isinstance(vector, dict) or not isinstance(vector.get("id"), str):
            raise ApiError(400, "each vector needs a string id")
        id = vector["id"]
        if not 1 <= len(id) <= MAX_ID_LENGTH:
            raise ApiError(400, f"Vector ID must be 1 to {MAX_ID_LENGTH} characters")
        values = vector.get("values")
        if not isinstance(values, list) or len(values) != self.dimension:
            length = len(values) if isinstance(values, list) else 0
            raise ApiError(400, f"Vector dimension {length} does not match the dimension of the index {self.dimension}")
        array = np.asarray(values, dtype=np.float32)
        if not np.isfinite(array).all():
            raise ApiError(400, "vector values must be finite numbers")
        metadata = vector.get("metadata")
        if metadata is not None:
            _check_metadata(id, metadata)
            # "Integer (converted to a 64-bit floating point by Pinecone)": it reads back as a float.
            metadata = {key: float(value) if _number(value) else value for key, value in metadata.items()}
        return id, array, metadata

    def query(self, body: dict[str, Any]) -> dict[str, Any]:
        top_k, vector, name = body.get("topK"), body.get("vector"), _namespace(body)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise ApiError(400, f"topK must be an integer from 1 to {MAX_TOP_K}")
        if not isinstance(vector, list) or len(vector) != self.dimension:
            raise ApiError(400, f"Query vector dimension does not match the dimension of the index {self.dimension}")
        namespace = self.namespaces.get(name)
        matches: list[dict[str, Any]] = []
        if namespace is not None and namespace.ids:
            rows = self._matching(namespace, body.get("filter"))
            scores = self._scores(namespace, np.asarray(vector, dtype=np.float64), rows)
            order = np.argsort(scores if self.metric == "euclidean" else -scores, kind="stable")[:top_k]
            for position in order.tolist():
                row = int(rows[position])
                match = {"id": namespace.ids[row], "score": float(scores[position])}
                if body.get("includeValues"):
                    match["values"] = namespace.vectors[row].tolist()
                if body.get("includeMetadata") and namespace.metadata[row] is not None:
                    match["metadata"] = namespace.metadata[row]
                matches.append(match)
        return {"matches": matches, "namespace": name, "usage": {"readUnits": 1}}

    def _matching(self, namespace: Namespace, filter: Any) -> np.ndarray[Any, Any]:
        if filter is None:
            return np.arange(len(namespace.ids))
        if not isinstance(filter, dict):
            raise ApiError(400, "filter must be an object")
        return np.array([row for row, metadata in enumerate(namespace.metadata) if _matches(metadata or {}, filter)],
                        dtype=np.intp)  # fmt: skip

    def _scores(self, namespace: Namespace, query: np.ndarray[Any, Any], rows: np.ndarray[Any, Any]) -> Any:
        vectors = namespace.vectors[rows].astype(np.float64)
        if self.metric == "euclidean":
            difference = vectors - query
            return np.einsum("ij,ij->i", difference, difference)
        dots = vectors @ query
        if self.metric == "dotproduct":
            return dots
        norms = namespace.norms[rows] * float(np.linalg.norm(query))
        return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)

    def fetch(self, query: dict[str, list[str]]) -> dict[str, Any]:
        ids, name = query.get("ids", []), query.get("namespace", [""])[0]
        if not ids:
            raise ApiError(400, "ids: at least one id is required")
        namespace = self.namespaces.get(name)
        found = {id: namespace.record(id) for id in ids if namespace is not None and id in namespace.rows}
        return {"vectors": found, "namespace": name, "usage": {"readUnits": 1}}

    def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        name, ids = _namespace(body), body.get("ids")
        namespace = self.namespaces.get(name)
        if body.get("deleteAll"):
            self.namespaces.pop(name, None)
        elif isinstance(ids, list) and ids:
            for id in ids:
                if namespace is not None:
                    namespace.delete(id)
        elif isinstance(body.get("filter"), dict) and namespace is not None:
            for row in reversed(self._matching(namespace, body["filter"]).tolist()):
                namespace.delete(namespace.ids[row])
        else:
            raise ApiError(400, "pass ids, a filter or deleteAll")
        return {}

    def list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        name = query.get("namespace", [""])[0]
        prefix = query.get("prefix", [""])[0]
        limit = int(query.get("limit", [str(LIST_PAGE)])[0])
        start = int(query.get("paginationToken", ["0"])[0])
        namespace = self.namespaces.get(name)
        ids = sorted(id for id in (namespace.ids if namespace else []) if id.startswith(prefix))
        page: dict[str, Any] = {"vectors": [{"id": id} for id in ids[start : start + limit]], "namespace": name,
                                "usage": {"readUnits": 1}}  # fmt: skip
        if start + limit < len(ids):
            page["pagination"] = {"next": str(start + limit)}
        return page

    def stats(self) -> dict[str, Any]:
        counts = {name: len(namespace.ids) for name, namespace in self.namespaces.items() if namespace.ids}
        return {
            "namespaces": {name: {"vectorCount": count} for name, count in counts.items()},
            "dimension": self.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": sum(counts.values()),
            "metric": self.metric,
            "vectorType": "dense",
        }


def _namespace(body: dict[str, Any]) -> str:
    name = body.get("namespace", "")
    if not isinstance(name, str):
        raise ApiError(400, "namespace must be a string")
    return name


def _check_metadata(id: str, metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise ApiError(400, f"Metadata of vector {id} must be a flat JSON object")
    for key, value in metadata.items():
        if key.startswith("$"):
            raise ApiError(400, f"Metadata key {key!r} must not start with '$'")
        if value is None or isinstance(value, dict):
            raise ApiError(400, f"Metadata value for {key!r} must be a string, number, boolean or list of strings")
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise ApiError(400, f"Metadata list {key!r} must hold strings only")
    if len(json.dumps(metadata, ensure_ascii=False).encode()) > MAX_METADATA_BYTES:
        raise ApiError(400, f"Metadata size for vector {id} exceeds the limit of {MAX_METADATA_BYTES} bytes")


def _same(stored: Any, wanted: Any) -> bool:
    """JSON equality: a boolean never equals a number (Python's True == 1 does not hold in JSON)."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if isinstance(stored, (int, float)) and isinstance(wanted, (int, float)):
        return float(stored) == float(wanted)  # Pinecone keeps every number as a 64-bit float
    return isinstance(stored, str) and isinstance(wanted, str) and stored == wanted


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _matches(metadata: dict[str, Any], filter: dict[str, Any]) -> bool:
    for key, condition in filter.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list):
                raise ApiError(400, f"{key} takes an array of filters")
            results = [_matches(metadata, part) for part in condition]
            if not (all(results) if key == "$and" else any(results)):
                return False
        elif key.startswith("$"):
            raise ApiError(400, f"unknown filter operator {key}")
        elif not _holds(metadata, key, condition if isinstance(condition, dict) else {"$eq": condition}):
            return False
    return True


def _holds(metadata: dict[str, Any], key: str, condition: dict[str, Any]) -> bool:
    present, stored = key in metadata, metadata.get(key)
    values = stored if isinstance(stored, list) else [stored]
    for operator, wanted in condition.items():
        if operator == "$eq":
            ok = present and any(_same(value, wanted) for value in values)
        elif operator == "$ne":
            ok = not (present and any(_same(value, wanted) for value in values))
        elif operator in ("$in", "$nin"):
            if not isinstance(wanted, list):
                raise ApiError(400, f"{operator} takes an array")
            found = present and any(_same(value, item) for value in values for item in wanted)
            ok = found if operator == "$in" else not found
        elif operator in ("$gt", "$gte", "$lt", "$lte"):
            if not _number(wanted):
                raise ApiError(400, f"{operator} takes a number")
            ok = present and _number(stored) and _compare(operator, float(stored), float(wanted))
        elif operator == "$exists":
            ok = present == bool(wanted)
        else:
            raise ApiError(400, f"unknown filter operator {operator}")
        if not ok:
            return False
    return True


def _compare(operator: str, stored: float, wanted: float) -> bool:
    return {"$gt": stored > wanted, "$gte": stored >= wanted, "$lt": stored < wanted, "$lte": stored <= wanted}[
        operator
    ]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall between
    index: Index

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read answers, not logs."""

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            status, body = 200, self._route(method, url.path, parse_qs(url.query), raw)
        except ApiError as error:
            status, body = error.status, {"code": error.code, "message": error.message, "details": []}
        if status == 401:
            self._send(401, b"Invalid API Key", "text/plain")
        else:
            self._send(status, json.dumps(body).encode(), "application/json")

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> dict[str, Any]:
        if path == "/_loopback/fault":  # not Pinecone's: the tests' switch for failing upserts
            fault = json.loads(raw)
            self.index.faults[fault["namespace"]] = {"after": fault.get("after", 0), "times": fault.get("times", 1),
                                                     "status": fault.get("status", 500),
                                                     "store": fault.get("store", False)}  # fmt: skip
            return {}
        if not self.headers.get("Api-Key"):
            raise ApiError(401, "Invalid API Key")
        if self.headers.get("X-Pinecone-Api-Version") != API_VERSION:
            raise ApiError(400, f"X-Pinecone-Api-Version must be {API_VERSION}")
        if len(raw) > MAX_REQUEST_BYTES:
            raise ApiError(413, f"Request size {len(raw)} exceeds the maximum of {MAX_REQUEST_BYTES} bytes")
        body = self._json(raw) if method == "POST" else {}
        routes = {
            ("POST", "/vectors/upsert"): lambda: self.index.upsert(body),
            ("POST", "/query"): lambda: self.index.query(body),
            ("GET", "/vectors/fetch"): lambda: self.index.fetch(query),
            ("POST", "/vectors/delete"): lambda: self.index.delete(body),
            ("GET", "/vectors/list"): lambda: self.index.list(query),
            ("POST", "/describe_index_stats"): self.index.stats,
        }
        route = routes.get((method, path))
        if route is None:
            raise ApiError(404, f"{method} {path} is not part of the data plane", NOT_FOUND)
        with self.index.lock:
            return route()

    @staticmethod
    def _json(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve(indexes: dict[str, tuple[int, str]], host: str = "127.0.0.1") -> dict[str, ThreadingHTTPServer]:
    """Start one server thread per index on `host` (each on a free port); returns them by index name."""
    servers = {}
    for name, (dimension, metric) in indexes.items():
        handler = type(f"Handler_{name}", (Handler,), {"index": Index(dimension, metric)})
        server = ThreadingHTTPServer((host, 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name=f"pinecone-{name}", daemon=True).start()
        servers[name] = server
    return servers


def _index_spec(value: str) -> tuple[str, tuple[int, str]]:
    match = re.fullmatch(r"([\w-]+)=(\d+),(cosine|dotproduct|euclidean)", value)
    if not match:
        raise argparse.ArgumentTypeError(f"{value!r}: use NAME=DIMENSION,METRIC (metric: {', '.join(METRICS)})")
    return match[1], (int(match[2]), match[3])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", action="append", type=_index_spec, required=True, help="NAME=DIMENSION,METRIC")
    options = parser.parse_args(argv)
    servers = serve(dict(options.index))
    print(json.dumps({name: server.server_address[1] for name, server in servers.items()}), flush=True)
    threading.Event().wait()  # until the process is killed
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

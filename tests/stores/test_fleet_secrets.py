"""A secret scan of everything a fleet's client leaves behind: the PostgreSQL password, in each form libpq reads,
and an API key that a provider echoes in `x-request-id` (and in its answer's `id`) appear nowhere.

Searched: errors (text, repr, chain, traceback), reprs, replies (but `raw`, the provider's body as it came), ledger
records and their exports, the SQLite
ledger file and its write-ahead log, the PostgreSQL ledger's rows, the spool, logs at DEBUG (llmclient, httpx,
httpcore, psycopg), OpenTelemetry spans, and the command line's output (`cost`, `db status`, its errors).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import traceback
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hostile.server import HostileServer, Reply, Request
from llmclient import Client, ConfigurationError, LLMClientError, SQLiteLedger
from llmclient.cli import main as cli
from llmclient.observability import Tracing
from llmclient.stores import PostgresLedger, PostgresStore, SharedBudgets, StoreUnavailableError

KEY = "vllm-token-SECRET-7c1d2e3f4a5b"  # not shaped like `sk-…`: it must be found by value
PASSWORD = "Hunter2-pw-SECRET-9e8d7c"
PRICES = {"openai-compatible/m": 1}


@pytest.fixture(autouse=True)
def _debug(caplog: pytest.LogCaptureFixture) -> None:
    for name in ("llmclient", "httpx", "httpcore", "psycopg", "psycopg.pool"):
        caplog.set_level(logging.DEBUG, logger=name)


class Seen:
    """Every text a user could print, log or store, gathered as the test goes."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.texts: list[str] = []
        self.caplog = caplog
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.tracing = Tracing(tracer_provider=provider)

    def client(self, **options: Any) -> Client:
        client = Client(prices=PRICES, retry=0, **options)
        client.pipeline.observers.append(self.tracing)
        self.texts.append(repr(client))
        return client

    def error(self, error: BaseException) -> None:
        seen: set[int] = set()
        stack = [error]
        while stack:
            link = stack.pop()
            if id(link) in seen:
                continue
            seen.add(id(link))
            self.texts += [str(link), repr(link), repr(link.args)]
            if isinstance(link, LLMClientError):
                self.texts += [link.message, str(link.request_id), json.dumps(getattr(link, "body", None))]
            stack += [e for e in (link.__cause__, link.__context__) if e is not None]
        self.texts.append("".join(traceback.format_exception(error)))

    def files(self, *paths: Path) -> None:
        for path in paths:
            if path.is_file():
                self.texts.append(path.read_bytes().decode("latin-1"))
            elif path.is_dir():
                self.files(*path.rglob("*"))

    async def run_cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> int:
        out = io.StringIO()
        status = await asyncio.to_thread(cli, list(argv), out=out)  # the command line runs its own event loop
        captured = capsys.readouterr()
        self.texts += [out.getvalue(), captured.out, captured.err]
        return status

    def everything(self) -> str:
        for span in self.spans.get_finished_spans():
            self.texts += [span.name, json.dumps(dict(span.attributes or {}), default=str)]
            self.texts += [str(span.status.description), *(json.dumps(dict(e.attributes or {})) for e in span.events)]
        self.texts.append(self.caplog.text)
        self.texts += [r.getMessage() + repr(r.args) + (r.exc_text or "") for r in self.caplog.records]
        return "\n".join(self.texts)


def assert_nowhere(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, _where(text, secret)
        pieces = {secret[i : i + 10] for i in range(len(secret) - 9)}  # nor a long piece of it
        assert not [piece for piece in pieces if piece in text]


def echoing(request: Request) -> Reply:
    """200 then 401, each with the key in `x-request-id`; the 200's `id` and the 401's message echo it too."""
    if request.headers.get("x-attempt-401") or "fail" in request.body.decode():
        body = {"error": {"message": f"bad key {KEY}", "type": "invalid_request_error"}}
        return Reply(401, (json.dumps(body).encode(),), {"content-type": "application/json", "x-request-id": KEY})
    payload = {
        "id": KEY,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    headers = {"content-type": "application/json", "x-request-id": KEY, "x-ratelimit-remaining-tokens": KEY}
    return Reply(200, (json.dumps(payload).encode(),), headers)


@pytest.fixture
async def server() -> Iterator[HostileServer]:
    hostile = await HostileServer(echoing).start()
    yield hostile
    await hostile.close()


def with_password(url: str) -> str:
    return url.replace("postgres:@", f"postgres:{PASSWORD}@", 1)


@pytest.mark.parametrize("backend", ["native", "aiohttp", "httpx"])
async def test_a_key_echoed_in_x_request_id_is_in_no_reply_error_ledger_log_or_span(
    backend: str,
    server: HostileServer,
    postgres_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen = Seen(caplog)
    provider = {"base_url": server.url, "api_key": KEY, "http": {"backend": backend}}
    url = with_password(postgres_url)
    sqlite = tmp_path / "ledger.db"
    for ledger in (None, str(sqlite), url):
        client = seen.client(providers={"openai-compatible": provider}, ledger=ledger)
        reply = await client.chat("hello", model="openai-compatible/m")
        # `reply.raw` is left out: it is the provider's body as it came (here with the key in `id`), kept verbatim.
        seen.texts += [reply.model_dump_json(exclude={"raw"}), repr(reply), str(reply.request_id)]
        seen.texts.append(json.dumps(reply.rate_limits))
        with pytest.raises(LLMClientError) as caught:
            await client.chat("fail", model="openai-compatible/m")
        seen.error(caught.value)
        seen.texts += [repr(client.ledger), client.ledger.to_json(), client.ledger.to_csv()]
        seen.texts += [repr(record) for record in client.ledger.records]
        if isinstance(client.ledger, SQLiteLedger):
            seen.files(sqlite, sqlite.with_name("ledger.db-wal"))  # the write-ahead log, before any checkpoint
        await client.aclose()
        assert reply.request_id == "[REDACTED]"  # kept as an id, without the key
    store = PostgresStore(url)
    seen.texts.append(str(store.fetch("SELECT * FROM llmclient_calls")))
    store.close()
    for ledger in (str(sqlite), url):
        for report in ("json", "csv", "table"):
            assert await seen.run_cli(capsys, "--ledger", ledger, "cost", "--by", "call", "--format", report) == 0
    assert_nowhere(seen.everything(), KEY, PASSWORD)


def password_forms(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The database URL with the password as user information, as `?password=`, in a keyword/value string, and
    in PGPASSWORD (which libpq reads when the URL has none)."""
    _, rest = url.split("@", 1)  # postgresql://postgres:@/db?host=/socket
    database, host = rest.lstrip("/").split("?host=")
    yield f"postgresql://postgres:{PASSWORD}@/{database}?host={host}"
    yield f"postgresql://postgres@/{database}?host={host}&password={PASSWORD}"
    yield f"host={host} dbname={database} user=postgres password='{PASSWORD}'"
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    yield f"postgresql://postgres@/{database}?host={host}"
    monkeypatch.delenv("PGPASSWORD")


async def test_the_database_password_in_each_libpq_form_is_in_no_message_repr_log_span_or_cli_output(
    postgres_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = Seen(caplog)
    for number, form in enumerate(password_forms(postgres_url, monkeypatch)):
        store = PostgresStore(form, timeout=2, spool_dir=tmp_path / "spool")
        budgets = SharedBudgets(store, always=["org"])
        budgets.define("org", "1")
        client = seen.client(ledger=PostgresLedger(store), budget_store=budgets)
        await client.chat("hello", model="fake/echo")
        await client.aclose()
        seen.texts += [repr(store), repr(client.ledger), store.where, str(store.fetch("SELECT * FROM llmclient_calls"))]
        for argv in (("db", "status", "--url", form), ("db", "flush", "--url", form), ("--ledger", form, "cost")):
            assert await seen.run_cli(capsys, *argv) == 0
        store.close()

        # The same forms pointing where no server is: the admission fails closed, the CLI reports an error.
        down = form.replace("?host=", "?host=/nonexistent/").replace("host=/", "host=/nonexistent/")
        gone = PostgresStore(down, timeout=1, spool_dir=tmp_path / "spool")
        client = seen.client(ledger=PostgresLedger(gone), budget_store=SharedBudgets(gone, always=["org"]))
        with pytest.raises(StoreUnavailableError) as caught:
            await client.chat("hello", model="fake/echo")
        seen.error(caught.value)
        seen.texts += [repr(gone), repr(client.ledger)]
        assert await seen.run_cli(capsys, "db", "status", "--url", down) == 1
        database = postgres_url.split("@/", 1)[1].split("?", 1)[0]
        missing = form.replace(database, f"no_such_db_{number}")
        with pytest.raises(ConfigurationError, match="does not exist") as refused:
            PostgresStore(missing).migrate()
        seen.error(refused.value)

    # Unknown or malformed schemes: refused naming the scheme alone, never read as a file path.
    for typo in (f"postgresq://app:{PASSWORD}@db/x", f"mysql://app:{PASSWORD}@db/x", f"postgresql:/app:{PASSWORD}@x"):
        for make in (partial(Client, ledger=typo), partial(Client, budget_store=typo), partial(PostgresStore, typo)):
            with pytest.raises(ConfigurationError) as refused:
                make()
            seen.error(refused.value)
        assert await seen.run_cli(capsys, "--ledger", typo, "cost") == 1
        assert await seen.run_cli(capsys, "db", "status", "--url", typo) == 1
    seen.files(tmp_path)  # the spool, and any file a URL might have been taken for
    assert_nowhere(seen.everything(), PASSWORD)
    assert "[REDACTED]" in seen.everything()  # the URLs were shown, their passwords not


def _where(text: str, secret: str) -> str:
    at = text.find(secret)
    return text[max(0, at - 400) : at + 100]

"""The ledger: one record per logical call, exact totals under concurrency, exports, repricing and SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import io
import json
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from llmclient import Client, ConfigurationError, FakeDriver, ResponseFormatError, RetryPolicy, ServerError, Usage
from llmclient.accounting.catalog import PriceTable
from llmclient.accounting.ledger import CSV_COLUMNS, CostLedger, LedgerRecord, SQLiteLedger, summarise
from llmclient.accounting.prices import PriceEntry

PAID = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}


async def test_groupings_totals_and_exports() -> None:
    client = Client(prices=PAID)
    await client.chat("one two three", model="fake/paid", tags=["a", "b"])
    await client.chat("four", model="fake/paid", tags=["b"])
    await client.chat("five six", model="fake/free")
    ledger = client.ledger
    # "one two three" → 3 in, "You said: one two three" → 5 out; "four" → 1 in, 3 out.
    expected = Decimal("0.000001") * 4 + Decimal("0.000002") * 8
    assert ledger.total() == expected
    assert ledger.by_model()["fake/paid"].cost == expected
    assert ledger.by_model()["fake/free"].cost == 0
    assert ledger.by_provider()["fake"].calls == 3
    assert {tag: s.calls for tag, s in ledger.by_tag().items()} == {"a": 1, "b": 2}
    assert ledger.usage().input_tokens == 6
    exported = json.loads(ledger.to_json())
    assert [row["model"] for row in exported] == ["paid", "paid", "free"]
    assert exported[0]["cost"]["total"] == str(Decimal("0.000001") * 3 + Decimal("0.000002") * 5)
    rows = list(csv.DictReader(io.StringIO(ledger.to_csv())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1]["tags"] == "b" and rows[0]["tags"] == "a;b"


async def test_reprice_shows_what_the_same_usage_would_cost_elsewhere() -> None:
    client = Client()
    await client.chat("a b c d", model="fake/x")
    usage = client.ledger.usage()
    on_deepseek = client.ledger.reprice("deepseek/deepseek-flash")
    assert on_deepseek == (Decimal("0.3") * usage.input_tokens + Decimal("1.2") * usage.output_tokens) / 10**6
    assert client.ledger.reprice("nowhere/model") is None


async def test_unknown_prices_are_recorded_as_none_not_zero() -> None:
    client = Client(providers={"mystery": {"driver": "fake"}})
    with pytest.warns(Warning, match="unknown is not free"):
        reply = await client.chat("hi", model="mystery/model")
    assert reply.cost is None
    assert client.ledger.records[0].cost is None
    assert client.ledger.by_model()["mystery/model"].unpriced_calls == 1


async def test_drift_between_the_local_count_and_the_reported_usage() -> None:
    body = json.loads((Path(__file__).parent / "fixtures" / "openai" / "chat_completion.json").read_text())
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with Client(transport=transport, providers={"openai": {"api_key": "k"}}, track_drift=True) as client:
        await client.chat("Hello!", model="openai/gpt-3.5-turbo")
    record = client.ledger.records[0]
    # The local count of [user "Hello!"] is 3 + 1 + 2 + 3 = 9; the fixture reports 19.
    assert record.counted_input_tokens == 9
    assert record.input_drift == 10


async def test_a_billed_200_that_cannot_be_parsed_is_still_recorded() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"choices": []}))
    async with Client(transport=transport, providers={"openai": {"api_key": "k"}}) as client:
        with pytest.raises(ResponseFormatError):
            await client.chat("Hello!", model="openai/gpt-4o-mini")
        with pytest.raises(ServerError):  # not billed: nothing recorded
            await Client(providers={"fake": FakeDriver(replies=[ServerError("x", status=500)])}, retry=0).chat(
                "x", model="fake/x"
            )
    (record,) = client.ledger.records
    assert record.error == "ResponseFormatError"
    assert record.usage.estimated and record.usage.input_tokens == 9 and record.cost is not None


async def test_1000_concurrent_calls_from_tasks_and_threads_with_retries_total_exactly() -> None:
    ledger = CostLedger()
    policy = RetryPolicy(max_retries=2, initial_backoff=0, jitter=False)

    def make_client(flaky: bool) -> Client:
        replies: list[object] = [ServerError("busy", status=503)] * (1 if flaky else 0) + ["w1 w2 w3"] * 400
        return Client(providers={"fake": FakeDriver(replies=replies)}, ledger=ledger, retry=policy, prices=PAID)

    async def run(client: Client, count: int) -> None:
        await asyncio.gather(*(client.chat("a b", model="fake/paid") for _ in range(count)))

    def thread_body() -> None:
        asyncio.run(run(make_client(flaky=True), 100))

    threads = [threading.Thread(target=thread_body) for _ in range(4)]
    for thread in threads:
        thread.start()
    await asyncio.gather(run(make_client(flaky=True), 300), run(make_client(flaky=False), 300))
    for thread in threads:
        thread.join()
    records = ledger.records
    assert len(records) == 1000
    assert sum(r.attempts for r in records) == 1000 + 5  # one injected retry per flaky client
    per_call = Decimal("0.000001") * 2 + Decimal("0.000002") * 3
    assert ledger.total() == per_call * 1000
    assert ledger.usage().output_tokens == 3000


def test_sqlite_ledger_persists_with_the_documented_schema(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"

    async def calls() -> None:
        client = Client(ledger=f"sqlite:///{path}", prices=PAID)
        await client.chat("one two", model="fake/paid", tags=["batch"])
        await client.chat("three", model="fake/free")

    asyncio.run(calls())
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT provider, model, input_tokens, output_tokens, cost_usd, tags FROM calls").fetchall()
    assert rows[0][:4] == ("fake", "paid", 2, 4) and Decimal(rows[0][4]) == Decimal("0.000010")
    assert rows[0][5] == '["batch"]'
    assert rows[1][4] == "0"
    reopened = SQLiteLedger(path)
    assert len(reopened) == 2
    assert reopened.total() == Decimal("0.000010")
    assert next(iter(reopened)).tags == ("batch",)  # read back from the file: `records` are this object's own
    assert reopened.records == ()
    reopened.close()


def test_several_processes_append_to_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    script = (
        "import asyncio, sys\n"
        "from llmclient import Client\n"
        "async def main():\n"
        f"    client = Client(ledger=r'sqlite:///{path}')\n"
        "    await asyncio.gather(*(client.chat('x y', model='fake/x') for _ in range(50)))\n"
        "asyncio.run(main())\n"
    )
    processes = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0, 0, 0]
    ledger = SQLiteLedger(path)
    assert len(ledger) == 200
    ledger.close()


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("mysql://root:hunter2@db/ledger", "the scheme 'mysql' is not supported"),
        ("postgresq://app:hunter2@db/ledger", "the scheme 'postgresq' is not supported"),  # a typo
        ("postgresql:/app:hunter2@db/ledger", "must start with postgresql://"),  # not a local file named so
        ("sqlite://hunter2.db", "must start with sqlite:///"),
    ],
)
def test_unsupported_or_malformed_ledger_urls_are_refused_naming_the_scheme_only(
    spec: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=problem) as refused:
        Client(ledger=spec)  # postgresql:// is the fleet ledger (tests/stores)
    assert "hunter2" not in str(refused.value) and refused.value.__cause__ is None
    assert list(tmp_path.iterdir()) == []  # no SQLite file made from a URL it could not read


async def test_reprice_accepts_every_model_id_form_the_client_does() -> None:
    client = Client()
    await client.chat("one two three", model="fake:echo")
    assert client.ledger.reprice("openai:gpt-4o-mini") == client.ledger.reprice("openai/gpt-4o-mini")
    assert client.ledger.reprice("openai:gpt-4o-mini") is not None
    assert client.ledger.reprice("ollama:llama3.2") == 0  # self-hosted: free unless priced


def test_a_sqlite_ledger_reads_back_every_field_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "2026" / "ledger.db"
    with pytest.raises(ConfigurationError, match=r"the ledger's folder .* does not exist"):
        Client(ledger=path)  # a typo in the path is an error, not a new ledger somewhere else
    assert not (tmp_path / "runs").exists()
    path.parent.mkdir(parents=True)

    async def calls() -> SQLiteLedger:
        client = Client(ledger=path, prices=PAID)  # a Path, as well as a sqlite:/// URL
        await client.chat("one two", model="fake/paid", tags=["batch", "猫"])
        return client.ledger  # type: ignore[return-value]

    ledger = asyncio.run(calls())
    gpt = PriceEntry.per_million("gpt-4o", "openai", input="2.5", output=10, source="https://x", checked="2026-12-01")
    ledger.add(LedgerRecord(
        provider="openai", model="gpt-4o", kind="stream", latency_s=0.25, attempts=3, request_id="req-1",
        usage=(usage := Usage(input_tokens=7, cached_input_tokens=2, output_tokens=5, estimated=True)),
        cost=gpt.cost(usage), tags=("x",), error="StreamInterruptedError", counted_input_tokens=9, deployment="east",
    ))  # fmt: skip
    written = ledger.records
    assert len(ledger) == 2 and written[0].tags == ("batch", "猫")
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # readers never block the writers
    ledger.close()
    assert not path.with_name(path.name + "-wal").exists()  # closed: everything is in the file itself
    reopened = SQLiteLedger(path)
    assert list(reopened) == list(written)
    reopened.close()


def test_a_sqlite_ledger_is_written_from_any_thread(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.db")

    async def call() -> None:
        await Client(ledger=ledger).chat("from a worker thread", model="fake/x")

    worker = threading.Thread(target=asyncio.run, args=(call(),))
    worker.start()
    worker.join()
    assert len(SQLiteLedger(tmp_path / "ledger.db")) == 1 and len(ledger) == 1
    ledger.close()


def test_records_are_a_snapshot_and_exports_keep_every_field() -> None:
    ledger = CostLedger()
    usage = Usage(input_tokens=3, output_tokens=4)
    priced = LedgerRecord("fake", "paid", "chat", usage, PriceEntry.per_million("paid", "fake", input=1).cost(usage),
                          0.5, request_id="req-9", tags=("猫",), error="ServerError", counted_input_tokens=2,
                          deployment="east")  # fmt: skip
    unpriced = LedgerRecord("mystery", "m", "chat", usage, None, 0.1)
    ledger.add(priced)
    snapshot = ledger.records
    ledger.add(unpriced)
    assert len(snapshot) == 1 and len(ledger.records) == 2
    data = priced.to_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-ready as it is: no tuples, no Decimals
    assert (data["tags"], data["input_drift"]) == (["猫"], 1)
    assert "猫" in ledger.to_json()  # exported as written, not as \\u escapes
    rows = list(csv.DictReader(io.StringIO(ledger.to_csv())))
    assert (rows[0]["cost_usd"], rows[0]["price_source"]) == (str(priced.cost.total), "")  # type: ignore[union-attr]
    assert (rows[0]["request_id"], rows[0]["error"], rows[0]["deployment"]) == ("req-9", "ServerError", "east")
    assert (rows[1]["cost_usd"], rows[1]["request_id"], rows[1]["error"], rows[1]["deployment"]) == ("", "", "", "")
    summary = ledger.by_model()["fake/paid"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.cost = Decimal(0)  # type: ignore[misc]


def test_a_record_is_immutable_and_counts_one_request_unless_told() -> None:
    record = LedgerRecord("fake", "x", "chat", Usage(input_tokens=1), None, 0.1)
    assert record.attempts == 1 and record.input_drift is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.cost = None  # type: ignore[misc]  # what was recorded stays recorded


def _record(n: int, *, at: float = 1_700_000_000.0, tags: tuple[str, ...] = ()) -> LedgerRecord:
    """The n-th of a run of records: a different usage and cost each, one unpriced in seven."""
    usage = Usage(input_tokens=n % 13, cached_input_tokens=n % 5, output_tokens=n % 11, cache_write_tokens=n % 3)
    entry = PriceEntry.per_million("paid", "fake", input="0.15", output="0.6")
    cost = None if n % 7 == 0 else entry.cost(usage)
    return LedgerRecord("fake", "paid" if cost else "mystery", "chat", usage, cost, 0.1, tags=tags, timestamp=at + n)


def test_an_in_memory_ledger_keeps_its_last_records_and_exact_totals_of_every_call() -> None:
    ledger = CostLedger(keep=10)
    records = [_record(n, tags=("even",) if n % 2 == 0 else ()) for n in range(1000)]
    for record in records:
        ledger.add(record)
    assert ledger.records == tuple(records[-10:]) and list(ledger) == records[-10:] and len(ledger) == 10
    assert (ledger.count(), ledger.dropped) == (1000, 990)  # said plainly: 990 records are gone from memory
    priced = [r.cost.total for r in records if r.cost is not None]
    assert ledger.total() == sum(priced, Decimal(0))  # exact, over every call, dropped ones included
    assert ledger.usage() == sum((r.usage for r in records), Usage())
    assert ledger.by_model()["fake/mystery"].unpriced_calls == sum(1 for r in records if r.cost is None)
    assert ledger.by_tag() == {"even": summarise(r for r in records if r.tags)}
    assert ledger.summary("tag")["(untagged)"].calls == 500  # by_tag leaves untagged calls out; summary names them
    assert ledger.summary("provider") == {"fake": summarise(records)}
    assert ledger.summary("day") == {"2023-11-14": summarise(records)}  # UTC
    repriced = PriceEntry.per_million("x", "openai", input=1, output=2)
    expected = sum((repriced.cost(r.usage).total for r in records), Decimal(0))
    assert ledger.reprice("openai/x", PriceTable([repriced])) == expected  # from the totals, exact
    assert len(ledger.to_json().split('"provider"')) == 11 and ledger.to_csv().count("\n") == 11  # the kept ten


def test_a_period_the_kept_records_cover_is_summarised_and_one_they_do_not_is_refused() -> None:
    ledger = CostLedger(keep=100)
    records = [_record(n) for n in range(300)]
    for record in records:
        ledger.add(record)
    since = datetime.fromtimestamp(records[250].timestamp, tz=timezone.utc)
    assert ledger.summary("model", since=since) == {
        "fake/paid": summarise(r for r in records[250:] if r.cost),
        "fake/mystery": summarise(r for r in records[250:] if r.cost is None),
    }
    with pytest.raises(ValueError, match=r"keeps its last 100 records, and calls since .* include some it has dropped"):
        ledger.summary("model", since=datetime.fromtimestamp(records[150].timestamp, tz=timezone.utc))
    with pytest.raises(ValueError, match="cannot group by 'week'; choose one of model, provider, deployment, tag, day"):
        ledger.summary("week")
    # The boundary: a period starting exactly when the last dropped record was made includes that record.
    first_kept = datetime.fromtimestamp(records[200].timestamp, tz=timezone.utc)
    assert set(ledger.summary("model", since=first_kept)) == {"fake/paid", "fake/mystery"}
    with pytest.raises(ValueError, match="include some it has dropped"):
        ledger.summary("model", since=datetime.fromtimestamp(records[199].timestamp, tz=timezone.utc))


@pytest.mark.parametrize("keep", [-1, True, 2.5, "10"])
def test_keep_must_be_a_number_of_records(keep: object) -> None:
    with pytest.raises(ValueError, match="keep must be a number of records"):
        CostLedger(keep=keep)  # type: ignore[arg-type]


def test_a_ledger_prints_its_figures_and_costs_in_plain_decimal() -> None:
    ledger = CostLedger(keep=0)  # totals only
    usage = Usage(input_tokens=2)
    cost = PriceEntry.per_million("e", "openai", input="0.02").cost(usage)
    assert str(cost.total) == "4E-8"  # how a Decimal shows itself: not how the ledger shows money
    ledger.add(LedgerRecord("openai", "e", "embed", usage, cost, 0.1))
    ledger.add(LedgerRecord("mystery", "m", "chat", usage, None, 0.1))
    assert repr(ledger) == "CostLedger(calls=2, total_usd=0.00000004, unpriced_calls=1, kept=0, keep=0)"
    assert str(ledger.by_model()["openai/e"]) == (
        "Summary(calls=1, input_tokens=2, output_tokens=0, cost_usd=0.00000004, unpriced_calls=0)"
    )
    assert list(ledger) == [] and ledger.count() == 2 and ledger.dropped == 2


def test_a_cost_prints_in_plain_decimal() -> None:
    cost = PriceEntry.per_million("e", "openai", input="0.02").cost(Usage(input_tokens=2))
    assert str(cost) == "0.00000004 USD"  # print(result.cost): an embedding's cost was "input=Decimal('4E-8') ..."
    assert repr(cost) == "Cost(total=0.00000004, input=0.00000004, currency='USD', price_model='openai/e')"
    assert str(cost.model_copy(update={"estimated": True})) == "0.00000004 USD (estimated)"


def test_a_sqlite_ledger_totals_every_row_of_its_file_and_reads_them_back_a_page_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger, other_process = SQLiteLedger(path, keep=5), SQLiteLedger(path)
    records = [_record(n, tags=("a", "b") if n % 3 == 0 else ()) for n in range(1234)]
    for n, record in enumerate(records):
        (ledger if n % 2 else other_process).add(record)
        if n == 600:
            assert ledger.count() == 601  # a read in between: later rows are folded in at the next one
    assert ledger.total() == sum((r.cost.total for r in records if r.cost is not None), Decimal(0))
    assert ledger.usage() == sum((r.usage for r in records), Usage())  # cache writes included
    assert ledger.by_tag() == {"a": summarise(records[::3]), "b": summarise(records[::3])}
    assert list(ledger) == records and len(ledger) == 1234  # every row, in the order written (pages of 500)
    assert ledger.records == tuple(records[1::2][-5:])  # the last five this object added
    assert ledger.dropped == 0  # the file keeps everything
    since = datetime.fromtimestamp(records[1000].timestamp, tz=timezone.utc)
    assert ledger.summary("provider", since=since) == {"fake": summarise(records[1000:])}
    assert repr(ledger) == f"SQLiteLedger({str(path)!r}, calls=1234, total_usd={ledger.total():f}, unpriced_calls=177)"
    ledger.close()
    other_process.close()


def test_a_ledger_is_truthy_whatever_it_keeps(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "ledger.db", keep=0)
    assert ledger and CostLedger(keep=0) and len(ledger) == 0
    ledger.close()

"""`make mutate`: does any test notice when the code that handles money changes?

Every mutant (tools/mutants.py: one flipped comparison, changed constant, dropped conversion or deleted statement)
of the modules in `MODULES` is put in a copy of the repository, one at a time, and the tests that run the changed
line are run against it (`pytest -x`, fastest first, each test under a pytest-timeout) until one fails. Which
tests run which line comes from one coverage run of the unmutated code over `TESTS`; lines run only at import
(defaults, class bodies) are checked against every test that touches the module. A mutant is

- killed: a test failed (or the mutated module no longer imports);
- timeout: a test ran past its timeout (an endless retry loop, say) and pytest-timeout failed it, and again with
  4× the timeout (a loaded machine must not pass for a hang): killed, fast;
- hung: the runner killed pytest at its wall-clock limit (a hang the timeout could not break): killed, slowly;
- survived: every selected test passed; uncovered: no test runs the line.

Survivors are explained in tools/mutation_survivors.toml (equivalent: no behaviour changed, left out of the score;
defensive: a guard the tests cannot reach, counted as survived). The run writes MUTATION.md and
.mutation/results.json; `--report` rewrites MUTATION.md from the results after editing the explanations.

    python tools/mutate.py                     # every module (make mutate)
    python tools/mutate.py -m retry -m prices  # some modules; results for the others are kept
    python tools/mutate.py --report            # MUTATION.md again from .mutation/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mutant_runner import SEED, Child, CoverageContexts, Outcome, Workspace, start_postgres, stop_postgres, warm_up
from mutants import Mutant, mutants

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


@dataclass(frozen=True)
class Target:
    """A module to mutate: its file, and optionally the top-level classes or functions to mutate in it."""

    path: str
    scopes: tuple[str, ...] = ()


# The money-critical modules, named independently of where their files live: survivors' explanations are filed
# under these names, so a move only changes a path here.
MODULES = {
    "prices": Target("src/llmclient/accounting/prices.py"),
    "price_table": Target("src/llmclient/accounting/catalog.py", scopes=("PriceTable",)),
    "budget": Target("src/llmclient/accounting/budgets.py"),
    "budget_admission": Target("src/llmclient/lifecycle/budget_admission.py"),
    "pricing_step": Target("src/llmclient/lifecycle/steps.py", scopes=("Pricing",)),
    "ledger": Target("src/llmclient/accounting/ledger.py"),
    "ledger_totals": Target("src/llmclient/accounting/totals.py"),
    "ledger_records": Target("src/llmclient/accounting/records.py"),
    "pg_budgets": Target("src/llmclient/stores/pg_budgets.py"),
    "pg_ledger": Target("src/llmclient/stores/pg_ledger.py"),
    "retry": Target("src/llmclient/lifecycle/retry.py"),
}
# The tests a mutant may be checked against (coverage then picks, per changed line, those that run it). Left out:
# those that take minutes and price and record through code the fast tests cover (local models in-process, the
# llama.cpp server), and those that run llmclient only in subprocesses (coverage sees no line of theirs; the install
# test also needs the checkout's git repository, which the mutation's copy is not).
TESTS = ("tests", "docs", "README.md", "src/llmclient")
EXCLUDE = (
    "tests/drivers/test_hf.py",
    "tests/drivers/test_llamacpp.py",
    "tests/test_examples.py",
    "tests/test_install.py",
    "tests/typing",
)
MARKERS = "not server"
# A test's timeout under mutation: generous against a loaded machine, short against a hang.
TEST_TIMEOUT = (10.0, 5.0)  # seconds: floor, and multiple of the test's unmutated duration
# The fastest tests run first, alone: most mutants fail one of them, and pytest then collects a few test files
# instead of every file that touches the module.
FIRST_BATCH = 25
# A test that times out is run again with this many times its timeout before the mutant counts as hanging.
PATIENCE = 4
# Plugins are imported before pytest starts (mutant_runner.warm_up), too early for pytest to rewrite their asserts.
PYTEST = ("-q", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".mutation"
RESULTS = STATE / "results.json"
SURVIVORS = Path(__file__).resolve().parent / "mutation_survivors.toml"
REPORT = ROOT / "MUTATION.md"
KILLED = ("killed", "timeout", "hung")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--module", action="append", choices=sorted(MODULES), help="only these modules")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="mutants tested at once")
    parser.add_argument("--sample", type=int, help="test this many mutants per module, drawn with the fixed seed")
    parser.add_argument("--tests", nargs="+", default=list(TESTS), help="candidate tests (default: TESTS)")
    parser.add_argument("--report", action="store_true", help="only write MUTATION.md from the last results")
    options = parser.parse_args(argv)
    if not options.report:
        names = options.module or list(MODULES)
        run(names, options.tests, jobs=max(1, options.jobs), sample=options.sample)
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    explained = load_explanations()
    report = splice(REPORT.read_text(encoding="utf-8") if REPORT.exists() else "", render(results, explained))
    REPORT.write_text(report, encoding="utf-8")
    print(f"wrote {REPORT.relative_to(ROOT)}")
    unexplained = [r for r in _all(results) if r["status"] in ("survived", "uncovered", "error")]
    unexplained = [r for r in unexplained if r["key"] not in explained]
    for record in unexplained:  # ready to paste into tools/mutation_survivors.toml, with a verdict and reason
        key = json.dumps(record["key"], ensure_ascii=False)
        print(f"unexplained survivor {record['path']}:{record['line']}\n[[mutant]]\nkey = {key}\n")
    return 1 if unexplained or any(not s["met"] for s in scores(results, explained).values()) else 0


def run(names: list[str], tests: list[str], *, jobs: int, sample: int | None) -> None:
    """Mutate the modules `names` and merge their results into .mutation/results.json."""
    started = time.monotonic()
    STATE.mkdir(exist_ok=True)
    warm_up()
    with tempfile.TemporaryDirectory(prefix="llmclient-mutate-") as scratch:
        folder = Path(scratch)
        postgres = start_postgres(folder)
        try:
            workspaces = [Workspace.copy(ROOT, folder) for _ in range(jobs)]
            print(f"coverage of the unmutated code over {', '.join(tests)} …", flush=True)
            lines, durations = baseline(workspaces[0], names, tests, folder, postgres)
            plan = []
            for name in names:
                target = MODULES[name]
                found = list(mutants(name, target.path, (ROOT / target.path).read_bytes(), target.scopes))
                if sample is not None and sample < len(found):
                    found = sorted(random.Random(SEED).sample(found, sample), key=lambda m: m.start)
                plan += [(mutant, select(mutant, lines.get(target.path, {}), durations)) for mutant in found]
            print(f"{len(plan)} mutants of {len(names)} modules, {jobs} at a time", flush=True)
            records = execute(plan, workspaces, folder, postgres, durations)
        finally:
            stop_postgres(postgres)
    previous = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {"modules": {}}
    modules = {name: data for name, data in previous["modules"].items() if name in MODULES and name not in names}
    for name in names:
        modules[name] = {"path": MODULES[name].path, "mutants": [r for r in records if r["module"] == name]}
    results = {"modules": modules, "last_run": describe_run(names, jobs, sample, time.monotonic() - started)}
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")


def baseline(
    workspace: Workspace, names: list[str], tests: list[str], folder: Path, postgres: Any
) -> tuple[dict[str, dict[int, list[str]]], dict[str, float]]:
    """Run the candidate tests on the unmutated code under coverage: lines → tests, and each test's duration."""
    files = [workspace.root / MODULES[name].path for name in names]
    args = [*PYTEST, "-m", MARKERS, *(f"--ignore={path}" for path in EXCLUDE), *tests]
    plugin: list[CoverageContexts] = []

    def setup() -> list[object]:
        plugin.append(CoverageContexts(files))
        return [plugin[0]]

    def finish(extra: dict[str, Any]) -> None:
        extra["lines"] = plugin[0].lines()

    log = folder / "baseline.log"
    outcome = Child.start(workspace, args, limit=3600, log_path=log, postgres=postgres, setup=setup, finish=finish)
    result = outcome.wait()
    if result.exit_code != 0:
        sys.exit(f"the unmutated tests must pass first (pytest exit {result.exit_code}):\n{log.read_text()[-4000:]}")
    prefix = str(workspace.root) + os.sep
    lines = {
        name.removeprefix(prefix): {int(line): tests for line, tests in by_line.items()}
        for name, by_line in result.extra["lines"].items()
    }
    print(f"  {result.ran} tests in {result.seconds:.0f} s", flush=True)
    return lines, result.extra["durations"]


def select(mutant: Mutant, lines: dict[int, list[str]], durations: dict[str, float]) -> list[str]:
    """The tests that run the mutated line, fastest first; every test touching the module for import-time code."""
    contexts = set(lines.get(mutant.line, ())) | set(lines.get(mutant.statement_line, ()))
    tests = contexts - {""}
    if not tests and "" in contexts:
        tests = {test for by_line in lines.values() for test in by_line} - {""}
    return sorted(tests, key=lambda test: (durations.get(test, 0.0), test))


@dataclass
class Job:
    """One mutant under test: the batches of tests still to run, and what the finished ones took."""

    index: int
    mutant: Mutant
    batches: list[list[str]]
    child: Child | None = None
    current: list[str] = field(default_factory=list)
    patient: bool = False
    confirmed: set[str] = field(default_factory=set)
    failed: str | None = None
    seconds: float = 0.0
    ran: int = 0

    def start(self, workspace: Workspace, folder: Path, postgres: Any, durations: dict[str, float]) -> None:
        """Run the next batch of tests against the mutant, which is in `workspace`."""
        self.current = tests = self.batches.pop(0)
        slowest = max(durations.get(test, 0.0) for test in tests)
        timeout = max(TEST_TIMEOUT[0], TEST_TIMEOUT[1] * slowest) * (PATIENCE if self.patient else 1)
        limit = 60 + 3 * sum(durations.get(test, 0.0) for test in tests) + timeout
        args = [*PYTEST, "-x", "-o", f"timeout={timeout:.0f}", *tests]
        log = folder / f"mutant-{self.index}.log"
        self.child = Child.start(workspace, args, limit=limit, log_path=log, postgres=postgres)
        self.patient = False

    def decide(self, outcome: Outcome) -> str | None:
        """The mutant's status once known, else None: more tests must run (`batches` holds them)."""
        self.seconds, self.ran, self.failed = self.seconds + outcome.seconds, self.ran + outcome.ran, outcome.failed
        state = status(outcome.exit_code, outcome.timed_out)
        failed = outcome.failed
        if state == "timeout" and failed in self.current and failed not in self.confirmed:
            # A loaded machine can slow a heavy test past its timeout. Run it again with more patience (a hang still
            # hangs), then the tests that were to follow it.
            self.confirmed.add(failed)
            rest = self.current[self.current.index(failed) + 1 :]
            self.batches[:0] = [[failed], rest] if rest else [[failed]]
            self.patient = True
            return None
        if state == "survived" and self.batches:
            return None  # the fastest tests missed it: now the rest
        return state


def execute(
    plan: list[tuple[Mutant, list[str]]],
    workspaces: list[Workspace],
    folder: Path,
    postgres: Any,
    durations: dict[str, float],
) -> list[dict[str, Any]]:
    """Test every mutant of the plan, `len(workspaces)` at a time; one record per mutant, in plan order."""
    records: dict[int, dict[str, Any]] = {}
    pending = list(enumerate(plan))
    running: dict[int, Job] = {}
    originals = {target.path: (ROOT / target.path).read_bytes() for target in MODULES.values()}
    while pending or running:
        for slot, workspace in enumerate(workspaces):
            if slot in running or not pending:
                continue
            index, (mutant, tests) = pending.pop(0)
            if not tests:
                records[index] = record(mutant, "uncovered", 0.0, 0)
                print(f"[{len(records)}/{len(plan)}] uncovered {mutant.path}:{mutant.line} {mutant.key}")
                continue
            workspace.write(mutant.path, mutant.apply(originals[mutant.path]))
            batches = [batch for batch in (tests[:FIRST_BATCH], tests[FIRST_BATCH:]) if batch]
            running[slot] = job = Job(index, mutant, batches)
            job.start(workspace, folder, postgres, durations)
        for slot, job in list(running.items()):
            outcome = job.child.poll() if job.child else None
            if outcome is None:
                continue
            state = job.decide(outcome)
            if state is None:
                job.start(workspaces[slot], folder, postgres, durations)
                continue
            del running[slot]
            workspaces[slot].write(job.mutant.path, originals[job.mutant.path])
            records[job.index] = {**record(job.mutant, state, job.seconds, job.ran), "failed": job.failed}
            print(f"[{len(records)}/{len(plan)}] {state:9} {job.mutant.path}:{job.mutant.line} {job.mutant.key}")
            if state == "error":
                print((folder / f"mutant-{job.index}.log").read_text()[-3000:])
        time.sleep(0.02)
    return [records[index] for index in sorted(records)]


def status(exit_code: int | None, timed_out: bool) -> str:
    """A mutant's status from its pytest run: 1 tests failed, 2 collection failed (the module broke on import)."""
    if exit_code is None:
        return "hung"
    if exit_code in (1, 2):
        return "timeout" if timed_out else "killed"
    return "survived" if exit_code == 0 else "error"


def record(mutant: Mutant, state: str, seconds: float, ran: int) -> dict[str, Any]:
    data = asdict(mutant)
    del data["start"], data["end"], data["inserted"], data["statement_line"]
    return {**data, "key": mutant.key, "status": state, "seconds": round(seconds, 2), "tests_run": ran}


def describe_run(names: list[str], jobs: int, sample: int | None, seconds: float) -> dict[str, Any]:
    return {
        "modules": names,
        "jobs": jobs,
        "sample": sample,
        "seconds": round(seconds),
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}",
    }


def load_explanations() -> dict[str, dict[str, str]]:
    """tools/mutation_survivors.toml: key → {verdict, reason}."""
    data = tomllib.loads(SURVIVORS.read_text(encoding="utf-8")) if SURVIVORS.exists() else {}
    return {entry["key"]: entry for entry in data.get("mutant", [])}


def _all(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for module in results["modules"].values() for r in module["mutants"]]


def scores(results: dict[str, Any], explained: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Per module: counts, and the share of non-equivalent mutants caught (the target: 95%)."""
    table = {}
    for name, module in results["modules"].items():
        records = module["mutants"]
        equivalent = [r for r in records if r["status"] not in KILLED and _verdict(r, explained) == "equivalent"]
        killed = [r for r in records if r["status"] in KILLED]
        counted = len(records) - len(equivalent)
        score = len(killed) / counted if counted else 1.0
        table[name] = {
            "path": module["path"],
            "mutants": len(records),
            "killed": len(killed),
            "timeouts": sum(r["status"] in ("timeout", "hung") for r in records),
            "equivalent": len(equivalent),
            "survived": counted - len(killed),
            "score": score,
            "met": score >= 0.95,
            "seconds": sum(r["seconds"] for r in records),
        }
    return table


def _verdict(record: dict[str, Any], explained: dict[str, dict[str, str]]) -> str | None:
    entry = explained.get(record["key"])
    return None if entry is None else entry["verdict"]


def splice(report: str, generated: str) -> str:
    """The report with its generated part replaced: what stands outside the markers is written by hand."""
    start, end = "<!-- mutate -->", "<!-- /mutate -->"
    if start not in report or end not in report:
        return f"# Mutation testing of the money-critical modules\n\n{start}\n{generated}\n{end}\n"
    head, _, rest = report.partition(start)
    return f"{head}{start}\n{generated}\n{end}{rest.partition(end)[2]}"


def render(results: dict[str, Any], explained: dict[str, dict[str, str]]) -> str:
    """The generated part of MUTATION.md."""
    run = results["last_run"]
    table = scores(results, explained)
    out = [
        "Produced by `make mutate` (`tools/mutate.py`, mutants from `tools/mutants.py`, survivors explained in",
        "`tools/mutation_survivors.toml`); not part of `make test`. Each mutant is one small change to one module",
        "(a flipped comparison, a changed number, a dropped conversion such as `Decimal(str(x))` → `Decimal(x)`, a",
        "deleted statement); the tests that run the changed line are run against it, fastest first, stopping at the",
        "first failure, each under a pytest-timeout of 5× its unmutated duration (at least 10 s; a test that times out",
        "is run again with 4× that before the mutant counts as hanging). Every mutant is tested (no sampling);",
        f"hypothesis is derandomized and `random` seeded with {SEED}, so runs are reproducible.",
        "",
        f"Last run: {run['at']} · {run['machine']} · {run['jobs']} at a time · modules {', '.join(run['modules'])}"
        f" · {run['seconds'] // 60} min {run['seconds'] % 60} s.",
        "",
        "Score: mutants killed (a test failed, or timed out) over mutants that are not equivalent. Target: 95%.",
        "Test time: the pytest runs of the module's mutants added up (they ran several at a time).",
        "",
        "| module | file | mutants | killed | of which timeouts | equivalent | survived | score | test time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in sorted(table.items(), key=lambda item: list(MODULES).index(item[0])):
        out.append(
            f"| {name} | `{row['path']}` | {row['mutants']} | {row['killed']} | {row['timeouts']} | "
            f"{row['equivalent']} | {row['survived']} | {row['score']:.1%} | {row['seconds'] / 60:.1f} min |"
        )
    out += ["", "## Survivors", "", "Each with its file:line, the change, and why no test kills it.", ""]
    for name, module in results["modules"].items():
        survivors = [r for r in module["mutants"] if r["status"] not in KILLED]
        if not survivors:
            continue
        out += [f"### {name}", ""]
        for r in survivors:
            entry = explained.get(r["key"], {"verdict": "UNEXPLAINED", "reason": "no explanation filed"})
            where = f"`{r['path']}:{r['line']}` {r['qualname']}"
            change = f"`{r['original']}` → `{r['replacement']}`"
            note = "" if r["status"] == "survived" else f" ({r['status']})"
            out.append(f"- {where}: {change}{note} — **{entry['verdict']}**: {entry['reason']}")
        out.append("")
    slow = [r for r in _all(results) if r["status"] in ("timeout", "hung")]
    if slow:
        out += ["## Mutants that hang", "", "Stopped by the per-test timeout and counted as killed:", ""]
        out += [f"- `{r['path']}:{r['line']}` `{r['original']}` → `{r['replacement']}`: {r['status']} "
                f"after {r['seconds']:.0f} s ({r['failed']})" for r in slow]  # fmt: skip
        out.append("")
    keys = {r["key"] for r in _all(results)}
    stale = sorted(key for key in explained if key not in keys)
    if stale:
        out += ["## Explanations that match no mutant", "", *(f"- `{key}`" for key in stale), ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())

"""The `#>` check of the docs' examples (tests/markdown_output.py) fails when a print's output is not shown."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).parent

MATCHES = """\
# A page

```python
total = 0
for n in [1, 2]:
    total += n
    print("adding", n)
    #> adding 1
    #> adding 2
print(
    total,
    "done",
)
#> 3 done
print()
#>

def show(value: object) -> None:
    print(f"value: {value}")
    #> value: 3

show(3)
for word in ["one", "two"]:
    print(word, end=" ")
print("three")
#> one two three
print("a line too wide for the page " * 3)
#> a line too wide for the page a line too wide for the page a line too wide for the
#> page
print("to stderr", file=__import__("sys").stderr)
```
"""


def run(pytester: pytest.Pytester, page: str, *args: str) -> pytest.RunResult:
    pytester.syspathinsert(TESTS)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makefile(".md", page=page)
    # -p no:recording as in pyproject: its module-scoped autouse fixture finds no module around a fence
    return pytester.runpytest(
        "-p", "markdown_output", "--markdown-docs", "-p", "no:recording", "-p", "no:cacheprovider", *args
    )


def test_a_fence_that_prints_what_it_shows_passes(pytester: pytest.Pytester) -> None:
    run(pytester, MATCHES).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("old", "new", "diff"),
    [
        ("    #> adding 2\n", "    #> adding 3\n", ["-adding 3", "+adding 2"]),  # a line differs
        ("#> 3 done\n", "", ["+3 done"]),  # a print with nothing shown
        ("#> 3 done\n", "#> 3 done\n#> 4\n", ["-4"]),  # more shown than printed
        ("show(3)\n", "", ["-value: 3"]),  # shown, but nothing printed
    ],
)
def test_a_fence_whose_output_differs_fails_with_a_diff(
    pytester: pytest.Pytester, old: str, new: str, diff: list[str]
) -> None:
    assert old in MATCHES
    result = run(pytester, MATCHES.replace(old, new, 1))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*what the example prints differs from its #> lines*", "*page.md, the print*"])
    for line in diff:
        result.stdout.fnmatch_lines([f"*{line}"])


def test_the_update_mode_rewrites_the_shown_lines(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = MATCHES.replace("    #> adding 2\n", "").replace("#> 3 done\n", "#> 4\n#> 5\n").replace("#>\n", "")
    monkeypatch.setenv("LLMCLIENT_UPDATE_DOCS", "1")
    run(pytester, wrong).assert_outcomes(passed=1)
    assert (pytester.path / "page.md").read_text().strip() == MATCHES.strip()
    monkeypatch.delenv("LLMCLIENT_UPDATE_DOCS")
    run(pytester, MATCHES).assert_outcomes(passed=1)


def test_a_continuation_fence_checks_only_its_own_prints(pytester: pytest.Pytester) -> None:
    page = "```python\nx = 2\nprint(x)\n#> 2\n```\n\n```python continuation\nprint(x * 2)\n#> 4\n```\n"
    run(pytester, page).assert_outcomes(passed=2)
    run(pytester, page.replace("#> 4", "#> 5")).assert_outcomes(passed=1, failed=1)


def test_an_example_that_raises_fails_as_before(pytester: pytest.Pytester) -> None:
    result = run(pytester, '```python\nprint("a")\n#> a\nraise ValueError("boom")\n```\n')
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ValueError: boom*"])

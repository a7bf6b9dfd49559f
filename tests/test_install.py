"""The install a newcomer does, for real: build the sdist and the wheel, check their metadata, install the wheel into a
fresh venv with no extras, and run the README's first example and quickstart's counting example there, unchanged,
with every warning an error. Needs PyPI (or pip's cache) for the dependencies, nothing else."""

from __future__ import annotations

import ast
import email
import email.message
import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(600)  # a cold pip cache downloads the core's dependencies (about 30 MB)

# Runs a fence as pytest-markdown-docs does: its body at the top level, `await` allowed.
RUNNER = """
import ast, asyncio, sys
with open(sys.argv[1], encoding="utf-8") as file:
    source = file.read()
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if asyncio.iscoroutine(result):
    asyncio.run(result)
print("ran", sys.argv[1].rsplit("/", 1)[-1])
"""


def python_fences(page: Path) -> list[str]:
    """The ```python fences of a page, in order (those marked `notest` left out)."""
    return re.findall(r"^```python\n(.*?)^```$", page.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)


def readme_first_example() -> str:
    return python_fences(ROOT / "README.md")[0]


def quickstart_counting_example() -> str:
    (fence,) = [code for code in python_fences(ROOT / "docs" / "quickstart.md") if "count_tokens(" in code]
    return fence


def test_the_examples_run_here_are_the_pages_own() -> None:
    assert "Capital of France?" in readme_first_example()
    assert '"cl100k_base"' in quickstart_counting_example() and "count.exact" in quickstart_counting_example()
    for fence in (readme_first_example(), quickstart_counting_example()):
        compile(fence, "<fence>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel `python -m build` makes from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    print(f"build: {time.perf_counter() - started:.1f} s")
    (sdist,) = out.glob("llmclient-*.tar.gz")
    (wheel,) = out.glob("llmclient-*.whl")
    return sdist, wheel


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


def test_the_wheel_says_what_it_is_and_what_it_needs(built: tuple[Path, Path]) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    metadata = wheel_metadata(built[1])
    assert metadata["Metadata-Version"] >= "2.1"
    assert (metadata["Name"], metadata["Version"]) == (project["name"], project["version"])
    assert metadata["Summary"] == project["description"]
    assert metadata["Requires-Python"] == project["requires-python"]
    assert metadata["License-Expression"] == project["license"]
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert (
        metadata.get_payload(decode=True).decode("utf-8").strip()
        == (ROOT / "README.md").read_text(encoding="utf-8").strip()
    )
    from packaging.requirements import Requirement

    required = {Requirement(r) for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r}
    assert required == {Requirement(d) for d in project["dependencies"]}
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert extras == set(project["optional-dependencies"])


def test_the_wheel_and_the_sdist_carry_the_data_files(built: tuple[Path, Path]) -> None:
    sdist, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert (
            archive.read("llmclient-0.1.0.dist-info/entry_points.txt").decode().count("llmclient = llmclient.cli:main")
        )
    data = {
        "llmclient/py.typed",
        "llmclient/tokens/data/o200k_base.tokens.xz",
        "llmclient/tokens/data/cl100k_base.tokens.xz",
    }
    assert data <= names
    assert "llmclient/tokens/data/LICENSE-tiktoken" in names
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {f"src/{name}" for name in data} | {"pyproject.toml", "README.md"} <= members


def test_a_fresh_venv_with_the_wheel_alone_runs_the_readme_and_the_quickstart_count_and_so_does_a_git_install(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(built[1])],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
        env=env,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    print(f"venv + pip install: {time.perf_counter() - started:.1f} s")
    (tmp_path / "runner.py").write_text(RUNNER, encoding="utf-8")
    (tmp_path / "readme.py").write_text(readme_first_example(), encoding="utf-8")
    (tmp_path / "quickstart_count.py").write_text(quickstart_counting_example(), encoding="utf-8")
    for script in ("readme.py", "quickstart_count.py"):
        done = subprocess.run(
            [str(python), "-W", "error", str(tmp_path / "runner.py"), str(tmp_path / script)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,  # not the checkout: `import llmclient` must find the installed wheel
            env=env,
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, f"ran {script}\n", "")
    where = subprocess.run(
        [str(python), "-c", "import llmclient; print(llmclient.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=env,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)
    cli = subprocess.run(
        [str(venv / "bin" / "llmclient"), "count", "-m", "openai/gpt-4o", "Hello, world!"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert (cli.returncode, cli.stdout, cli.stderr) == (0, "4 tokens (exact, o200k_base)\n", "")
    # The other command install.md gives: straight from the repository's git URL (here, this checkout's).
    started = time.perf_counter()
    from_git = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--force-reinstall",
         "--no-deps", f"llmclient @ git+file://localhost{ROOT}"],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert from_git.returncode == 0, from_git.stderr[-3000:]
    print(f"pip install from git: {time.perf_counter() - started:.1f} s")
    origin = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.distribution('llmclient').read_text(NAME))"
         .replace("NAME", repr("direct_url.json"))],
        capture_output=True, text=True, check=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert '"vcs": "git"' in origin.stdout.replace('":"', '": "')
    again = subprocess.run(
        [str(python), "-W", "error", str(tmp_path / "runner.py"), str(tmp_path / "quickstart_count.py")],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert (again.returncode, again.stdout, again.stderr) == (0, "ran quickstart_count.py\n", "")

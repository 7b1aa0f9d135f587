"""Every code block of README.md and docs/*.md runs, as written, in a fresh directory.

A document's ``python`` blocks run in order in one interpreter (later blocks build on
earlier ones); a block whose first line is ``# file: NAME`` is written to NAME instead
(a module that later blocks and commands import). Then its ``sh`` blocks run in order
as one bash script (``set -euo pipefail``), ``clew`` on the PATH. Blocks without a
language (messages, layouts) are text. docs/cli.md is generated from the CLI and checked by tests/cli.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "cli.md")]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)

# Blocks not run here, each with the reason (matched by their first line).
NOT_RUN = {
    "./scripts/demo     # sets up .venv and runs the main job: the support-agent demo on embedded SQLite": (
        "the two commands: scripts/check runs this suite (it cannot run itself); scripts/demo is `clew demo`, "
        "run from a built wheel by tests/test_wheel.py"
    ),
    "pip install 'clew[ui]'": "the inspector is a server that runs until stopped: tests/web/test_browser.py runs it",
    "pip install -e '.[bench]'   # LangGraph, its SQLite and PostgreSQL savers, matplotlib": (
        "the benchmark: minutes of load; `python -m bench --quick` is run by bench's own check"
    ),
}

RUNNER = """
import pathlib, sys
blocks = sys.argv[1:]
namespace = {"__name__": "__main__"}
for i, path in enumerate(blocks):
    source = pathlib.Path(path).read_text()
    exec(compile(source, f"{sys.argv[0]} block {i}", "exec"), namespace)
"""


def blocks(doc: Path) -> list[tuple[str, str]]:
    """A document's code blocks to run: (language, code)."""
    return [(lang, body) for lang, body in FENCE.findall(doc.read_text()) if body.splitlines()[0] not in NOT_RUN]


def test_every_code_block_has_a_known_language() -> None:
    for doc in DOCS:
        for lang, _ in FENCE.findall(doc.read_text()):
            assert lang in ("python", "sh"), f"{doc.name}: a ```{lang} block: run it here or make it text"


WITH_CODE = [d for d in DOCS if blocks(d)]


def test_docs_with_code_include_the_operating_guide() -> None:
    assert {d.name for d in WITH_CODE} >= {"README.md", "codec.md", "runtime.md", "langgraph.md", "operating.md"}


@pytest.mark.parametrize("doc", WITH_CODE, ids=[d.name for d in WITH_CODE])
def test_doc_code_runs(doc: Path, tmp_path: Path) -> None:
    found = blocks(doc)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEW_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "120"
    env["PYTHONPATH"] = str(tmp_path)
    scripts = []
    for n, (lang, body) in enumerate(found):
        if lang != "python":
            continue
        first = body.splitlines()[0]
        if first.startswith("# file: "):
            (tmp_path / first.removeprefix("# file: ").strip()).write_text(body)
            continue
        path = tmp_path / f"_block_{n}.py"
        path.write_text(body)
        scripts.append(str(path))
    if scripts:
        done = subprocess.run(
            [sys.executable, "-c", RUNNER, *scripts], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{doc.name}: python blocks failed:\n{done.stdout}\n{done.stderr}"
    shell = "\n".join(body for lang, body in found if lang == "sh")
    if shell:
        done = subprocess.run(
            ["bash", "-euxo", "pipefail", "-c", shell],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{doc.name}: sh blocks failed:\n{done.stdout}\n{done.stderr}"

"""`clew check-compat module:agent` for a user's CI: exit 0 when every checkpoint loads, 1 with a report."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import clew
from clew.cli import main

AGENT_MODULE = """
import os
from typing import Any

import clew

agent = clew.Agent("notes", state=dict, store=clew.open("memory://"), schema_version={version})

@agent.step(start=True)
def ask(state: dict[str, Any], ctx: clew.Context) -> None:
    ctx.interrupt("?")
{upcaster}
"""

UPCASTER = """
@agent.upcaster(from_version=1)
def v1(fields: dict[str, Any]) -> dict[str, Any]:
    return {{"body": fields.pop("text"), **fields}}
"""


def write_agent(tmp_path: Path, name: str, version: int, upcaster: bool) -> str:
    src = AGENT_MODULE.format(version=version, upcaster=UPCASTER.format() if upcaster else "")
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(src))
    return f"{name}:agent"


def test_check_compat_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "runs.db"
    with clew.open(f"sqlite:///{db}") as store:
        old = clew.Agent("notes", state=dict, store=store, schema_version=1)

        @old.step(start=True)
        def ask(state: dict[str, object], ctx: clew.Context) -> None:
            ctx.interrupt("?")

        old.start({"text": "hi"}, run_id="n1")
    monkeypatch.syspath_prepend(str(tmp_path))
    good = write_agent(tmp_path, "notes_good", 2, upcaster=True)
    assert main(["check-compat", good, "--db", str(db)]) == 0
    assert "OK (2 checkpoints in 1 runs)" in capsys.readouterr().out

    bad = write_agent(tmp_path, "notes_bad", 2, upcaster=False)
    assert main(["check-compat", bad, "--db", str(db), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["checkpoints"] == 2
    assert {p["error"] for p in report["problems"]} == {"NoUpcasterError"}
    assert "from_version=1" in report["problems"][0]["message"]

    assert main(["check-compat", "notes_good", "--db", str(db)]) == 2
    assert "MODULE:AGENT" in capsys.readouterr().err

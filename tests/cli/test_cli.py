"""The CLI against a real SQLite store holding a real run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

import clew
from clew.cli import main

ROOT = Path(__file__).resolve().parents[2]


class Note(BaseModel):
    text: str = ""
    words: list[str] = []


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "cli.db")
    with clew.open(f"sqlite:///{path}") as store:
        agent = clew.Agent("writer", state=Note, store=store)

        @agent.step(start=True)
        def write(state: Note, ctx: clew.Context) -> str | None:
            state.words.append(ctx.call("word", lambda: "hello"))
            return "review" if len(state.words) < 2 else None

        @agent.step
        def review(state: Note, ctx: clew.Context) -> str:
            state.text = ctx.interrupt({"ok?": state.words})
            return "write"

        run = agent.start(Note(), run_id="note-1")
        assert run.status == "paused"
        agent.resume("note-1", answer="fine", actor="ann")
        first = agent.history("note-1")[-2]
        agent.fork(first.checkpoint_id, branch="alt", update={"text": "alt"}, actor="bob", reason="try")
    return path


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_runs_json(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli("runs", "--db", db, "--json", capsys=capsys)
    assert code == 0
    runs = json.loads(out)["runs"]
    assert [r["run_id"] for r in runs] == ["note-1"]
    assert runs[0]["agent"] == "writer"


def test_history_and_show(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli("history", "note-1", "--db", db, "--json", capsys=capsys)
    assert code == 0
    history = json.loads(out)
    assert [c["kind"] for c in history][-1] == "start"
    assert {c["kind"] for c in history} >= {"step", "interrupt", "start"}
    code, out, _ = run_cli("show", "note-1", "--db", db, "--json", capsys=capsys)
    shown = json.loads(out)
    assert shown["state"]["text"] == "fine"
    assert shown["state"]["words"] == ["hello", "hello"]


def test_compare_branches(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli("compare", "note-1", "main", "alt", "--db", db, "--json", capsys=capsys)
    assert code == 0
    diffs = {d["field"]: d for d in json.loads(out)["diffs"]}
    assert diffs["text"]["main"] == "fine"
    assert diffs["text"]["alt"] != "fine"
    # main went on to write a second word; alt forked before it
    assert diffs["words"] == {"field": "words", "change": "list", "removed": ["hello"], "added": []}


def test_export_is_json_lines_ending_with_verify(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli("export", "note-1", "--db", db, capsys=capsys)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["type"] == "run"
    assert lines[-1] == {**lines[-1], "type": "verify", "ok": True}
    kinds = {j["kind"] for line in lines if line["type"] == "checkpoint" for j in line["journal"]}
    assert {"call.intent", "call.outcome", "answer", "fork"} <= kinds


def test_verify_ok_then_tampered(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("verify", "note-1", "--db", db, capsys=capsys)[0] == 0
    conn = sqlite3.connect(db)
    conn.execute("UPDATE clew_checkpoints SET kind = 'step' WHERE kind = 'interrupt'")
    conn.commit()
    conn.close()
    code, out, _ = run_cli("verify", "note-1", "--db", db, capsys=capsys)
    assert code == 5
    assert "FAILED" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["history", "nope"], 3, "run 'nope' not found"),
        (["runs", "--store", "ftp://x"], 2, "unknown store scheme"),
        (["runs", "--db", "/no/such/dir/x.db"], 3, "no database at /no/such/dir/x.db"),
        (["runs", "--store", "sqlite:////no/such/dir/x.db"], 3, "no database at"),
        (["runs", "--status", "canceled"], 2, "'canceled'"),
        (["runs", "--limit", "-1"], 2, "limit"),
        (["runs", "--since", "yesterday"], 2, "--since"),
        (["runs", "--label", "novalue"], 2, "KEY=VALUE"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(
    db: str, args: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if "--db" not in args and "--store" not in args:
        args = [*args, "--db", db]
    got, _, err = run_cli(*args, capsys=capsys)
    assert got == code
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("module", ["clew", "clew.cli"])
def test_python_dash_m_runs(db: str, module: str) -> None:
    proc = subprocess.run([sys.executable, "-m", module, "runs", "--db", db], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "note-1" in proc.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli("--version", capsys=capsys)
    assert code == 0
    assert out.strip() == f"clew {clew.__version__}"


def test_a_read_never_creates_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli("runs", "--db", str(tmp_path / "typo.db"), capsys=capsys)
    assert code == 3 and "no database at" in err
    assert not (tmp_path / "typo.db").exists()


def test_reference_is_current() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"])
    assert proc.returncode == 0, "docs/cli.md is stale: run python scripts/cli_reference.py"


def test_usage_errors_exit_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli("history", capsys=capsys)  # the run id is missing
    assert code == 2
    assert "Missing argument" in err

"""What the CLI prints: stored text as it is (brackets, quotes, emoji), whole ids, strict JSON, ISO times."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import clew
from clew.cli import main

TRICKY = [
    "[/INST] answer",
    "[bold]not bold[/bold]",
    "[red]",
    "pip install 'clew[postgres]'",
    'she said "hi" \\ ok',
    "emoji 🙂🚀 and 中文",
    "[link=https://example.com]x[/link]",
]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    got = capsys.readouterr()
    return code, got.out, got.err


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "tricky.db")
    with clew.open(f"sqlite:///{path}") as store:
        for rid in ("tenant[/a]", "user[admin]"):
            run = store.create_run(rid, agent="agent[x]", labels={"team": "[ops]"})
            first = store.commit(
                run.run_id,
                state={"notes": TRICKY[:3], "text": TRICKY[3], "score": math.nan, "big": math.inf},
                parent=None,
                journal=[("tool", {"out": TRICKY[0]})],
            )
            store.fork(run.run_id, checkpoint_id=first.checkpoint_id, branch="alt[1]")
            store.commit(
                run.run_id,
                state={"notes": [TRICKY[1], *TRICKY[4:]], "text": TRICKY[5], "score": 1.0, "big": math.inf},
                parent=first.checkpoint_id,
                branch="alt[1]",
            )
    return path


@pytest.mark.parametrize("rid", ["tenant[/a]", "user[admin]"])
def test_tables_print_stored_text_verbatim(db: str, rid: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "history", rid, "--db", db)
    assert code == 0, err
    assert rid in out
    code, out, err = run_cli(capsys, "show", rid, "--db", db)
    assert code == 0, err
    for text in TRICKY[:3]:
        assert json.dumps(text, ensure_ascii=False) in out
    assert "[/INST] answer" in out  # the journal line
    code, out, err = run_cli(capsys, "compare", rid, "main", "alt[1]", "--db", db)
    assert code == 0, err
    assert "alt[1]" in out and "[red]" in out and "🙂" in out
    code, out, err = run_cli(capsys, "runs", "--db", db)
    assert code == 0, err
    assert rid in out and "agent[x]" in out and "team=[ops]" in out
    code, out, err = run_cli(capsys, "branches", rid, "--db", db)
    assert code == 0, err
    assert "alt[1]" in out


def test_errors_print_names_verbatim(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "history", "user[nobody]", "--db", db)
    assert code == 3
    assert "user[nobody]" in err
    code, _, err = run_cli(capsys, "--import", "clew[postgres]", "runs", "--db", db)
    assert code == 2
    assert "clew[postgres]" in err


def test_json_is_strict_with_iso_times(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    def strict(text: str) -> object:
        def refuse(name: str) -> object:
            raise AssertionError(f"bare {name} in JSON output")

        return json.loads(text, parse_constant=refuse)

    code, out, _ = run_cli(capsys, "show", "tenant[/a]", "--db", db, "--json")
    assert code == 0
    shown = strict(out)
    assert shown["state"]["score"] == "NaN" and shown["state"]["big"] == "Infinity"
    assert shown["state"]["notes"] == TRICKY[:3]
    when = dt.datetime.fromisoformat(shown["created_at"])
    assert when.utcoffset() == dt.timedelta(0)
    code, out, _ = run_cli(capsys, "export", "tenant[/a]", "--db", db)
    assert code == 0
    lines = [strict(line) for line in out.splitlines()]
    assert dt.datetime.fromisoformat(lines[0]["created_at"]).tzinfo is not None
    states = [line["state"] for line in lines if line["type"] == "checkpoint"]
    assert {s["score"] for s in states} == {"NaN", 1.0}
    code, out, _ = run_cli(capsys, "runs", "--db", db, "--json")
    runs = strict(out)["runs"]
    assert all(dt.datetime.fromisoformat(r["updated_at"]).tzinfo for r in runs)


def test_compare_lists_show_added_and_removed_items(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "compare", "tenant[/a]", "main", "alt[1]", "--db", db, "--json")
    assert code == 0
    notes = next(d for d in json.loads(out)["diffs"] if d["field"] == "notes")
    assert notes["change"] == "list"
    assert notes["removed"] == [TRICKY[0], TRICKY[2]]
    assert notes["added"] == TRICKY[4:]


def test_ids_are_never_cut(tmp_path: Path) -> None:
    path = tmp_path / "ids.db"
    with clew.open(f"sqlite:///{path}") as store:
        rid = store.create_run(agent="a-very-long-agent-name-" * 4, labels={"k": "v" * 80}).run_id
        store.commit(rid, state={"x": "y" * 300}, parent=None)
    env = {"COLUMNS": "40", "PATH": "/usr/bin:/bin"}
    for args in (["runs"], ["history", rid], ["branches", rid]):
        piped = subprocess.run(
            [sys.executable, "-m", "clew", *args, "--db", str(path)], capture_output=True, text=True, env=env
        )
        assert piped.returncode == 0, piped.stderr
        assert rid in piped.stdout, piped.stdout
    forced = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from clew.cli._common import out; out.is_terminal and None;"
            "from rich.console import Console; import clew.cli._common as c; c.out = Console(markup=False, width=40, "
            "force_terminal=True); from clew.cli import main; sys.exit(main(sys.argv[1:]))",
            "runs",
            "--db",
            str(path),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert forced.returncode == 0, forced.stderr
    assert rid in forced.stdout.replace("\x1b", "")  # a narrow terminal: other columns fold, the id stays whole


def test_id_prefixes(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "history", "tenant", "--db", db, "--json")
    assert code == 0
    cps = json.loads(out)
    assert cps and all(c["run_id"] == "tenant[/a]" for c in cps)
    cid = cps[0]["checkpoint_id"]
    code, out, _ = run_cli(capsys, "show", "ten", cid[:-4], "--db", db, "--json")
    assert code == 0 and json.loads(out)["checkpoint_id"] == cid
    code, _, err = run_cli(capsys, "history", "u", "--db", db)
    assert code == 0
    with clew.open(f"sqlite:///{db}") as store:
        store.create_run("user[other]", agent="x")
    code, _, err = run_cli(capsys, "history", "user[", "--db", db)
    assert code == 2 and "ambiguous" in err and "user[admin]" in err


def test_runs_filters_and_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "many.db")
    with clew.open(f"sqlite:///{path}") as store:
        ids = [
            store.create_run(
                agent="a" if i % 2 else "b", labels={"n": str(i % 3)}, status="failed" if i < 3 else "running"
            ).run_id
            for i in range(7)
        ]
    _, out, _ = run_cli(capsys, "runs", "--db", path, "--status", "failed", "--json")
    assert {r["run_id"] for r in json.loads(out)["runs"]} == set(ids[:3])
    _, out, _ = run_cli(capsys, "runs", "--db", path, "--agent", "a", "--label", "n=1", "--json")
    assert [r["run_id"] for r in json.loads(out)["runs"]] == [ids[1]]
    seen, cursor = [], None
    while True:
        args = ["runs", "--db", path, "--limit", "3", "--json"] + (["--cursor", cursor] if cursor else [])
        page = json.loads(run_cli(capsys, *args)[1])
        seen += [r["run_id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    _, out, _ = run_cli(capsys, "runs", "--db", path, "--since", "1h", "--json")
    assert len(json.loads(out)["runs"]) == 7
    _, out, _ = run_cli(capsys, "runs", "--db", path, "--until", "1h", "--json")
    assert json.loads(out)["runs"] == []
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    _, out, _ = run_cli(capsys, "runs", "--db", path, "--until", future, "--json")
    assert len(json.loads(out)["runs"]) == 7

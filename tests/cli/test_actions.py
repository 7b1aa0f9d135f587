"""The CLI acts: resume with an answer, fork with an update, edit, delete, recover, on a real SQLite file."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

import clew
from clew.cli import main
from tests.cli import reviewagent

REF = "tests.cli.reviewagent:agent"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    got = capsys.readouterr()
    return code, got.out, got.err


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'review.db'}"
    monkeypatch.setenv("REVIEW_URL", url)
    return url


@pytest.fixture
def paused(url: str) -> str:
    with clew.open(url) as store:
        run = reviewagent.make(store).start(reviewagent.Draft(text="hello [world]"), run_id="draft-1")
        assert run.status == "paused"
        return run.run_id


def test_resume_with_a_json_answer(url: str, paused: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys, "resume", REF, "draft", "--answer", '{"approved": true, "reviewer": "ann"}', "--actor", "ann", "--json"
    )
    assert code == 0, err
    done = json.loads(out)
    assert done["status"] == "completed" and done["state"]["approved_by"] == "ann" and done["state"]["sent"]
    with clew.open(url) as store:
        [answer] = [e for e in store.list_journal(paused) if e.kind == "answer"]
        assert answer.data["actor"] == "ann"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--answer", "{approved: yes}"], 2, "--answer: not JSON"),
        ([], 1, "resume it with answer"),
        (["--answer", "1"], 3, "not found"),
    ],
)
def test_resume_mistakes(
    url: str, paused: str, args: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = "nope" if code == 3 else paused
    got, _, err = run_cli(capsys, "resume", REF, rid, *args)
    assert got == code and message in err and "Traceback" not in err
    with clew.open(url) as store:
        assert store.get_run(paused).status == "paused"  # nothing changed
        assert store.load_state(paused, store.get_branch(paused).head)["text"] == "hello [world] (plain)"


def test_fork_with_an_update_actor_and_reason(url: str, paused: str, capsys: pytest.CaptureFixture[str]) -> None:
    with clew.open(url) as store:
        start = store.list_checkpoints(paused).items[-1]
    code, out, err = run_cli(
        capsys,
        "fork", REF, paused, start.checkpoint_id[:-3],
        "--branch", "warm", "--update", '{"tone": "warm"}', "--actor", "bob", "--reason", "too cold", "--json",
    )  # fmt: skip
    assert code == 0, err
    forked = json.loads(out)
    assert forked["status"] == "paused" and forked["branch"] == "warm"
    assert forked["state"]["text"] == "hello [world] (warm)"
    with clew.open(url) as store:
        [fork] = [e for e in store.list_journal(paused) if e.kind == "fork"]
        assert fork.data["actor"] == "bob" and fork.data["reason"] == "too cold" and fork.data["fields"] == ["tone"]
    code, _, err = run_cli(capsys, "fork", REF, paused, start.checkpoint_id, "--branch", "x", "--update", "[1]")
    assert code == 2 and "--update takes a JSON object" in err
    code, out, err = run_cli(capsys, "fork", REF, paused, start.checkpoint_id, "--branch", "later [2]", "--no-run")
    assert code == 0, err
    # the command it prints runs as printed in a shell: quoted where a name needs it
    command = shlex.split(out.split("run it with: ", 1)[1])
    assert command == ["clew", "resume", REF, paused, "--branch", "later [2]"]
    code, _, err = run_cli(capsys, *command[1:])
    assert code == 0, err
    with clew.open(url) as store:
        assert store.get_branch(paused, "later [2]").status == "paused"  # ran to the review question again


def test_edit_then_resume(url: str, paused: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "edit", REF, paused, "--update", '{"text": "edited 🙂"}', "--actor", "cy")
    assert code == 0, err
    code, _, err = run_cli(capsys, "edit", REF, paused, "--update", '{"nope": 1}')
    assert code == 1 and "nope" in err
    code, out, _ = run_cli(capsys, "resume", REF, paused, "--answer", '{"approved": false}', "--json")
    assert code == 0
    assert json.loads(out)["state"]["text"] == "edited 🙂"


def test_delete_needs_yes_when_not_interactive(url: str, paused: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = url.removeprefix("sqlite:///")
    code, _, err = run_cli(capsys, "delete", paused, "--db", db)
    assert code == 2 and "--yes" in err
    code, out, err = run_cli(capsys, "delete", paused, "--db", db, "--yes")
    assert code == 0, err
    assert "deleted run draft-1" in out
    with clew.open(url) as store:
        assert store.list_runs().items == []


def test_recover_runs_queued_work(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with clew.open(url) as store:
        rid = reviewagent.make(store).enqueue(reviewagent.Draft(text="queued"))
    code, out, err = run_cli(capsys, "recover", REF, "--json")
    assert code == 0, err
    assert json.loads(out) == [{"run_id": rid, "status": "paused", "branch": "main", "error": None}]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("tests.cli.reviewagent", "MODULE:AGENT"),
        ("tests.cli.nosuchmodule:agent", "cannot import"),
        ("tests.cli.reviewagent:nope", "no attribute"),
        ("tests.cli.reviewagent:Draft", "not a clew.Agent"),
    ],
)
def test_bad_agent_references(url: str, ref: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "recover", ref)
    assert code == 2 and message in err


def test_cancel_fences_and_journals(url: str, paused: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = url.removeprefix("sqlite:///")
    code, out, err = run_cli(capsys, "cancel", "draft", "--db", db, "--actor", "bob", "--reason", "withdrawn", "--json")
    assert code == 0, err
    [main] = json.loads(out)
    assert main["name"] == "main" and main["status"] == "cancelled"
    with clew.open(url) as store:
        assert store.get_run(paused).status == "cancelled"
        [entry] = [e for e in store.list_journal(paused) if e.kind == "cancel"]
        assert entry.data["actor"] == "bob" and entry.data["reason"] == "withdrawn"
    code, _, err = run_cli(capsys, "resume", REF, paused, "--answer", '{"approved": true}')
    assert code == 1 and "cancelled" in err
    code, out, _ = run_cli(capsys, "branches", paused, "--db", db)
    assert "cancelled" in out and "withdrawn" in out


def test_runs_by_branch_status(url: str, paused: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = url.removeprefix("sqlite:///")
    code, out, _ = run_cli(capsys, "runs", "--db", db, "--branch-status", "paused", "--json")
    assert code == 0 and [r["run_id"] for r in json.loads(out)["runs"]] == [paused]
    code, out, _ = run_cli(capsys, "runs", "--db", db, "--branch-status", "failed", "--json")
    assert json.loads(out)["runs"] == []

"""Code and schema versions in every checkpoint; resuming under another version warns or refuses."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import clew
from clew.errors import CodeVersionError


def versioned(store: clew.Store, version: str, **options: Any) -> clew.Agent[dict[str, Any]]:
    agent = clew.Agent("v", state=dict, store=store, version=version, **options)

    @agent.step(start=True)
    def ask(state: dict[str, Any], ctx: clew.Context) -> str:
        state["answer"] = ctx.interrupt("?")
        return "finish"

    @agent.step
    def finish(state: dict[str, Any], ctx: clew.Context) -> None:
        state["finished_by"] = version

    return agent


def test_every_checkpoint_records_code_and_schema_version(store: clew.Store) -> None:
    agent = versioned(store, "1.4.2", schema_version=5)
    run = agent.start({}, run_id="r")
    agent.edit("r", update={"note": "x"}, actor="a")
    agent.resume("r", answer=42)
    agent.fork(run.checkpoint_id, branch="b", run=False)
    seen = set()
    for branch in ("main", "b"):
        for c in agent.history("r", branch=branch):
            seen.add(c.kind)
            assert c.metadata["code_version"] == "1.4.2"
            assert c.metadata["schema_version"] == 5
            assert c.metadata["state_type"] == "builtins:dict"
    assert seen == {"start", "interrupt", "edit", "step"}


def test_same_version_resumes_quietly(store: clew.Store) -> None:
    versioned(store, "1").start({}, run_id="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert versioned(store, "1").resume("r", answer=1).status == "completed"


def test_another_version_warns_and_continues(store: clew.Store) -> None:
    versioned(store, "1").start({}, run_id="r")
    with pytest.warns(clew.CodeVersionWarning, match="'1'.*'2'"):
        run = versioned(store, "2").resume("r", answer=1)
    assert run.status == "completed" and run.state == {"answer": 1, "finished_by": "2"}
    assert [c.metadata["code_version"] for c in store.list_checkpoints("r").items] == ["2", "2", "1", "1"]


def test_another_version_refuses_when_configured(store: clew.Store) -> None:
    first = versioned(store, "1").start({}, run_id="r")
    with pytest.raises(CodeVersionError, match="'1'"):
        versioned(store, "2", on_version_mismatch="refuse").resume("r", answer=1)
    assert store.list_checkpoints("r").items[0].checkpoint_id == first.checkpoint_id  # nothing new
    assert store.get_branch("r").lease_owner is None
    assert versioned(store, "1").state_at(first.checkpoint_id) == {}


def test_a_refused_resume_changes_nothing(store: clew.Store) -> None:
    versioned(store, "1").start({}, run_id="r")
    with pytest.raises(CodeVersionError):
        versioned(store, "2", on_version_mismatch="refuse").resume("r", answer="refused")
    assert store.get_run("r").status == "paused"
    assert store.list_journal("r", pending_on="main") == []
    # the right code then resumes it with the real answer
    run = versioned(store, "1", on_version_mismatch="refuse").resume("r", answer=7)
    assert run.status == "completed" and run.state["answer"] == 7

"""Fork, replay and time travel from any checkpoint of any branch; history and state_at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import clew
from clew.errors import ConflictError, InvalidStateError, NotFoundError
from tests.runtime import _proc
from tests.runtime.conftest import Tools, assert_chain, kinds


def counter_agent(store: clew.Store, tools: Tools, *, state: type = dict) -> clew.Agent[Any]:
    """add -> add -> add (3 times) -> report; each step calls a tool."""
    agent = clew.Agent("count", state=state, store=store)

    @agent.step(start=True)
    def add(s: dict[str, Any], ctx: clew.Context) -> str:
        tools.ctx = ctx
        s["log"].append(ctx.call("add", tools.tool("add"), s["n"]))
        s["n"] += s["step"]
        return "add" if len(s["log"]) < 3 else "report"

    @agent.step
    def report(s: dict[str, Any], ctx: clew.Context) -> None:
        s["report"] = f"{s['n']} after {len(s['log'])} adds on {ctx.branch}"

    return agent


def test_fork_with_an_update_runs_a_new_branch(store: clew.Store, tools: Tools) -> None:
    agent = counter_agent(store, tools)
    main = agent.start({"n": 0, "step": 1, "log": []}, run_id="r")
    assert main.state["report"] == "3 after 3 adds on main"
    history = agent.history("r")
    first_add = history[-2]  # after the first add
    assert first_add.metadata["step"] == "add" and agent.state_at(first_add.checkpoint_id)["n"] == 1

    forked = agent.fork(first_add.checkpoint_id, branch="big", update={"step": 10}, actor="bob", reason="bigger steps")
    assert isinstance(forked, clew.Run)
    assert forked.status == "completed" and forked.branch == "big"
    assert forked.state["report"] == "21 after 3 adds on big"
    big = agent.history("r", branch="big")
    assert_chain(big)
    assert kinds(big) == [
        ("start", None),
        ("step", "add"),
        ("fork", None),
        ("step", "add"),
        ("step", "add"),
        ("step", "report"),
    ]
    fork_ckpt = big[-3]
    assert fork_ckpt.parent_id == first_add.checkpoint_id
    assert fork_ckpt.branch == "big"
    meta = fork_ckpt.metadata
    assert (meta["forked_from"], meta["actor"], meta["reason"]) == (first_add.checkpoint_id, "bob", "bigger steps")
    assert meta["next"] == "add"
    [entry] = store.list_journal("r", checkpoint_id=fork_ckpt.checkpoint_id)
    assert entry.kind == "fork" and entry.data["fields"] == ["step"] and entry.data["actor"] == "bob"
    # main is untouched
    assert agent.history("r") == history
    assert agent.state_at(history[0].checkpoint_id) == main.state
    assert {b.name for b in store.list_branches("r")} == {"main", "big"}
    assert store.get_branch("r", "big").base == first_add.checkpoint_id
    assert store.verify("r").ok


def test_replay_is_a_fork_without_update(store: clew.Store, tools: Tools) -> None:
    agent = counter_agent(store, tools)
    main = agent.start({"n": 0, "step": 1, "log": []}, run_id="r")
    start = agent.history("r")[-1]
    before = tools.count("add")
    replayed = agent.replay(start.checkpoint_id, branch="again")
    assert replayed.status == "completed"
    assert replayed.state == {**main.state, "report": "3 after 3 adds on again"}
    assert tools.count("add") == before + 3  # a replay runs the steps again, with new keys
    assert len(set(tools.keys("add"))) == 6
    fork_ckpt = agent.history("r", branch="again")[-2]
    assert fork_ckpt.kind == "fork" and fork_ckpt.metadata["forked_from"] == start.checkpoint_id
    assert store.list_journal("r", checkpoint_id=fork_ckpt.checkpoint_id)[0].data["fields"] == []


def test_time_travel_from_any_checkpoint_of_any_branch(store: clew.Store, tools: Tools) -> None:
    agent = counter_agent(store, tools)
    agent.start({"n": 0, "step": 1, "log": []}, run_id="r")
    main = agent.history("r")
    agent.fork(main[-3].checkpoint_id, branch="b1", update={"step": 100})
    b1 = agent.history("r", branch="b1")
    # a branch of a branch, from a checkpoint only b1 has
    only_b1 = b1[1]
    assert only_b1.branch == "b1"
    run = agent.fork(only_b1.checkpoint_id, branch="b2", update={"step": 1000}, run_id="r")
    assert isinstance(run, clew.Run)
    b2 = agent.history("r", branch="b2")
    assert_chain(b2)
    assert [c.branch for c in reversed(b2)] == ["main"] * 3 + ["b1"] * 2 + ["b2"] * 2
    assert run.state["n"] == 102  # only_b1 is b1's last add: nothing is left to run but the report
    assert run.state["report"].endswith("on b2")
    # from every checkpoint of every branch, state_at agrees with a fresh fork of it
    for branch in ("main", "b1", "b2"):
        for i, c in enumerate(agent.history("r", branch=branch)):
            if c.branch != branch:
                continue
            at = agent.state_at(c.checkpoint_id)
            name = f"tt-{branch}-{i}"
            assert agent.fork(c.checkpoint_id, branch=name, run=False) == "r"
            assert agent.state_at(store.get_branch("r", name).head) == at  # type: ignore[arg-type]
    # forking the final checkpoint completes at once
    done = agent.fork(main[0].checkpoint_id, branch="end")
    assert (
        isinstance(done, clew.Run)
        and done.status == "completed"
        and done.state == agent.state_at(main[0].checkpoint_id)
    )
    assert store.verify("r").ok


def test_fork_without_running_then_resume_the_branch(store: clew.Store, tools: Tools) -> None:
    agent = counter_agent(store, tools)
    agent.start({"n": 0, "step": 1, "log": []}, run_id="r")
    start = agent.history("r")[-1]
    rid = agent.fork(start.checkpoint_id, branch="later", update={"n": 50}, run=False)
    assert rid == "r"
    record = store.get_branch("r", "later")
    assert (record.status, record.lease_owner, record.epoch) == ("running", None, 1)  # released, not run
    assert [k for k, _ in kinds(agent.history("r", branch="later"))] == ["start", "fork"]
    run = agent.resume("r", branch="later")
    assert run.status == "completed" and run.state["n"] == 53


def test_fork_of_a_paused_checkpoint_is_paused_on_the_new_branch(store: clew.Store, tmp_path: Path) -> None:
    agent = _proc.order_agent(store, tmp_path / "effects")
    paused = agent.start(_proc.Order(item="lamp"), run_id="o")
    assert paused.status == "paused"
    rid = agent.fork(paused.checkpoint_id, branch="alt", update={"item": "desk"}, actor="bob", run=False)
    assert rid == "o"
    assert store.get_run("o").status == "paused"
    head = agent.history("o", branch="alt")[0]
    assert head.kind == "edit" and head.metadata["interrupt"] == paused.interrupt
    run = agent.resume("o", answer={"by": "carol"}, actor="carol", branch="alt")
    assert run.status == "completed" and run.branch == "alt"
    assert run.state.item == "desk" and run.state.approved_by == "carol"
    # main is still paused at its question
    assert agent.history("o")[0].checkpoint_id == paused.checkpoint_id


@pytest.mark.parametrize("kind", ["pydantic", "dataclass"])
def test_fork_updates_are_validated_against_the_state_type(store: clew.Store, kind: str) -> None:
    import dataclasses

    from tests.runtime.test_agent import Notes, NotesDC

    agent = clew.Agent("typed", state=Notes if kind == "pydantic" else NotesDC, store=store)

    @agent.step(start=True)
    def one(state: Any, ctx: clew.Context) -> None:
        state.notes.append("x")

    run = agent.start(Notes(topic="t") if kind == "pydantic" else NotesDC(topic="t"))
    before = store.list_branches(run.run_id)
    with pytest.raises(InvalidStateError, match="summary"):
        agent.fork(run.checkpoint_id, branch="bad", update={"summary": "not a dict"})
    with pytest.raises(InvalidStateError, match="nope"):
        agent.fork(run.checkpoint_id, branch="bad", update={"nope": 1})
    assert store.list_branches(run.run_id) == before  # nothing written
    ok = agent.fork(run.checkpoint_id, branch="good", update={"summary": {"n": 1}})
    assert isinstance(ok, clew.Run)
    assert ok.state.summary == {"n": 1} and ok.state.notes == ["x"]
    if kind == "dataclass":
        assert dataclasses.is_dataclass(ok.state)


def test_fork_errors(store: clew.Store, tools: Tools) -> None:
    agent = counter_agent(store, tools)
    run = agent.start({"n": 0, "step": 1, "log": []}, run_id="r")
    agent.fork(run.checkpoint_id, branch="taken", run=False)
    with pytest.raises(ConflictError, match="taken"):
        agent.fork(run.checkpoint_id, branch="taken")
    with pytest.raises(NotFoundError):
        agent.fork("no-such-checkpoint", branch="x")
    with pytest.raises(NotFoundError):
        agent.state_at("no-such-checkpoint")
    with pytest.raises(NotFoundError):
        agent.history("r", branch="no-such-branch")
    assert agent.state_at(run.checkpoint_id) == run.state

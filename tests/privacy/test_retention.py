"""Retention: old finished runs deleted, old checkpoints pruned, heads, forks, pauses and held runs kept."""

from __future__ import annotations

import time
from typing import Any

import pytest

import clew
from clew.errors import ConfigError, NotFoundError
from clew.store import HOLD_LABEL, Retention
from tests.helpers.raw import Raw


def counter(store: clew.Store, name: str = "count") -> clew.Agent[dict[str, Any]]:
    agent = clew.Agent(name, state=dict, store=store)

    @agent.step(start=True)
    def tick(state: dict[str, Any], ctx: clew.Context) -> str | None:
        state["n"] = state.get("n", 0) + 1
        state[f"blob{state['n']}"] = f"value {state['n']} " * 50
        if state["n"] == state["pause_at"]:
            state["answer"] = ctx.interrupt("go on?")
        return "tick" if state["n"] < state["stop"] else None

    return agent


def test_keep_last_prunes_old_content_and_keeps_the_chain(stores: Any) -> None:
    store = stores.open()
    agent = counter(store)
    agent.start({"stop": 10, "pause_at": -1}, run_id="r")
    history = agent.history("r")
    assert len(history) == 11
    fork_point = history[5].checkpoint_id
    agent.fork(fork_point, branch="b", update={"stop": 12})
    raw = Raw(stores, store)
    before = raw.counts("r")

    dry = store.gc([Retention(agent="count", keep_last=3)], dry_run=True)
    assert dry.dry_run and dry.checkpoints_pruned > 0
    assert raw.counts("r") == before  # nothing written

    report = store.gc([Retention(agent="count", keep_last=3)])
    assert report.checkpoints_pruned == dry.checkpoints_pruned and report.blobs_deleted == dry.blobs_deleted
    after = raw.counts("r")
    raw.close()
    assert after["blobs"] < before["blobs"] and after["checkpoints"] == before["checkpoints"]
    kept = {c.checkpoint_id for c in agent.history("r")[:3]} | {fork_point}
    for c in agent.history("r"):
        if c.checkpoint_id in kept:
            assert not c.metadata.get("pruned")
            store.load_state("r", c.checkpoint_id)
        else:
            assert c.metadata["pruned"] is True
            with pytest.raises(NotFoundError, match="pruned by a retention policy"):
                store.load_state("r", c.checkpoint_id)
    v = store.verify("r")
    assert v.ok, v.problems
    assert v.pruned == report.checkpoints_pruned
    # the branch still works: fork from a kept checkpoint, resume state intact
    head = store.get_branch("r", "b").head
    assert head is not None and store.load_state("r", head)["n"] == 12
    assert store.gc([Retention(agent="count", keep_last=3)]).checkpoints_pruned == 0  # idempotent


def test_a_paused_run_keeps_what_its_resume_needs(stores: Any) -> None:
    store = stores.open()
    agent = counter(store)
    paused = agent.start({"stop": 8, "pause_at": 6}, run_id="r")
    assert paused.status == "paused"
    store.gc([Retention(keep_last=1)])
    done = agent.resume("r", answer="yes")
    assert done.status == "completed" and done.state["n"] == 8 and done.state["answer"] == "yes"
    assert store.verify("r").ok


def test_max_age_deletes_finished_runs_only(stores: Any) -> None:
    store = stores.open()
    agent = counter(store)
    agent.start({"stop": 2, "pause_at": -1}, run_id="done")
    agent.start({"stop": 5, "pause_at": 1}, run_id="waiting")
    agent.start({"stop": 2, "pause_at": -1}, run_id="held", labels={HOLD_LABEL: "case 12"})
    time.sleep(0.05)
    report = store.gc([Retention(max_age=0.01)])
    assert [r.run_id for r in report.runs if r.deleted] == ["done"]
    assert "held" in report.held
    assert sorted(r.run_id for r in store.list_runs().items) == ["held", "waiting"]
    assert store.gc([Retention(max_age=3600)]).runs == ()


def test_policies_select_by_agent_and_label(stores: Any) -> None:
    store = stores.open()
    counter(store, "a").start({"stop": 6, "pause_at": -1}, run_id="a1", labels={"tier": "free"})
    counter(store, "a").start({"stop": 6, "pause_at": -1}, run_id="a2", labels={"tier": "paid"})
    counter(store, "b").start({"stop": 6, "pause_at": -1}, run_id="b1", labels={"tier": "free"})
    report = store.gc([Retention(agent="a", labels={"tier": "free"}, keep_last=2)])
    assert [r.run_id for r in report.runs] == ["a1"]


def test_bad_policies_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_age"):
        Retention()
    with pytest.raises(ConfigError, match="keep_last"):
        Retention(keep_last=0)


async def test_async_gc(stores: Any) -> None:
    if stores.backend == "memory":
        store = stores.open()
        counter(store).start({"stop": 5, "pause_at": -1}, run_id="r")
        assert store.gc([Retention(keep_last=2)]).checkpoints_pruned == 4
        return
    sync = stores.open()
    counter(sync).start({"stop": 5, "pause_at": -1}, run_id="r")
    astore = await clew.open_async(stores.url)
    try:
        report = await astore.gc([Retention(keep_last=2)])
        assert report.checkpoints_pruned == 4
        assert (await astore.verify("r")).ok
    finally:
        await astore.close()


def test_cli_gc(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from clew.cli import main

    db = tmp_path / "gc.db"
    with clew.open(f"sqlite:///{db}") as store:
        counter(store).start({"stop": 6, "pause_at": -1}, run_id="r", labels={"tier": "free"})
    assert main(["gc", "--db", str(db), "--keep-last", "2", "--label", "tier=free", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True and dry["checkpoints_pruned"] == 5
    assert main(["gc", "--db", str(db), "--keep-last", "2"]) == 0
    assert "5 checkpoints' content" in capsys.readouterr().out
    assert main(["gc", "--db", str(db), "--max-age", "0s"]) == 0
    assert "removed: 1 runs" in capsys.readouterr().out
    assert main(["gc", "--db", str(db), "--max-age", "soon"]) == 2

"""Each branch has its own status, lease and life; a run's status is derived from them."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import clew
from clew.errors import RunStatusError
from tests.conftest import StoreFactory


def approval_agent(store: clew.Store | clew.AsyncStore, **options: Any) -> clew.Agent[dict[str, Any]]:
    agent: clew.Agent[dict[str, Any]] = clew.Agent("approvals", state=dict, store=store, **options)

    @agent.step(start=True)
    def draft(state: dict[str, Any], ctx: clew.Context) -> str:
        state["draft"] = f"refund {state.get('amount', 10)}"
        return "approve"

    @agent.step
    def approve(state: dict[str, Any], ctx: clew.Context) -> None:
        state["approved_by"] = ctx.interrupt({"approve": state["draft"]})

    return agent


def test_a_paused_branch_lives_on_when_a_fork_completes(store: clew.Store) -> None:
    agent = approval_agent(store)
    paused = agent.start({"amount": 10}, run_id="r")
    assert paused.status == "paused"
    start = agent.history("r")[-1]
    alt = agent.fork(start.checkpoint_id, branch="alt", update={"amount": 20}, actor="bob", reason="bigger")
    assert isinstance(alt, clew.Run) and alt.status == "paused"
    done = agent.resume("r", answer="carol", branch="alt")
    assert (done.status, done.branch) == ("completed", "alt")
    assert {b.name: b.status for b in store.list_branches("r")} == {"main": "paused", "alt": "completed"}
    assert store.get_run("r").status == "paused"  # still waiting for a person on main
    assert [r.run_id for r in store.list_runs(status="paused")] == ["r"]
    assert [r.run_id for r in store.list_runs(branch_status="completed")] == ["r"]
    # Without a branch, resume takes the only one that can go on: main.
    main = agent.resume("r", answer="alice")
    assert (main.status, main.branch, main.state["approved_by"]) == ("completed", "main", "alice")
    assert store.get_run("r").status == "completed"
    assert store.verify("r").ok


def test_resume_without_a_branch_lists_the_candidates(store: clew.Store) -> None:
    agent = approval_agent(store)
    agent.start({}, run_id="r")
    start = agent.history("r")[-1]
    agent.fork(start.checkpoint_id, branch="alt")
    with pytest.raises(RunStatusError, match=r"2 branches.*main \(paused\).*alt \(paused\).*branch="):
        agent.resume("r", answer="x")
    assert {b.status for b in store.list_branches("r")} == {"paused"}  # nothing moved
    agent.resume("r", answer="x", branch="alt")
    agent.resume("r", answer="y")  # now only main waits
    assert store.get_run("r").status == "completed"
    with pytest.raises(RunStatusError, match=r"no paused branch|completed"):
        agent.resume("r", answer="z")


def test_two_workers_advance_two_branches_of_one_run_at_once(stores: StoreFactory) -> None:
    gate, inside = threading.Event(), threading.Barrier(3, timeout=20)
    stores_ab = [stores.open(), stores.open()]

    def build(store: clew.Store, worker: str) -> clew.Agent[dict[str, Any]]:
        agent: clew.Agent[dict[str, Any]] = clew.Agent("two", state=dict, store=store, worker_id=worker)

        @agent.step(start=True)
        def first(state: dict[str, Any], ctx: clew.Context) -> str:
            return "work"

        @agent.step
        def work(state: dict[str, Any], ctx: clew.Context) -> None:
            state["by"] = ctx.call("tool", lambda: worker)
            inside.wait()  # both workers are inside their step at the same time
            assert gate.wait(20)

        return agent

    a, b = build(stores_ab[0], "A"), build(stores_ab[1], "B")
    setup = stores.open()
    setup.create_run("r", agent="two", state={}, checkpoint_metadata={"next": "first"})
    start = setup.get_branch("r").head
    assert start is not None
    setup.fork("r", checkpoint_id=start, branch="alt", state={"alt": True}, metadata={"next": "work"})
    results: dict[str, Any] = {}

    def go(name: str, fn: Any) -> threading.Thread:
        t = threading.Thread(target=lambda: results.__setitem__(name, fn()))
        t.start()
        return t

    threads = [go("main", lambda: a.resume("r", branch="main")), go("alt", lambda: b.resume("r", branch="alt"))]
    inside.wait()
    leases = {br.name: br.lease_owner for br in setup.list_branches("r")}
    assert leases == {"main": "A", "alt": "B"}
    gate.set()
    for t in threads:
        t.join(30)
    assert (results["main"].state["by"], results["alt"].state["by"]) == ("A", "B")
    assert setup.get_run("r").status == "completed"
    assert setup.verify("r").ok


def test_cancel_a_branch_then_the_run(store: clew.Store) -> None:
    agent = approval_agent(store)
    agent.start({}, run_id="r")
    start = agent.history("r")[-1]
    agent.fork(start.checkpoint_id, branch="alt")
    [cancelled] = agent.cancel("r", "alt", actor="ops", reason="duplicate")
    assert (cancelled.name, cancelled.status, cancelled.lease_owner) == ("alt", "cancelled", None)
    assert cancelled.error is not None and cancelled.error["message"] == "duplicate"
    [entry] = [e for e in store.list_journal("r", pending_on="alt") if e.kind == "cancel"]
    assert entry.data == {"actor": "ops", "reason": "duplicate", "was": "paused"}
    assert store.get_run("r").status == "paused"  # main still waits
    with pytest.raises(RunStatusError, match="cancelled"):
        agent.resume("r", answer="x", branch="alt")
    with pytest.raises(RunStatusError, match="already cancelled"):
        agent.cancel("r", "alt")
    assert [b.name for b in agent.cancel("r", actor="ops")] == ["main"]  # every unfinished branch
    assert store.get_run("r").status == "cancelled"
    assert store.verify("r").ok


async def test_async_cancel_and_resume_per_branch(stores: StoreFactory) -> None:
    astore = await clew.open_async(stores.url)
    try:
        agent = approval_agent(astore)
        await agent.astart({}, run_id="r")
        start = (await agent.ahistory("r"))[-1]
        await agent.afork(start.checkpoint_id, branch="alt")
        await agent.acancel("r", "main", actor="ops")
        run = await agent.aresume("r", answer="alice")  # the only one left
        assert (run.branch, run.status) == ("alt", "completed")
        assert (await astore.get_run("r")).status == "completed"
    finally:
        await astore.close()

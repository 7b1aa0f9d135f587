"""Leases: a run executed by a live worker is locked; recover() finishes runs whose worker died."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import clew
from clew.errors import ConflictError, RunLockedError
from tests.conftest import StoreFactory
from tests.runtime import _proc
from tests.runtime.conftest import SimulatedCrash, kinds


def blocking_agent(
    store: clew.Store, gate: threading.Event, entered: threading.Event, **options: Any
) -> clew.Agent[dict[str, Any]]:
    agent = clew.Agent("slow", state=dict, store=store, **options)

    @agent.step(start=True)
    def work(state: dict[str, Any], ctx: clew.Context) -> str:
        state.setdefault("workers", []).append(options.get("worker_id"))
        if not entered.is_set():
            entered.set()
            assert gate.wait(10)
        return "finish"

    @agent.step
    def finish(state: dict[str, Any], ctx: clew.Context) -> None:
        state["done"] = True

    return agent


def in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    return t, out


def test_resuming_a_run_leased_by_a_live_worker_raises(stores: StoreFactory) -> None:
    gate, entered = threading.Event(), threading.Event()
    b_store = stores.open()
    a = blocking_agent(stores.open(), gate, entered, worker_id="A")
    b = blocking_agent(b_store, gate, entered, worker_id="B")
    t, out = in_thread(lambda: a.start({}, run_id="r"))
    try:
        assert entered.wait(10)
        record = b_store.get_branch("r")
        assert (record.status, record.lease_owner) == ("running", "A")
        with pytest.raises(RunLockedError, match="'A'"):
            b.resume("r")
        assert b.recover() == []
        # Another branch of the same run is free to go: each branch has its own lease.
        assert b.fork(b.history("r")[0].checkpoint_id, branch="x", run=False) == "r"
        assert b_store.get_branch("r", "x").status == "running"
        assert b_store.get_branch("r").lease_owner == "A"
    finally:
        gate.set()
        t.join(10)
    assert out["result"].status == "completed"
    assert out["result"].state == {"workers": ["A"], "done": True}
    assert stores.open().get_branch("r").lease_owner is None


def test_a_heartbeat_keeps_a_long_steps_lease(stores: StoreFactory) -> None:
    gate, entered = threading.Event(), threading.Event()
    b_store = stores.open()
    a = blocking_agent(stores.open(), gate, entered, worker_id="A", lease_ttl=0.5)
    b = blocking_agent(b_store, gate, entered, worker_id="B", lease_ttl=0.5)
    t, out = in_thread(lambda: a.start({}, run_id="r"))
    try:
        assert entered.wait(10)
        time.sleep(1.2)  # well past the ttl: only the heartbeat keeps the lease
        record = b_store.get_branch("r")
        assert record.lease_owner == "A" and record.lease_expires_at is not None
        assert record.lease_expires_at > time.time()
        assert b.recover() == []
        with pytest.raises(RunLockedError):
            b.resume("r")
    finally:
        gate.set()
        t.join(10)
    assert out["result"].status == "completed"


def test_recover_finishes_runs_whose_worker_died(stores: StoreFactory) -> None:
    store = stores.open()
    crash = {"on": True}
    done: list[str] = []

    def build(st: clew.Store, worker: str) -> clew.Agent[dict[str, Any]]:
        agent = clew.Agent("jobs", state=dict, store=st, worker_id=worker, lease_ttl=0.5)

        @agent.step(start=True)
        def first(state: dict[str, Any], ctx: clew.Context) -> str:
            state["first"] = ctx.call("one", lambda: "one")
            return "second"

        @agent.step
        def second(state: dict[str, Any], ctx: clew.Context) -> None:
            if crash["on"]:
                raise SimulatedCrash
            done.append(ctx.run_id)
            state["second"] = "two"

        return agent

    dead = build(store, "dead")
    for i in range(3):
        with pytest.raises(SimulatedCrash):
            dead.start({}, run_id=f"r{i}")
    for i in range(3):  # the dead worker's leases, as a killed process leaves them
        store.acquire_lease(f"r{i}", owner="dead", ttl=0.5)
    crash["on"] = False
    other = build(stores.open(), "survivor")
    assert other.recover() == []  # leases not expired yet
    time.sleep(0.55)
    first = other.recover(limit=2)
    rest = other.recover(limit=2)
    assert len(first) == 2 and len(rest) == 1
    assert other.recover() == []
    assert sorted(r.run_id for r in first + rest) == ["r0", "r1", "r2"]
    for r in first + rest:
        assert r.status == "completed" and r.state == {"first": "one", "second": "two"}
        assert kinds(other.history(r.run_id)) == [("start", None), ("step", "first"), ("step", "second")]
        record = store.get_branch(r.run_id)
        assert record.status == "completed" and record.lease_owner is None
    assert sorted(done) == ["r0", "r1", "r2"]


def test_recover_leaves_other_runs_alone(stores: StoreFactory) -> None:
    store = stores.open()
    agent = clew.Agent("mine", state=dict, store=store, worker_id="w")

    @agent.step(start=True)
    def go(state: dict[str, Any], ctx: clew.Context) -> None:
        if state.get("fail"):
            raise ValueError("failed")
        if state.get("ask"):
            ctx.interrupt("?")

    agent.start({}, run_id="completed")
    agent.start({"fail": True}, run_id="failed")
    agent.start({"ask": True}, run_id="paused")
    store.create_run("theirs", agent="someone-else", lease_owner="gone", lease_ttl=0.01)
    time.sleep(0.02)
    assert agent.recover() == []
    assert {r.run_id: r.status for r in store.list_runs()} == {
        "completed": "completed",
        "failed": "failed",
        "paused": "paused",
        "theirs": "running",
    }
    assert store.get_branch("theirs").lease_owner == "gone"  # another agent's run is never claimed


def test_a_worker_that_lost_its_lease_cannot_advance_the_run(stores: StoreFactory) -> None:
    gate, entered = threading.Event(), threading.Event()
    a_store = stores.open()
    a = blocking_agent(a_store, gate, entered, worker_id="A", lease_ttl=0.3)
    t, out = in_thread(lambda: a.start({}, run_id="r"))
    try:
        assert entered.wait(10)
        # A stalls (GC pause, network partition): its heartbeat stops, the lease expires.
        a_store.renew_lease = lambda *args, **kw: time.time() + 0.3  # type: ignore[method-assign]
        time.sleep(0.45)
        b = blocking_agent(stores.open(), gate, entered, worker_id="B", lease_ttl=5)
        [taken] = b.recover()
        assert taken.status == "completed" and taken.state == {"workers": ["B"], "done": True}
    finally:
        gate.set()
        t.join(10)
    assert isinstance(out.get("error"), ConflictError)  # A's commit failed the head's compare-and-set
    store = stores.open()
    history = b.history("r")
    assert kinds(history) == [("start", None), ("step", "work"), ("step", "finish")]
    assert store.get_run("r").status == "completed"
    assert store.verify("r").ok


def test_recover_after_a_real_crash(shared_stores: StoreFactory, tmp_path: Path) -> None:
    stores = shared_stores
    """A worker process is SIGKILLed during a non-idempotent call; another recovers the run."""
    log, hang = tmp_path / "effects", tmp_path / "hang"
    proc = _proc.child(
        f"""
        from tests.runtime._proc import Order, order_agent
        store = clew.open(URL)
        agent = order_agent(store, Path({str(log)!r}), hang=Path({str(hang)!r}), lease_ttl=1.0, worker_id="doomed")
        agent.start(Order(item="lamp"), run_id="o1")
        """,
        stores.url,
    )
    _proc.kill_when(proc, hang)
    store = stores.open()
    record = store.get_branch("o1")
    assert (record.status, record.lease_owner) == ("running", "doomed")
    agent = _proc.order_agent(store, log, reconcile=True, lease_ttl=1.0, worker_id="rescuer")
    with pytest.raises(RunLockedError):
        agent.resume("o1")
    deadline = time.monotonic() + 10
    recovered: list[clew.Run[Any]] = []
    while not recovered and time.monotonic() < deadline:
        recovered = agent.recover()
        time.sleep(0.05)
    [run] = recovered
    assert run.status == "paused" and run.interrupt == {"approve": "lamp"}
    assert run.state.charged == "receipt-lamp"
    assert len(_proc.effects(log)) == 1  # reconciled, not charged again
    (taken,) = [e for e in store.list_journal("o1") if e.kind == "lease"]  # why it resumed where it did
    assert taken.data["reason"] == "lease expired" and taken.data["epoch"] == record.epoch + 1
    assert (taken.data["owner"], taken.data["previous_owner"]) == ("rescuer", "doomed")
    assert taken.data["head"] == record.head and taken.checkpoint_id is not None  # sealed into the next checkpoint
    run = agent.resume("o1", answer={"by": "alice"})
    assert run.status == "completed"
    assert store.verify("o1").ok


def test_resuming_by_hand_after_a_real_crash_journals_the_takeover(shared_stores: StoreFactory, tmp_path: Path) -> None:
    log, hang = tmp_path / "effects", tmp_path / "hang"
    proc = _proc.child(
        f"""
        from tests.runtime._proc import Order, order_agent
        store = clew.open(URL)
        agent = order_agent(store, Path({str(log)!r}), hang=Path({str(hang)!r}), lease_ttl=1.0, worker_id="doomed")
        agent.start(Order(item="lamp"), run_id="o1")
        """,
        shared_stores.url,
    )
    _proc.kill_when(proc, hang)
    store = shared_stores.open()
    record = store.get_branch("o1")
    agent = _proc.order_agent(store, log, reconcile=True, lease_ttl=1.0, worker_id="operator")
    time.sleep(max(0.0, (record.lease_expires_at or 0) - time.time()) + 0.05)
    run = agent.resume("o1", actor="alice")  # by hand, as `clew resume` does
    assert run.status == "paused"
    (taken,) = [e.data for e in store.list_journal("o1") if e.kind == "lease"]
    assert taken["reason"] == "lease expired" and taken["actor"] == "alice"
    assert (taken["owner"], taken["previous_owner"], taken["epoch"]) == ("operator", "doomed", record.epoch + 1)
    assert taken["expired_at"] == record.lease_expires_at and taken["head"] == record.head
    assert store.verify("o1").ok


def test_runs_claimed_by_recover_stay_leased_until_run(stores: StoreFactory) -> None:
    store = stores.open()
    executions: list[tuple[str, str]] = []
    crash = {"on": True}

    def build(worker: str) -> clew.Agent[dict[str, Any]]:
        agent = clew.Agent("jobs", state=dict, store=stores.open(), worker_id=worker, lease_ttl=0.5)

        @agent.step(start=True)
        def go(state: dict[str, Any], ctx: clew.Context) -> None:
            if crash["on"]:
                raise SimulatedCrash
            executions.append((worker, ctx.run_id))
            time.sleep(0.6)
            state["by"] = worker

        return agent

    dead = build("dead")
    for i in range(3):
        with pytest.raises(SimulatedCrash):
            dead.start({}, run_id=f"r{i}")
        store.acquire_lease(f"r{i}", owner="dead", ttl=0.01)
    time.sleep(0.02)
    crash["on"] = False
    a, b = build("A"), build("B")
    t, out = in_thread(lambda: a.recover(limit=3))
    time.sleep(0.8)  # A claimed all three and is busy with the first two (r2's lease expired at 0.5 s)
    b_runs = b.recover(limit=3)
    t.join(10)
    ran = sorted(run_id for _, run_id in executions)
    assert ran == ["r0", "r1", "r2"], f"executions: {executions}; A: {out}; B: {b_runs}"

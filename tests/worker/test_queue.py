"""The queue: priority, a per-agent limit on running runs across processes, and aserve()."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import clew
from clew.runtime._worker import Worker
from tests.conftest import StoreFactory
from tests.worker import workagent
from tests.worker.test_worker import ROOT, start_worker, stop, wait_until


def claim_order() -> list[int]:
    """The runs in the order their first step ran (one at a time: the order they were claimed)."""
    return [int(name.split(":")[1]) for name, _ in workagent.effects() if name.startswith("first:")]


def lease_entries(store: clew.Store, run_id: str) -> list[dict[str, object]]:
    return [dict(e.data) for e in store.list_journal(run_id) if e.kind == "lease"]


def test_a_worker_takes_the_highest_priority_first_then_the_oldest(
    store: clew.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORK_DIR", str(tmp_path))
    agent = workagent.make(store)
    priorities = {0: 0, 1: 0, 2: 5, 3: -1, 4: 5, 5: 1}  # run n: its priority, enqueued in this order
    ids = {n: agent.enqueue(workagent.Job(n=n), priority=p) for n, p in priorities.items()}
    assert store.get_branch(ids[2]).priority == 5 and store.get_branch(ids[3]).priority == -1
    worker = Worker(agent, concurrency=1, poll=0.01)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_until(lambda: all(store.get_run(i).status == "completed" for i in ids.values()))
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert claim_order() == [2, 4, 5, 0, 1, 3]
    # the journal says the same: each run was claimed from the queue, once, by this worker
    for n, rid in ids.items():
        (entry,) = lease_entries(store, rid)
        assert entry["reason"] == "queued" and entry["owner"] == agent.worker_id and entry["epoch"] == 1, n
        assert store.verify(rid).ok


def test_priority_is_checked_and_a_fork_keeps_it(
    store: clew.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORK_DIR", str(tmp_path))
    agent = workagent.make(store)
    for bad in (1.5, "high", True, 2**63):
        with pytest.raises(clew.errors.ConfigError, match="priority"):
            agent.enqueue(workagent.Job(n=0), priority=bad)  # type: ignore[arg-type]
    assert store.list_runs(agent="jobs").items == []  # nothing half made
    rid = agent.enqueue(workagent.Job(n=1), priority=7)
    head = store.get_branch(rid).head
    assert head is not None
    agent.fork(head, branch="again", run=False)
    assert store.get_branch(rid, "again").priority == 7


def test_max_running_needs_an_agent_and_a_positive_int(store: clew.Store) -> None:
    with pytest.raises(clew.errors.ConfigError, match="agent"):
        store.claim_expired(owner="w", ttl=30, max_running=1)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(clew.errors.ConfigError, match="max_running"):
            store.claim_expired(owner="w", ttl=30, agent="jobs", max_running=bad)  # type: ignore[arg-type]
        with pytest.raises(clew.errors.ConfigError, match="max_running"):
            Worker(workagent.make(store), max_running=bad)  # type: ignore[arg-type]


def test_max_running_counts_live_leases_only(
    store: clew.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORK_DIR", str(tmp_path))
    agent = workagent.make(store)
    ids = [agent.enqueue(workagent.Job(n=i)) for i in range(4)]
    first = store.claim_expired(owner="a", ttl=30, limit=10, agent="jobs", max_running=2)
    assert len(first) == 2
    assert store.claim_expired(owner="b", ttl=30, limit=10, agent="jobs", max_running=2) == []
    assert len(store.claim_expired(owner="c", ttl=30, limit=10, agent="jobs", max_running=3)) == 1
    assert store.claim_expired(owner="d", ttl=30, limit=10, agent="other", max_running=1) == []  # no runs of its own
    store.release_lease(first[0].run_id, owner="a", epoch=first[0].epoch)  # one slot free again
    (again,) = store.claim_expired(owner="e", ttl=30, limit=10, agent="jobs", max_running=3)
    assert again.run_id == first[0].run_id  # the oldest claimable
    assert [e["reason"] for e in lease_entries(store, again.run_id)] == ["queued", "released"]
    assert {r.run_id for r in first} | {again.run_id} <= set(ids)


def live_leases(factory: StoreFactory) -> int:
    """The branches holding a live lease, counted in one statement: one snapshot of the store."""
    sql = "SELECT count(*) FROM clew_branches WHERE lease_owner IS NOT NULL AND lease_expires >= {}"
    if factory.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(factory.path)) as conn:
            return int(conn.execute(sql.format("?"), (time.time(),)).fetchone()[0])
    import psycopg

    with psycopg.connect(factory.pg, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{factory.schema}"')
        row = conn.execute(sql.format("%s"), (time.time(),)).fetchone()
        assert row is not None
        return int(row[0])


def test_max_running_holds_across_worker_processes(work: StoreFactory, tmp_path: Path) -> None:
    store = work.open()
    agent = workagent.make(store)
    # three processes of two threads: six slots, of which two may run at once
    workers = [start_worker("--concurrency", "2", "--max-running", "2", slow=0.3) for _ in range(3)]
    ids = [agent.enqueue(workagent.Job(n=i)) for i in range(12)]
    seen = 0
    try:
        while not all(store.get_run(i).status == "completed" for i in ids):
            live = live_leases(work)
            assert live <= 2
            seen = max(seen, live)
            time.sleep(0.01)
    finally:
        logs = [stop(w) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], logs
    # The steps themselves: a run is in progress from its first step's mark to its last's,
    # inside its lease; the shared effects file orders every mark of every process.
    running = peak = 0
    for name, _ in workagent.effects():
        running += name.startswith("first:") - name.startswith("last:")
        peak = max(peak, running)
    assert peak == 2 and seen == 2


async def all_completed(store: clew.AsyncStore, ids: list[str]) -> bool:
    return all([(await store.get_run(i)).status == "completed" for i in ids])


async def test_aserve_takes_queued_runs_by_priority_and_drains_when_cancelled(
    astore: clew.AsyncStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORK_DIR", str(tmp_path))
    agent = workagent.make(astore)  # plain steps: an async worker runs them in threads
    ids = [await agent.aenqueue(workagent.Job(n=n), priority=p) for n, p in ((0, 0), (1, 3), (2, 1))]
    task = asyncio.create_task(agent.aserve(concurrency=1, poll=0.01))
    while not await all_completed(astore, ids):
        await asyncio.sleep(0.02)
    assert claim_order() == [1, 2, 0]
    # a slow run, cancelled in the middle of its slow step: the step finishes and is kept
    monkeypatch.setenv("WORK_SLOW", "0.5")
    slow = await agent.aenqueue(workagent.Job(n=7))
    while not (tmp_path / "in-slow-7").exists():
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    main = await astore.get_branch(slow)
    assert main.status == "running" and main.lease_owner is None  # released for the next worker
    head = (await astore.list_checkpoints(slow)).items[0]
    assert head.metadata["step"] == "slow" and head.metadata["next"] == "last"
    assert agent._stop is None
    # the next worker goes on from there
    task = asyncio.create_task(agent.aserve(poll=0.01))
    while (await astore.get_run(slow)).status != "completed":
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [n for n, _ in workagent.effects()].count("slow-start:7") == 1
    reasons = [dict(e.data)["reason"] for e in await astore.list_journal(slow) if e.kind == "lease"]
    assert reasons == ["queued", "released"]
    assert (await astore.verify(slow)).ok


async def test_aserve_limits_running_runs_and_stops_on_stop(
    astore: clew.AsyncStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clew.runtime._worker import AsyncWorker

    monkeypatch.setenv("WORK_DIR", str(tmp_path))
    monkeypatch.setenv("WORK_SLOW", "0.1")
    agent = workagent.make(astore)
    ids = [await agent.aenqueue(workagent.Job(n=n)) for n in range(5)]
    worker = AsyncWorker(agent, concurrency=4, poll=0.01, max_running=2)
    task = asyncio.create_task(worker.run())
    while not await all_completed(astore, ids):
        await asyncio.sleep(0.02)
    worker.stop()
    await asyncio.wait_for(task, 60)  # returns: stopped, not cancelled
    assert worker.executed == 5
    running = peak = 0
    for name, _ in workagent.effects():
        running += name.startswith("first:") - name.startswith("last:")
        peak = max(peak, running)
    assert peak == 2


async def test_aserve_needs_an_async_store(store: clew.Store) -> None:
    with pytest.raises(clew.errors.ConfigError, match="async"):
        await workagent.make(store).aserve()


ASYNC_WORKER = """
import asyncio, logging, os, sys
import clew
from tests.worker import workagent

logging.basicConfig(stream=sys.stderr, level=logging.INFO)

async def main() -> None:
    store = await clew.open_async(os.environ["WORK_URL"])
    await workagent.make(store).aserve(poll=0.05)
    await store.close()

asyncio.run(main())
"""


def test_an_async_worker_process_drains_on_sigterm(work: StoreFactory, tmp_path: Path) -> None:
    store = work.open()
    rid = workagent.make(store).enqueue(workagent.Job(n=3))
    log = tmp_path / "async-worker.log"
    env = {**os.environ, "WORK_SLOW": "1.0", "PYTHONPATH": str(ROOT / "src")}
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", ASYNC_WORKER], cwd=ROOT, env=env, stderr=err)
    try:
        wait_until(lambda: (tmp_path / "in-slow-3").exists() or proc.poll() is not None)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)  # in the middle of the slow step
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "got SIGTERM" in text and "released for another worker" in text
    main = store.get_branch(rid)
    assert main.status == "running" and main.lease_owner is None  # free for the next worker at once
    assert store.list_checkpoints(rid).items[0].metadata["next"] == "last"  # the slow step finished and was kept
    assert [name for name, _ in workagent.effects()] == ["first:3", "slow-start:3", "slow-end:3"]

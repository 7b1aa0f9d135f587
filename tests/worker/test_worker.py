"""``clew worker``: real processes take queued runs, drain on SIGTERM, and recover after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import clew
from tests.conftest import StoreFactory
from tests.worker import workagent

ROOT = Path(__file__).resolve().parents[2]
REF = "tests.worker.workagent:agent"


def start_worker(*args: str, slow: float = 0.0, ttl: float = 30.0) -> subprocess.Popen[str]:
    """A ``clew worker`` process, once it serves; its log goes to a file (see :func:`stop`)."""
    env = {**os.environ, "WORK_SLOW": str(slow), "WORK_TTL": str(ttl), "PYTHONPATH": str(ROOT / "src")}
    log = Path(os.environ["WORK_DIR"]) / f"worker-{time.monotonic_ns()}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "clew", "worker", REF, "--poll", "0.05", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    proc.log = log  # type: ignore[attr-defined]
    wait_until(lambda: "serving agent" in log.read_text() or proc.poll() is not None)
    assert proc.poll() is None, log.read_text()
    return proc


def wait_until(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def statuses(store: clew.Store) -> Counter[str]:
    return Counter(r.status for r in store.list_runs(agent="jobs", limit=100))


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    """Signal a worker, wait for it to exit and return its log."""
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return str(proc.log.read_text())  # type: ignore[attr-defined]


def test_workers_take_queued_runs_and_stop_on_sigterm(work: StoreFactory) -> None:
    store = work.open()
    agent = workagent.make(store)
    ids = [agent.enqueue(workagent.Job(n=i), labels={"batch": "1"}) for i in range(8)]
    queued = store.get_branch(ids[0])
    assert queued.status == "running" and queued.lease_owner is None
    assert [c.kind for c in store.list_checkpoints(ids[0]).items] == ["start"]  # the state is stored at once
    workers = [start_worker("--concurrency", "2"), start_worker("--concurrency", "2")]
    wait_until(lambda: statuses(store)["completed"] == 8)
    logs = [stop(w) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    # every run exactly once: no step ran twice, whichever worker took it
    done = Counter(name for name, _ in workagent.effects())
    for i in range(8):
        assert done[f"first:{i}"] == done[f"slow-end:{i}"] == done[f"last:{i}"] == 1
    assert all(store.get_branch(i).lease_owner is None for i in ids)
    both = "\n".join(logs)
    assert "claimed by" in both and "completed" in both and "stopped after" in both


def test_sigterm_finishes_the_current_step_and_releases_the_lease(work: StoreFactory, tmp_path: Path) -> None:
    store = work.open()
    agent = workagent.make(store)
    rid = agent.enqueue(workagent.Job(n=1))
    worker = start_worker(slow=1.0)
    wait_until(lambda: (tmp_path / "in-slow-1").exists())
    err = stop(worker)  # in the middle of the slow step
    assert worker.returncode == 0, err
    main = store.get_branch(rid)
    assert main.status == "running" and main.lease_owner is None, err  # free for the next worker at once
    head = store.list_checkpoints(rid).items[0]
    assert head.metadata["step"] == "slow" and head.metadata["next"] == "last"  # the step finished and was kept
    assert "SIGTERM" in err and "released for another worker" in err
    names = [name for name, _ in workagent.effects()]
    assert names == ["first:1", "slow-start:1", "slow-end:1"]
    # the next worker goes on from there: nothing runs twice
    second = start_worker()
    wait_until(lambda: store.get_run(rid).status == "completed")
    stop(second)
    assert [name for name, _ in workagent.effects()] == [*names, "last:1"]


def test_after_sigkill_another_worker_recovers_the_run(work: StoreFactory, tmp_path: Path) -> None:
    store = work.open()
    agent = workagent.make(store)
    rid = agent.enqueue(workagent.Job(n=2))
    worker = start_worker(slow=30.0, ttl=1.0)
    wait_until(lambda: (tmp_path / "in-slow-2").exists())
    stop(worker, signal.SIGKILL)
    killed = store.get_branch(rid)
    assert killed.status == "running" and killed.lease_owner is not None  # the dead worker's lease, until it expires
    epoch = killed.epoch
    second = start_worker(ttl=1.0)
    wait_until(lambda: store.get_run(rid).status == "completed")
    err = stop(second)
    assert "claimed by" in err and f"(epoch {epoch + 1})" in err  # a takeover: the epoch grew, fencing the dead one
    names = [name for name, _ in workagent.effects()]
    assert names.count("first:2") == 1  # checkpointed before the kill: not run again
    assert names.count("slow-start:2") == 2 and names.count("slow-end:2") == 1 and names[-1] == "last:2"
    assert store.load_state(rid, store.get_branch(rid).head)["done"] == ["first", "slow", "last"]
    # The journal says why the run resumed where it did: taken from the queue by the first
    # worker, taken over by the second once the first one's lease expired.
    queued, takeover = [e for e in store.list_journal(rid) if e.kind == "lease"]
    assert queued.data["reason"] == "queued" and queued.data["epoch"] == epoch and queued.data["previous_owner"] is None
    assert takeover.data["reason"] == "lease expired" and takeover.data["epoch"] == epoch + 1
    assert takeover.data["previous_owner"] == killed.lease_owner == queued.data["owner"]
    assert takeover.data["owner"] != killed.lease_owner and takeover.data["expired_at"] == killed.lease_expires_at
    resumed_from = store.get_checkpoint(rid, takeover.data["head"])
    assert resumed_from.metadata["step"] == "first"  # the last checkpoint before the kill
    sealed_in = store.get_checkpoint(rid, takeover.checkpoint_id)
    assert sealed_in.parent_id == resumed_from.checkpoint_id and sealed_in.metadata["step"] == "slow"
    assert store.verify(rid).ok  # the entries are in the hash chain


def test_serve_in_process_until_stopped(store: clew.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from clew.runtime._worker import Worker

    monkeypatch.setenv("WORK_DIR", str(tmp_path))
    agent = workagent.make(store)
    worker = Worker(agent, concurrency=2, poll=0.01)
    thread = threading.Thread(target=worker.run)  # not the main thread: no signal handlers, stop() instead
    thread.start()
    ids = [agent.enqueue(workagent.Job(n=i)) for i in range(5)]
    wait_until(lambda: all(store.get_run(i).status == "completed" for i in ids))
    worker.stop()
    thread.join(timeout=60)
    assert not thread.is_alive() and worker.executed == 5
    assert agent._stop is None  # the agent runs normally again
    assert agent.start(workagent.Job(n=9)).status == "completed"


@pytest.mark.parametrize(("options", "message"), [({"concurrency": 0}, "concurrency"), ({"poll": 0}, "poll")])
def test_worker_options_are_checked(store: clew.Store, options: dict[str, float], message: str) -> None:
    from clew.runtime._worker import Worker

    with pytest.raises(clew.errors.ConfigError, match=message):
        Worker(workagent.make(store), **options)  # type: ignore[arg-type]


async def test_serve_needs_a_sync_store(astore: clew.AsyncStore) -> None:
    agent = clew.Agent("jobs", state=workagent.Job, store=astore)
    with pytest.raises(clew.errors.ConfigError, match="async store"):
        agent.serve()

"""Many processes on one store: one run resumed by two at once; many dead runs recovered by four workers."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import StoreFactory
from tests.crash import _scenario, _workers
from tests.crash.conftest import check_run, module, reference

pytestmark = pytest.mark.slow
RACES = 8


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_processes_resuming_one_run_exactly_one_advances(
    stores: StoreFactory, tmp_path: Path, backend: str
) -> None:
    store = stores.open()
    effects = tmp_path / "effects"
    effects.mkdir()
    runs = [f"race-{i}" for i in range(RACES)]
    for i, run_id in enumerate(runs):
        run = _workers.race_agent(store, effects).start({}, run_id=run_id)
        assert run.status == "paused"
        if i % 2:  # half of them: answered, then the worker died mid-step (lease expired)
            with pytest.raises(_workers.Crash):
                _workers.race_agent(store, effects, crash=True, worker="dead").resume(run_id, answer="yes")
            store.acquire_lease(run_id, owner="dead", ttl=0.01)
    time.sleep(0.02)
    go = tmp_path / "go"
    args = ["race", "--url", stores.url, "--effects", str(effects), "--runs", ",".join(runs), "--go", str(go)]
    procs = [module("_workers", *args) for _ in range(2)]
    for proc in procs:  # both are up, stores open, before the start time is set
        assert proc.stdout is not None
        assert proc.stdout.readline().decode().strip() == "ready", proc.communicate()[1].decode()
    (tmp_path / "go.tmp").write_text(str(time.time() + 0.2))
    (tmp_path / "go.tmp").rename(go)
    outcomes: dict[str, list[str]] = {r: [] for r in runs}
    messages: dict[str, list[str]] = {r: [] for r in runs}
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        for line in out.decode().splitlines():
            r = json.loads(line)
            outcomes[r["run_id"]].append(r.get("status") or r["error"])
            messages[r["run_id"]].append(r.get("message", ""))
    for i, (run_id, got) in enumerate(outcomes.items()):
        losers = {"RunLockedError", "ConflictError"}
        if i % 2 == 0:  # a paused run: a loser that looks after the winner took it finds it no longer paused
            losers.add("RunStatusError")
        assert sorted(got) in ([loser, "completed"] for loser in sorted(losers)), (run_id, got, messages[run_id])
        history = store.list_checkpoints(run_id).items
        steps = [c.metadata.get("step") for c in reversed(history) if c.kind == "step"]
        assert steps == ["ask", "slow"], (run_id, steps)
        assert store.get_run(run_id).status == "completed"
        per_key = _scenario.Effects(effects, run_id).per_key()
        assert list(per_key["charge"].values()) == [1], (run_id, per_key)
        assert store.verify(run_id).ok


@pytest.mark.parametrize("backend", ["postgres"])
def test_four_workers_recover_a_hundred_dead_runs(stores: StoreFactory, tmp_path: Path, backend: str) -> None:
    store = stores.open()
    ref = reference(tmp_path, interactive=False)
    effects = tmp_path / "effects"
    effects.mkdir()
    url = stores.url + "&pool_max=20"
    spawner = module(
        "_workers",
        "spawn",
        "--url",
        url,
        "--effects",
        str(effects),
        "--runs",
        "100",
        "--lease",
        "1.0",
        CLEW_CRASH_SERVICE_TIME="0.02",
    )
    deadline = time.monotonic() + 60
    while True:  # every run has its first checkpoint (see test_errors.py for why we wait for that)
        assert spawner.poll() is None, spawner.communicate()[1].decode()
        assert time.monotonic() < deadline, "runs never started"
        started = [r.run_id for r in store.list_runs(agent="crashy", limit=200).items]
        if len(started) == 100 and all(store.get_branch(r).head is not None for r in started):
            break
        time.sleep(0.05)
    time.sleep(random.uniform(0.05, 0.5))
    spawner.send_signal(signal.SIGKILL)
    spawner.communicate()
    statuses = Counter(r.status for r in store.list_runs(agent="crashy", limit=200).items)
    at = Counter(store.list_checkpoints(f"bulk-{i}", limit=1).items[0].metadata.get("step") for i in range(100))
    assert statuses["running"] >= 25, statuses  # many were mid-flight when their worker died

    workers = [
        module("_workers", "recover", "--url", url, "--effects", str(effects), "--worker", f"w{i}", "--lease", "2")
        for i in range(4)
    ]
    returned: Counter[str] = Counter()
    per_worker: Counter[str] = Counter()
    for i, proc in enumerate(workers):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        for line in out.decode().splitlines():
            r = json.loads(line)
            if "run_id" in r:
                assert r["status"] == "completed", r
                returned[r["run_id"]] += 1
                per_worker[f"w{i}"] += 1
    assert set(returned.values()) <= {1}, returned  # no run finished twice
    assert sum(returned.values()) == statuses["running"]  # every dead run finished by exactly one worker
    assert len(per_worker) >= 2, per_worker  # the work was shared
    print(f"{statuses['running']} of 100 runs were mid-flight, after steps {dict(at)}; recovered: {dict(per_worker)}")
    for i in range(100):
        check_run(store, effects, f"bulk-{i}", ref)

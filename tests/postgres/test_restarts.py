"""A server restarted, or stopped for 30 s, under 8 workers running agents.

A throwaway cluster of the test's own (``initdb`` + ``pg_ctl``) is restarted with
``pg_ctl restart -m fast`` (every connection is killed, in-flight transactions roll
back) or stopped and started 30 s later. Every run must complete exactly once, every
charge be made once, and ``verify`` hold.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import clew
from tests import _pg
from tests.conftest import IN_CI
from tests.postgres._worker import STEPS

WORKERS = 8
RUNS_PER_WORKER = 3
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster() -> Iterator[_pg.Cluster]:
    try:
        c = _pg.Cluster()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        if IN_CI:
            pytest.fail(f"a throwaway PostgreSQL cluster is required under CI=true: {exc}")
        pytest.skip(f"cannot start a throwaway cluster: {exc}")
    yield c
    c.remove()


def _checkpoints(store: clew.Store, run_ids: list[str]) -> int:
    total = 0
    for r in run_ids:
        try:
            total += len(store.list_checkpoints(r))
        except clew.errors.NotFoundError:
            pass
    return total


def _scenario(cluster: _pg.Cluster, tmp_path: Path, outage: str) -> None:
    # pool_timeout: a restart is waited out by the operation in flight; a 30 s outage is
    # not, so the workers see StoreUnavailableError, back off and recover afterwards.
    pool_timeout = 30 if outage == "restart" else 3
    url = f"{cluster.url}?pool_max=4&pool_timeout={pool_timeout}&connect_timeout=2"
    effects = tmp_path / "effects"
    effects.mkdir()
    run_ids = [f"run-{w}-{k}" for w in range(WORKERS) for k in range(RUNS_PER_WORKER)]
    with clew.open(url):  # migrate once before the workers race to
        pass
    logs = [open(tmp_path / f"w{w}.log", "w") for w in range(WORKERS)]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.postgres._worker",
                url,
                str(effects),
                f"w{w}",
                ",".join(run_ids[w * RUNS_PER_WORKER : (w + 1) * RUNS_PER_WORKER]),
                ",".join(run_ids),
            ],
            cwd=ROOT,
            stdout=logs[w],
            stderr=subprocess.STDOUT,
        )
        for w in range(WORKERS)
    ]
    try:
        with clew.open(f"{cluster.url}?pool_timeout=60") as watcher:
            deadline = time.monotonic() + 120
            while _checkpoints(watcher, run_ids) < len(run_ids) * 2 and time.monotonic() < deadline:
                time.sleep(0.1)  # every run has started and is under way
            before = _checkpoints(watcher, run_ids)
            assert before < len(run_ids) * (STEPS + 1), "the runs finished before the outage"
        if outage == "restart":
            cluster.restart("fast")
        else:
            cluster.stop("fast")
            time.sleep(30)
            cluster.start()
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for f in logs:
            f.close()
    outputs = "\n".join((tmp_path / f"w{w}.log").read_text() for w in range(WORKERS))
    assert all(p.returncode == 0 for p in procs), outputs[-5000:]
    if outage == "stop":
        assert "StoreUnavailableError: cannot reach PostgreSQL" in outputs  # seen, typed, backed off from

    duplicates = sorted(p.name for p in effects.iterdir() if p.name.startswith("DUPLICATE-"))
    assert duplicates == [], f"charges made twice: {duplicates}"
    charged = {p.name for p in effects.iterdir()}
    assert len(charged) == len(run_ids) * STEPS  # every charge made, once
    with clew.open(cluster.url) as store:
        for r in run_ids:
            run = store.get_run(r)
            assert run.status == "completed", r
            history = store.list_checkpoints(r)
            assert len(history) == STEPS + 1, (r, [c.kind for c in history])  # no step committed twice
            head = store.get_branch(r).head
            assert head is not None
            state = store.load_state(r, head)
            assert state["i"] == STEPS
            assert state["charges"] == [f"charged {r}/{i}" for i in range(STEPS)]
            outcomes = [e for e in store.list_journal(r) if e.kind == "call.outcome"]
            assert len(outcomes) == STEPS  # one recorded outcome per call
            assert store.verify(r).ok, store.verify(r)


@pytest.mark.slow
def test_a_restart_under_eight_workers_loses_and_repeats_nothing(cluster: _pg.Cluster, tmp_path: Path) -> None:
    _scenario(cluster, tmp_path, "restart")


@pytest.mark.slow
def test_a_30_second_outage_under_eight_workers_loses_and_repeats_nothing(cluster: _pg.Cluster, tmp_path: Path) -> None:
    _scenario(cluster, tmp_path, "stop")

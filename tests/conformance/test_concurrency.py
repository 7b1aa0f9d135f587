"""Concurrent writers: compare-and-set of branch heads, leases and their takeover."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import clew
from clew.errors import ConfigError, ConflictError, LeaseError, RunLockedError
from tests.helpers.procs import finish, publish, spawn, wait_for
from tests.helpers.raw import Raw

PROCESS_BACKENDS = ["sqlite", "postgres"]  # memory:// is private to one process


def _in_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` for i < n on n threads released together; results or exceptions."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


# -- compare-and-set -------------------------------------------------------------


def test_commit_on_a_stale_parent_conflicts(store: clew.Store, run_id: str) -> None:
    c1 = store.commit(run_id, state={"n": 1}, parent=None)
    c2 = store.commit(run_id, state={"n": 2}, parent=c1.checkpoint_id)
    for stale in (None, c1.checkpoint_id, "never-existed"):
        with pytest.raises(ConflictError, match="main"):
            store.commit(run_id, state={"n": 3}, parent=stale)
    assert store.get_branch(run_id).head == c2.checkpoint_id
    assert [c.checkpoint_id for c in store.list_checkpoints(run_id)] == [c2.checkpoint_id, c1.checkpoint_id]


def test_second_store_on_the_same_database_sees_the_head_move(stores: Any, store: clew.Store, run_id: str) -> None:
    other = stores.open()
    c1 = store.commit(run_id, state={"n": 1, "log": ["a"]}, parent=None)
    other.load_state(run_id, c1.checkpoint_id)  # both writers now remember c1
    c2 = store.commit(run_id, state={"n": 2, "log": ["a", "b"]}, parent=c1.checkpoint_id)
    with pytest.raises(ConflictError):
        other.commit(run_id, state={"n": 2, "log": ["a", "c"]}, parent=c1.checkpoint_id)
    c3 = other.commit(run_id, state={"n": 3, "log": ["a", "b", "c"]}, parent=c2.checkpoint_id)
    assert store.load_state(run_id, c3.checkpoint_id) == {"n": 3, "log": ["a", "b", "c"]}
    assert store.verify(run_id).ok


def test_compare_and_set_race_between_threads(stores: Any, store: clew.Store, run_id: str) -> None:
    writers: list[clew.Store] = [stores.open() for _ in range(6)]  # in memory, one shared store
    parent = store.commit(run_id, state={"round": -1}, parent=None).checkpoint_id
    for rnd in range(5):

        def write(i: int, rnd: int = rnd, parent: str = parent) -> clew.CheckpointRecord:
            state = {"round": rnd, "writer": i, "log": [i] * (rnd + 1)}
            return writers[i].commit(run_id, state=state, parent=parent)

        results = _in_threads(len(writers), write)
        won = [r for r in results if isinstance(r, clew.CheckpointRecord)]
        lost = [r for r in results if isinstance(r, ConflictError)]
        assert len(won) == 1 and len(lost) == len(writers) - 1, results
        parent = won[0].checkpoint_id
        assert store.get_branch(run_id).head == parent
    assert len(store.list_checkpoints(run_id)) == 6
    assert store.verify(run_id).ok


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_compare_and_set_race_between_processes(stores: Any, store: clew.Store, run_id: str, tmp_path: Path) -> None:
    rounds = 6
    where = tmp_path / "race"
    where.mkdir()
    parent = store.commit(run_id, state={"round": -1}, parent=None).checkpoint_id
    names = ["A", "B"]
    procs = [spawn("race", stores.url, run_id, str(where), name, str(rounds)) for name in names]
    for name in names:
        wait_for(where / f"ready-{name}")
    outcomes: Counter[str] = Counter()
    for r in range(rounds):
        publish(where / f"go-{r}", parent)
        results = {}
        for name in names:
            wait_for(where / f"result-{r}-{name}")
            results[name] = json.loads((where / f"result-{r}-{name}").read_text())
        winners = [n for n, res in results.items() if "won" in res]
        assert len(winners) == 1, results
        loser = next(n for n in names if n not in winners)
        assert results[loser]["lost"] == "ConflictError", results
        outcomes[winners[0]] += 1
        parent = results[winners[0]]["won"]
        assert store.get_branch(run_id).head == parent
        assert store.load_state(run_id, parent)["writer"] == winners[0]
    for proc in procs:
        finish(proc)
    history = list(store.list_checkpoints(run_id))
    assert len(history) == rounds + 1
    assert store.verify(run_id).ok


# -- leases ----------------------------------------------------------------------


def _wait_past(expiry: float) -> None:
    time.sleep(max(0.0, expiry - time.time()) + 0.05)


def test_lease_takeover_after_expiry(stores: Any, store: clew.Store, run_id: str) -> None:
    b = stores.open()  # worker B, on its own connection where there can be one
    ttl = 1.0  # long enough for the calls below on a loaded machine
    first = store.acquire_lease(run_id, owner="A", ttl=ttl)
    assert time.time() < first.expires_at <= time.time() + ttl
    assert store.get_branch(run_id).lease_owner == "A"
    again = store.acquire_lease(run_id, owner="A", ttl=ttl)  # the holder may take it again,
    assert again.epoch == first.epoch + 1  # fencing out whatever still runs under the first
    expires = again.expires_at
    with pytest.raises(RunLockedError, match="'A'"):
        b.acquire_lease(run_id, owner="B", ttl=10)
    with pytest.raises(LeaseError):
        b.renew_lease(run_id, owner="B", ttl=10)
    assert b.release_lease(run_id, owner="B") is False
    assert store.get_branch(run_id).lease_owner == "A"

    _wait_past(expires)
    taken = b.acquire_lease(run_id, owner="B", ttl=10)
    assert taken.epoch == again.epoch + 1
    b_expires = taken.expires_at
    main = store.get_branch(run_id)
    assert (main.lease_owner, main.lease_expires_at, main.epoch) == ("B", b_expires, taken.epoch)
    with pytest.raises(LeaseError, match="'A'"):
        store.renew_lease(run_id, owner="A", ttl=10)
    with pytest.raises(RunLockedError):
        store.acquire_lease(run_id, owner="A", ttl=10)
    assert store.release_lease(run_id, owner="A") is False
    assert b.renew_lease(run_id, owner="B", ttl=20).expires_at > b_expires
    assert b.release_lease(run_id, owner="B") is True
    assert store.get_branch(run_id).lease_owner is None
    store.acquire_lease(run_id, owner="A", ttl=10)
    assert store.get_branch(run_id).lease_owner == "A"


def test_create_run_with_a_lease(store: clew.Store) -> None:
    r = store.create_run(agent="a", lease_owner="A", lease_ttl=30)
    with pytest.raises(RunLockedError):
        store.acquire_lease(r.run_id, owner="B", ttl=30)
    lease = store.renew_lease(r.run_id, owner="A", ttl=30, epoch=1)  # a new run's first lease: epoch 1
    assert lease.expires_at > r.created_at + 29


def test_a_lease_without_ttl_is_refused_or_harmless(store: clew.Store, raw: Raw) -> None:
    """A lease that could never expire would wedge the run: refuse it, or treat it as expired."""
    before = raw.total_rows()
    try:
        r = store.create_run(agent="a", lease_owner="A")
    except ConfigError as exc:
        assert "lease_ttl" in str(exc)
        assert raw.total_rows() == before
        return
    store.acquire_lease(r.run_id, owner="B", ttl=30)  # as claim_expired would take it
    assert store.get_branch(r.run_id).lease_owner == "B"


def _expired_runs(store: clew.Store) -> tuple[list[str], list[str], list[str]]:
    """Runs to claim, and runs that must stay put (a live lease; a paused run)."""
    claimable = [store.create_run(agent="w", lease_owner="dead", lease_ttl=0.05).run_id for _ in range(20)]
    claimable += [store.create_run(agent="w").run_id for _ in range(4)]  # running, never leased
    alive = [store.create_run(agent="w", lease_owner="alive", lease_ttl=60).run_id for _ in range(3)]
    paused = [store.create_run(agent="w", status="paused", lease_owner="dead", lease_ttl=0.05).run_id for _ in range(3)]
    time.sleep(0.1)
    return claimable, alive, paused


def _check_claims(
    store: clew.Store, claims: dict[str, list[str]], claimable: list[str], alive: list[str], paused: list[str]
) -> None:
    every = [run for got in claims.values() for run in got]
    assert sorted(every) == sorted(claimable), "each expired run must go to exactly one claimer"
    for owner, got in claims.items():
        for run in got:
            rec = store.get_branch(run)
            assert rec.lease_owner == owner and rec.lease_expires_at > time.time() + 30  # type: ignore[operator]
    assert {store.get_branch(r).lease_owner for r in alive} == {"alive"}
    assert {store.get_branch(r).lease_owner for r in paused} == {"dead"}


def test_claim_expired_hands_each_run_to_one_of_many_threads(stores: Any, store: clew.Store) -> None:
    claimable, alive, paused = _expired_runs(store)
    workers = [stores.open() for _ in range(6)]

    def work(i: int) -> list[str]:
        got: list[str] = []
        while batch := workers[i].claim_expired(owner=f"w{i}", ttl=60, limit=3):
            assert len(batch) <= 3
            got.extend(r.run_id for r in batch)
        return got

    results = _in_threads(len(workers), work)
    assert not [r for r in results if isinstance(r, BaseException)], results
    _check_claims(store, {f"w{i}": got for i, got in enumerate(results)}, claimable, alive, paused)
    assert store.claim_expired(owner="late", ttl=60) == []
    # Other statuses are claimed only when asked for.
    assert sorted(r.run_id for r in store.claim_expired(owner="p", ttl=60, statuses=("paused",))) == sorted(paused)


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_claim_expired_hands_each_run_to_one_of_many_processes(stores: Any, store: clew.Store, tmp_path: Path) -> None:
    claimable, alive, paused = _expired_runs(store)
    names = ["p0", "p1", "p2"]
    procs = [spawn("claim", stores.url, str(tmp_path), name) for name in names]
    for name in names:
        wait_for(tmp_path / f"ready-{name}")
    for r in claimable[:4]:  # leases must have expired before the claimers start
        assert store.get_branch(r).lease_expires_at < time.time()  # type: ignore[operator]
    publish(tmp_path / "go")
    claims = {name: json.loads(finish(proc)) for name, proc in zip(names, procs, strict=True)}
    _check_claims(store, claims, claimable, alive, paused)


def test_claim_expired_respects_limit(store: clew.Store) -> None:
    for _ in range(5):
        store.create_run(agent="w")
    assert len(store.claim_expired(owner="x", ttl=60, limit=2)) == 2
    assert len(store.claim_expired(owner="y", ttl=60, limit=10)) == 3
    assert store.claim_expired(owner="z", ttl=60, limit=10) == []

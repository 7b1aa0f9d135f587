"""Statements per step: a commit is one transaction of a few statements, one batch.

A writer that committed the parent itself sends a commit as one batch (one round trip
on PostgreSQL); its head move checks that what it knew still holds, and when it does
not (another writer advanced the head, appended to the branch, or used journal
numbers), nothing is written and the commit runs again after reading the branch. These
tests count what a store sends (complexity, not time) and check each fallback.
"""

from __future__ import annotations

from typing import Any

import pytest

import clew
from clew.errors import ConflictError
from tests.helpers.statements import Counter


def _step(i: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return (
        {"role": "user", "content": f"question {i} " * 30},
        {"role": "assistant", "content": f"answer {i} " * 30},
        {"call_id": f"c{i}", "output": f"result {i} " * 100},
    )


def test_a_warm_commit_is_four_statements_in_one_batch(store: clew.Store, run_id: str) -> None:
    state: dict[str, Any] = {"messages": [], "tool_results": [], "i": 0}
    head = store.commit(run_id, state=state, parent=None).checkpoint_id
    counter = Counter(store)
    n = 20
    for i in range(n):
        u, a, t = _step(i)
        state["messages"] += [u, a]
        state["tool_results"].append(t)
        state["i"] = i + 1
        head = store.commit(run_id, state=state, parent=head).checkpoint_id
    assert counter.transactions == n
    assert counter.batches == n  # one round trip each on PostgreSQL
    assert counter.statements == 4 * n  # run counters, blobs, checkpoint row, head move
    store._ctx.forget(run_id)
    assert store.load_state(run_id, head) == state
    assert store.verify(run_id).ok


def test_a_warm_commit_with_journal_entries_is_five_statements(store: clew.Store, run_id: str) -> None:
    head = store.commit(run_id, state={"n": 0}, parent=None).checkpoint_id
    counter = Counter(store)
    for i in range(1, 11):
        head = store.commit(
            run_id, state={"n": i}, parent=head, journal=[("note", {"i": i}), ("tool", {"result": "r" * 600})]
        ).checkpoint_id
    assert (counter.transactions, counter.batches, counter.statements) == (10, 10, 50)
    sealed = store.list_journal(run_id, checkpoint_id=head)
    assert [e.kind for e in sealed] == ["note", "tool"]
    assert [e.seq for e in store.list_journal(run_id)] == list(range(1, 21))
    assert store.verify(run_id).ok


def test_pending_entries_this_store_appended_are_sealed_in_the_same_batch(store: clew.Store, run_id: str) -> None:
    head = store.commit(run_id, state={"n": 0}, parent=None).checkpoint_id
    store.append_journal(run_id, [("call.intent", {"k": 1})])
    counter = Counter(store)
    c = store.commit(run_id, state={"n": 1}, parent=head)
    assert (counter.transactions, counter.batches) == (1, 1)
    assert [e.data for e in store.list_journal(run_id, checkpoint_id=c.checkpoint_id)] == [{"k": 1}]
    assert store.list_journal(run_id, pending_on="main") == []
    assert store.verify(run_id).ok


def test_entries_another_store_appended_are_sealed_too(shared_stores: Any) -> None:
    a, b = shared_stores.open(), shared_stores.open()
    run_id = a.create_run(agent="x").run_id
    head = a.commit(run_id, state={"n": 0}, parent=None).checkpoint_id
    a.append_journal(run_id, [("mine", 1)])
    b.append_journal(run_id, [("theirs", 2)])
    c = a.commit(run_id, state={"n": 1}, parent=head)
    assert [e.kind for e in a.list_journal(run_id, checkpoint_id=c.checkpoint_id)] == ["mine", "theirs"]
    assert a.verify(run_id).ok


def test_a_head_another_store_moved_is_a_conflict(shared_stores: Any) -> None:
    a, b = shared_stores.open(), shared_stores.open()
    run_id = a.create_run(agent="x").run_id
    head = a.commit(run_id, state={"n": 0}, parent=None).checkpoint_id
    b.commit(run_id, state={"n": 1}, parent=head)
    with pytest.raises(ConflictError):
        a.commit(run_id, state={"n": 2}, parent=head)
    assert a.load_state(run_id, a.get_branch(run_id).head or "") == {"n": 1}
    assert a.verify(run_id).ok


def test_journal_numbers_another_store_used_are_not_reused(shared_stores: Any) -> None:
    a, b = shared_stores.open(), shared_stores.open()
    run_id = a.create_run(agent="x").run_id
    head = a.commit(run_id, state={"n": 0}, parent=None, journal=[("first", 0)]).checkpoint_id
    b.fork(run_id, checkpoint_id=head, branch="alt")
    b.append_journal(run_id, [("other", 1), ("other", 2)], branch="alt")
    c = a.commit(run_id, state={"n": 1}, parent=head, journal=[("second", 3)])
    assert [(e.seq, e.kind) for e in a.list_journal(run_id, checkpoint_id=c.checkpoint_id)] == [(4, "second")]
    assert sorted(e.seq for e in a.list_journal(run_id)) == [1, 2, 3, 4]
    assert a.verify(run_id).ok


def test_a_lease_taken_over_fences_a_warm_writer(shared_stores: Any) -> None:
    a, b = shared_stores.open(), shared_stores.open()
    run_id = a.create_run(agent="x").run_id
    lease = a.acquire_lease(run_id, owner="w1", ttl=60)
    head = a.commit(run_id, state={"n": 0}, parent=None, lease=lease).checkpoint_id
    b.set_branch_status(run_id, status="running", revoke=True)  # cancel-like: the lease is revoked
    with pytest.raises(clew.errors.LeaseLostError):
        a.commit(run_id, state={"n": 1}, parent=head, lease=lease)
    assert a.get_branch(run_id).head == head


async def test_an_async_store_falls_back_the_same_way(shared_stores: Any) -> None:
    b = shared_stores.open()
    a = await clew.open_async(shared_stores.url)
    try:
        run_id = (await a.create_run(agent="x")).run_id
        head = (await a.commit(run_id, state={"n": 0}, parent=None)).checkpoint_id
        head = (await a.commit(run_id, state={"n": 1}, parent=head, journal=[("note", 1)])).checkpoint_id
        b.append_journal(run_id, [("theirs", 2)])
        c = await a.commit(run_id, state={"n": 2}, parent=head)
        assert [e.kind for e in await a.list_journal(run_id, checkpoint_id=c.checkpoint_id)] == ["theirs"]
        b.commit(run_id, state={"n": 3}, parent=c.checkpoint_id)
        with pytest.raises(ConflictError):
            await a.commit(run_id, state={"n": 4}, parent=c.checkpoint_id)
        assert (await a.verify(run_id)).ok
    finally:
        await a.close()

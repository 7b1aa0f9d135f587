"""The journal: entries are durable at once, pending until the next commit seals them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import clew
from clew.errors import ConflictError, NotFoundError


def test_appended_entries_are_pending_until_the_next_commit_seals_them(store: clew.Store, run_id: str) -> None:
    c1 = store.commit(run_id, state={"n": 1}, parent=None)
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    made = store.append_journal(
        run_id,
        [
            ("tool_intent", {"tool": "kb", "args": {"q": "refund"}, "at": when}),
            ("tool_outcome", {"tool": "kb", "result": ["a", "b"], "ms": 12.5}),
        ],
    )
    assert [e.seq for e in made] == [1, 2]
    assert all(e.checkpoint_id is None and e.branch == "main" and len(bytes.fromhex(e.hash)) == 32 for e in made)
    pending = store.list_journal(run_id, pending_on="main")
    assert pending == made
    assert pending[0].data["at"] == when
    assert store.list_journal(run_id, checkpoint_id=c1.checkpoint_id) == []

    more = store.append_journal(run_id, [("interrupt", {"question": "approve?"})])
    c2 = store.commit(run_id, state={"n": 2}, parent=c1.checkpoint_id, journal=[("answer", "yes")])

    sealed = store.list_journal(run_id, checkpoint_id=c2.checkpoint_id)
    assert [(e.seq, e.kind) for e in sealed] == [
        (1, "tool_intent"),
        (2, "tool_outcome"),
        (3, "interrupt"),
        (4, "answer"),
    ]
    assert all(e.checkpoint_id == c2.checkpoint_id for e in sealed)
    assert [e.hash for e in sealed[:3]] == [e.hash for e in [*made, *more]]  # sealing does not rewrite them
    assert store.list_journal(run_id, pending_on="main") == []
    assert [e.seq for e in store.list_journal(run_id)] == [1, 2, 3, 4]
    assert store.verify(run_id).ok


def test_a_commit_with_nothing_pending_seals_only_its_own_entries(store: clew.Store, run_id: str) -> None:
    c1 = store.commit(run_id, state={}, parent=None, journal=[("a", 1), ("b", 2)])
    c2 = store.commit(run_id, state={}, parent=c1.checkpoint_id)
    assert [e.data for e in store.list_journal(run_id, checkpoint_id=c1.checkpoint_id)] == [1, 2]
    assert store.list_journal(run_id, checkpoint_id=c2.checkpoint_id) == []


def test_a_failed_commit_leaves_entries_pending(store: clew.Store, run_id: str) -> None:
    c1 = store.commit(run_id, state={"n": 1}, parent=None)
    store.append_journal(run_id, [("tool", 1), ("tool", 2)])
    with pytest.raises(ConflictError):
        store.commit(run_id, state={"n": 2}, parent=None, journal=[("own", 3)])
    store._ctx.fault = "insert_checkpoint"
    try:
        with pytest.raises(RuntimeError):
            store.commit(run_id, state={"n": 2}, parent=c1.checkpoint_id, journal=[("own", 3)])
    finally:
        store._ctx.fault = None
    assert [e.data for e in store.list_journal(run_id, pending_on="main")] == [1, 2]
    assert [e.data for e in store.list_journal(run_id)] == [1, 2]
    c2 = store.commit(run_id, state={"n": 2}, parent=c1.checkpoint_id, journal=[("own", 3)])
    assert [e.data for e in store.list_journal(run_id, checkpoint_id=c2.checkpoint_id)] == [1, 2, 3]


def test_pending_entries_belong_to_their_branch(store: clew.Store, run_id: str) -> None:
    c1 = store.commit(run_id, state={"n": 1}, parent=None)
    store.fork(run_id, checkpoint_id=c1.checkpoint_id, branch="alt")
    store.append_journal(run_id, [("main-entry", 1)])
    store.append_journal(run_id, [("alt-entry", 2)], branch="alt")
    c2 = store.commit(run_id, state={"n": 2}, parent=c1.checkpoint_id, branch="alt")
    assert [e.kind for e in store.list_journal(run_id, checkpoint_id=c2.checkpoint_id)] == ["alt-entry"]
    assert [e.kind for e in store.list_journal(run_id, pending_on="main")] == ["main-entry"]
    assert store.list_journal(run_id, pending_on="alt") == []
    c3 = store.commit(run_id, state={"n": 3}, parent=c1.checkpoint_id)
    assert [e.kind for e in store.list_journal(run_id, checkpoint_id=c3.checkpoint_id)] == ["main-entry"]
    assert store.verify(run_id).ok


def test_journal_sequence_is_per_run(store: clew.Store) -> None:
    a = store.create_run(agent="x").run_id
    b = store.create_run(agent="x").run_id
    store.append_journal(a, [("t", 1), ("t", 2)])
    assert [e.seq for e in store.append_journal(b, [("t", 1)])] == [1]
    assert [e.seq for e in store.append_journal(a, [("t", 3)])] == [3]


def test_empty_append_is_harmless(store: clew.Store, run_id: str) -> None:
    assert store.append_journal(run_id, []) == []
    assert store.list_journal(run_id) == []


@pytest.mark.parametrize("call", ["unknown-run", "unknown-branch"])
def test_append_to_unknown_run_or_branch(store: clew.Store, run_id: str, call: str) -> None:
    args: dict[str, Any] = {"branch": "nope"} if call == "unknown-branch" else {}
    target = run_id if call == "unknown-branch" else "ghost"
    with pytest.raises(NotFoundError):
        store.append_journal(target, [("t", 1)], **args)
    assert store.list_journal(run_id) == []

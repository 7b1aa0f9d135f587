"""Forks: a branch from any checkpoint, each branch its own line, shared values stored once."""

from __future__ import annotations

from typing import Any

import pytest

import clew
from clew.errors import ConflictError, NotFoundError
from tests.helpers.raw import Raw

DOC = "a long shared document that both branches keep. " * 200


def test_fork_from_an_older_checkpoint(stores: Any, store: clew.Store, raw: Raw, run_id: str) -> None:
    history: list[dict[str, Any]] = [
        {"doc": DOC, "messages": [f"m{j}" for j in range(i + 1)], "step": i} for i in range(4)
    ]
    ids = []
    parent = None
    for state in history:
        parent = store.commit(run_id, state=state, parent=parent).checkpoint_id
        ids.append(parent)
    blobs_before = raw.counts(run_id)["blobs"]

    alt = store.fork(run_id, checkpoint_id=ids[1], branch="alt")
    assert (alt.name, alt.head, alt.base) == ("alt", ids[1], ids[1])
    assert store.get_branch(run_id, "alt") == alt
    assert [b.name for b in store.list_branches(run_id)] == ["main", "alt"]
    assert raw.counts(run_id)["blobs"] == blobs_before  # a fork writes no state

    edited = {**history[1], "messages": [*history[1]["messages"], "edited by a person"], "step": 10}
    a1 = store.commit(run_id, state=edited, parent=ids[1], branch="alt", kind="edit")
    m5 = {**history[3], "messages": [*history[3]["messages"], "m4"], "step": 4}
    c5 = store.commit(run_id, state=m5, parent=ids[3])
    a2 = store.commit(run_id, state={**edited, "step": 11}, parent=a1.checkpoint_id, branch="alt")

    assert store.get_branch(run_id).head == c5.checkpoint_id
    assert store.get_branch(run_id, "alt").head == a2.checkpoint_id
    assert (a1.branch, a1.parent_id, a1.kind) == ("alt", ids[1], "edit")
    reader = stores.open()
    reader._ctx.forget(run_id)
    assert reader.load_state(run_id, a2.checkpoint_id) == {**edited, "step": 11}
    assert reader.load_state(run_id, c5.checkpoint_id) == m5
    assert reader.load_state(run_id, ids[1]) == history[1]
    # The document is stored once for both branches, the shared messages chunk too.
    addr = store.codec.address(store.codec.dumps(DOC)[0])
    assert raw.scalar("SELECT count(*) FROM blobs WHERE rk = ? AND addr = ?", raw.rk(run_id), addr) == 1
    assert [c.checkpoint_id for c in store.list_checkpoints(run_id, branch="alt")] == [
        a2.checkpoint_id,
        a1.checkpoint_id,
        ids[1],
        ids[0],
    ]
    assert store.verify(run_id).ok


def test_fork_of_a_fork_and_from_the_head(store: clew.Store, run_id: str) -> None:
    c1 = store.commit(run_id, state={"n": 1}, parent=None)
    store.fork(run_id, checkpoint_id=c1.checkpoint_id, branch="b1")
    b1 = store.commit(run_id, state={"n": 2}, parent=c1.checkpoint_id, branch="b1")
    store.fork(run_id, checkpoint_id=b1.checkpoint_id, branch="b2")
    b2 = store.commit(run_id, state={"n": 3}, parent=b1.checkpoint_id, branch="b2")
    assert [c.checkpoint_id for c in store.list_checkpoints(run_id, branch="b2")] == [
        b2.checkpoint_id,
        b1.checkpoint_id,
        c1.checkpoint_id,
    ]
    assert store.load_state(run_id, b2.checkpoint_id) == {"n": 3}
    # Committing on main after forking from its head is unaffected.
    c2 = store.commit(run_id, state={"n": 4}, parent=c1.checkpoint_id)
    assert store.get_branch(run_id).head == c2.checkpoint_id


def test_fork_errors(store: clew.Store, run_id: str) -> None:
    c1 = store.commit(run_id, state={"n": 1}, parent=None)
    store.fork(run_id, checkpoint_id=c1.checkpoint_id, branch="alt")
    for taken in ("alt", "main"):
        with pytest.raises(ConflictError, match=taken):
            store.fork(run_id, checkpoint_id=c1.checkpoint_id, branch=taken)
    with pytest.raises(NotFoundError):
        store.fork(run_id, checkpoint_id="nope", branch="other")
    with pytest.raises(NotFoundError):
        store.fork("ghost", checkpoint_id=c1.checkpoint_id, branch="other")
    with pytest.raises(ConflictError):  # a new branch's head is its fork point, not empty
        store.commit(run_id, state={"n": 2}, parent=None, branch="alt")
    with pytest.raises(NotFoundError):
        store.commit(run_id, state={"n": 2}, parent=None, branch="never-made")
    assert [b.name for b in store.list_branches(run_id)] == ["main", "alt"]


def test_a_fork_with_state_is_one_transaction(store: clew.Store) -> None:
    run_id = store.create_run(agent="forks").run_id
    base = store.commit(run_id, state={"n": 1, "log": ["a"]}, parent=None).checkpoint_id
    store._ctx.fault = "insert_checkpoint"  # fail inside the fork's first commit
    with pytest.raises(RuntimeError, match="injected fault"):
        store.fork(run_id, checkpoint_id=base, branch="alt", state={"n": 2, "log": ["a", "b"]})
    store._ctx.fault = None
    assert [b.name for b in store.list_branches(run_id)] == ["main"]  # no branch without its checkpoint
    made = store.fork(
        run_id,
        checkpoint_id=base,
        branch="alt",
        state={"n": 2, "log": ["a", "b"]},
        metadata={"why": "try"},
        journal=[("note", "forked")],
    )
    assert made.head != base and made.base == base
    assert store.load_state(run_id, made.head) == {"n": 2, "log": ["a", "b"]}
    head = store.get_checkpoint(run_id, made.head)
    assert (head.kind, head.parent_id, head.branch, head.metadata) == ("fork", base, "alt", {"why": "try"})
    assert [e.data for e in store.list_journal(run_id, checkpoint_id=made.head)] == ["forked"]
    assert store.verify(run_id).ok

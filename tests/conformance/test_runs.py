"""Runs: create, get, list (filters, pagination), update and delete."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import clew
from clew.errors import ConflictError, NotFoundError, UnknownTypeError
from tests.helpers.raw import Raw


def test_create_and_get_run(store: clew.Store) -> None:
    made = store.create_run("run-1", agent="support", labels={"team": "billing"}, metadata={"ticket": 42})
    got = store.get_run("run-1")
    assert got == made
    assert (got.run_id, got.agent, got.status) == ("run-1", "support", "running")
    assert got.labels == {"team": "billing"}
    assert got.metadata == {"ticket": 42}
    assert got.created_at <= got.updated_at
    main = store.get_branch("run-1")
    assert (main.name, main.head, main.base, main.status) == ("main", None, None, "running")
    assert (main.lease_owner, main.lease_expires_at, main.epoch) == (None, None, 0)
    assert store.list_branches("run-1") == [main]


def test_create_run_makes_unique_time_ordered_ids(store: clew.Store) -> None:
    ids = [store.create_run(agent="a").run_id for _ in range(20)]
    assert len(set(ids)) == 20
    # UUIDv7 layout: ordered by their millisecond timestamp (not within one millisecond).
    millis = [uuid.UUID(i).int >> 80 for i in ids]
    assert millis == sorted(millis)
    assert all(uuid.UUID(i).version == 7 for i in ids)


def test_create_run_with_taken_id_conflicts(store: clew.Store) -> None:
    store.create_run("dup", agent="a")
    with pytest.raises(ConflictError, match="dup"):
        store.create_run("dup", agent="b")
    assert store.get_run("dup").agent == "a"


def test_create_run_with_status_and_lease(store: clew.Store) -> None:
    r = store.create_run(agent="a", status="paused", lease_owner="w1", lease_ttl=30)
    got = store.get_run(r.run_id)
    assert got.status == "paused"
    main = store.get_branch(r.run_id)
    assert (main.status, main.lease_owner, main.epoch) == ("paused", "w1", 1)
    assert main.lease_expires_at is not None and main.lease_expires_at > got.created_at + 29


def test_create_run_with_its_first_checkpoint(store: clew.Store) -> None:
    state = {"question": "where is my order?", "messages": [{"role": "user", "content": "hi"}]}
    store.create_run("started", agent="a", state=state, checkpoint_metadata={"next": "plan"})
    head = store.get_branch("started").head
    assert head is not None
    first = store.get_checkpoint("started", head)
    assert (first.kind, first.metadata, first.parent_id, first.branch) == ("start", {"next": "plan"}, None, "main")
    assert store.load_state("started", head) == state
    assert store.verify("started").ok


def test_create_run_with_state_it_cannot_store_leaves_nothing(store: clew.Store, raw: Raw) -> None:
    before = raw.total_rows()
    with pytest.raises(UnknownTypeError, match=r"state\.client"):
        store.create_run("bad", agent="a", state={"client": object()})
    assert raw.total_rows() == before
    with pytest.raises(NotFoundError):
        store.get_run("bad")
    store.create_run("bad", agent="a", state={"client": None})
    assert store.load_state("bad", store.get_branch("bad").head) == {"client": None}  # type: ignore[arg-type]


def test_list_runs_newest_first_with_filters(store: clew.Store) -> None:
    a = store.create_run(agent="support", labels={"team": "billing", "env": "prod"})
    b = store.create_run(agent="support", labels={"team": "shipping", "env": "prod"}, status="paused")
    c = store.create_run(agent="research", labels={"team": "billing", "env": "dev"})
    d = store.create_run(agent="research", status="completed")

    def ids(**kw: object) -> list[str]:
        return [r.run_id for r in store.list_runs(**kw)]  # type: ignore[arg-type]

    assert ids() == [d.run_id, c.run_id, b.run_id, a.run_id]
    assert ids(status="running") == [c.run_id, a.run_id]
    assert ids(status="paused") == [b.run_id]
    assert ids(agent="support") == [b.run_id, a.run_id]
    assert ids(labels={"team": "billing"}) == [c.run_id, a.run_id]
    assert ids(labels={"team": "billing", "env": "prod"}) == [a.run_id]
    assert ids(labels={"env": "prod"}, status="paused") == [b.run_id]
    assert ids(agent="research", status="running") == [c.run_id]
    assert ids(agent="research", labels={"team": "shipping"}) == []
    assert ids(labels={"nope": "x"}) == []
    assert ids(status="failed") == []


def test_list_runs_label_keys_with_punctuation(store: clew.Store) -> None:
    r = store.create_run(agent="a", labels={"team.name": "x", "k-1": "y", "$k": "z", "k y": "w"})
    store.create_run(agent="a", labels={"team": "x"})
    for key, value in r.labels.items():
        assert [x.run_id for x in store.list_runs(labels={key: value})] == [r.run_id], key


def test_list_runs_label_keys_with_quotes_and_backslashes(store: clew.Store) -> None:
    r = store.create_run(agent="a", labels={'say "hi"': "x", "back\\slash": "y"})
    for key, value in r.labels.items():
        assert [x.run_id for x in store.list_runs(labels={key: value})] == [r.run_id], key


def test_list_runs_pagination_with_cursor(store: clew.Store) -> None:
    made = [store.create_run(agent="pager" if i % 3 else "other").run_id for i in range(23)]
    expected = [r for i, r in reversed(list(enumerate(made))) if i % 3]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = store.list_runs(agent="pager", limit=4, cursor=cursor)
        assert len(page) <= 4
        seen.extend(r.run_id for r in page)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected
    assert pages == -(-len(expected) // 4)
    # An exact multiple of the page size ends without an empty extra page.
    everything = store.list_runs(limit=len(made))
    assert len(everything) == len(made) and everything.next_cursor is None


def test_update_run_and_branch_status(store: clew.Store) -> None:
    r = store.create_run(agent="a", metadata={"k": 1})
    paused = store.set_branch_status(r.run_id, status="paused")
    assert (paused.name, paused.status) == ("main", "paused")
    assert store.get_run(r.run_id).status == "paused" and store.get_run(r.run_id).metadata == {"k": 1}
    meta = store.update_run(r.run_id, metadata={"k": 2, "why": "edited"})
    assert meta.status == "paused" and meta.metadata == {"k": 2, "why": "edited"}
    assert meta.updated_at >= r.updated_at
    failed = store.set_branch_status(r.run_id, status="failed", error={"type": "X", "message": "boom"})
    assert failed.error == {"type": "X", "message": "boom"}
    done = store.set_branch_status(r.run_id, status="completed")
    assert (done.status, done.error) == ("completed", None)
    assert store.get_run(r.run_id).status == "completed"
    assert [x.run_id for x in store.list_runs(status="completed")] == [r.run_id]


def test_update_unknown_run(store: clew.Store) -> None:
    with pytest.raises(NotFoundError, match="ghost"):
        store.update_run("ghost", metadata={})
    with pytest.raises(NotFoundError, match="ghost"):
        store.set_branch_status("ghost", status="paused")


def _populate(store: clew.Store, run_id: str) -> list[str]:
    shared = {"doc": "the same text in both runs " * 40}
    c1 = store.commit(run_id, state={**shared, "n": 1, "messages": ["a", "b"]}, parent=None)
    store.append_journal(run_id, [("tool", {"q": "x"})])
    c2 = store.commit(
        run_id,
        state={**shared, "n": 2, "messages": ["a", "b", "c"]},
        parent=c1.checkpoint_id,
        journal=[("note", "two")],
    )
    store.fork(run_id, checkpoint_id=c1.checkpoint_id, branch="alt")
    c3 = store.commit(run_id, state={**shared, "n": 3}, parent=c1.checkpoint_id, branch="alt")
    store.append_journal(run_id, [("pending", 1)], branch="alt")
    return [c1.checkpoint_id, c2.checkpoint_id, c3.checkpoint_id]


def test_delete_run_removes_everything_it_owns_and_nothing_else(store: clew.Store, raw: Raw) -> None:
    doomed = store.create_run(agent="a").run_id
    kept = store.create_run(agent="a").run_id
    _populate(store, doomed)
    kept_ckpts = _populate(store, kept)
    doomed_counts = raw.counts(doomed)
    kept_before = raw.snapshot(kept)
    assert min(doomed_counts.values()) > 0

    report = store.delete_run(doomed)

    assert report.run_id == doomed
    assert (report.checkpoints, report.blobs, report.journal_entries, report.branches) == (
        doomed_counts["checkpoints"],
        doomed_counts["blobs"],
        doomed_counts["journal"],
        doomed_counts["branches"],
    )
    assert raw.scalar("SELECT count(*) FROM runs WHERE run_id = ?", doomed) == 0
    totals = raw.total_rows()
    kept_counts = raw.counts(kept)
    assert totals == {**kept_counts, "runs": 1}
    assert raw.snapshot(kept) == kept_before
    with pytest.raises(NotFoundError):
        store.get_run(doomed)
    with pytest.raises(NotFoundError):
        store.list_checkpoints(doomed)
    assert [r.run_id for r in store.list_runs()] == [kept]
    for cid in kept_ckpts:
        assert store.load_state(kept, cid)["doc"].startswith("the same text")
    assert store.verify(kept).ok


def test_delete_run_then_reuse_its_id(store: clew.Store) -> None:
    store.create_run("again", agent="a")
    c = store.commit("again", state={"x": [1, 2, 3]}, parent=None)
    store.delete_run("again")
    store.create_run("again", agent="b")
    assert store.get_branch("again").head is None
    with pytest.raises(NotFoundError):
        store.load_state("again", c.checkpoint_id)
    # A writer that still remembers the old run's state must not lean on it.
    c2 = store.commit("again", state={"x": [1, 2, 3, 4]}, parent=None)
    assert store.load_state("again", c2.checkpoint_id) == {"x": [1, 2, 3, 4]}
    assert store.verify("again").ok


def test_delete_unknown_run(store: clew.Store) -> None:
    with pytest.raises(NotFoundError):
        store.delete_run("ghost")


@pytest.mark.parametrize("first", ["commit", "append_journal", "create_with_state"])
def test_run_deleted_and_made_again_by_another_writer(
    stores: Any, store: clew.Store, backend: str, first: str, request: pytest.FixtureRequest
) -> None:
    """A run id reused after delete_run (a LangGraph thread id, say) works for every writer."""
    other = stores.open()  # in memory the same store, which forgets what it deleted
    store.create_run("reused", agent="a")
    store.create_run("filler", agent="a")  # so a new key is not the old one reused
    c = store.commit("reused", state={"n": 1}, parent=None)
    store.append_journal("reused", [("t", 1)])
    other.delete_run("reused")
    other.create_run("filler-2", agent="a")
    if first == "create_with_state":  # this writer makes the run again, with its first checkpoint
        store.create_run("reused", agent="b", state={"n": 2})
        c2 = store.get_checkpoint("reused", store.get_branch("reused").head)  # type: ignore[arg-type]
        store.append_journal("reused", [("t", 2)])
    else:
        other.create_run("reused", agent="b")
    # No read in between: reads look the run up afresh, writes lean on what they remember.
    if first == "create_with_state":
        pass
    elif first == "commit":
        c2 = store.commit("reused", state={"n": 2}, parent=None)
        store.append_journal("reused", [("t", 2)])
    else:
        store.append_journal("reused", [("t", 2)])
        c2 = store.commit("reused", state={"n": 2}, parent=None)
    assert other.load_state("reused", c2.checkpoint_id) == {"n": 2}
    assert [e.data for e in other.list_journal("reused")] == [2]
    assert other.get_run("reused").agent == "b"
    assert other.verify("reused").ok
    with pytest.raises(NotFoundError):
        store.load_state("reused", c.checkpoint_id)

"""Atomicity: a write that fails part-way leaves no trace; a killed writer loses nothing committed.

Faults are injected with the store's test hook: ``store._ctx.fault = name`` raises
just before the query of that name (``clew.store._sql``) would run.
"""

from __future__ import annotations

import contextlib
import random
import signal
from collections.abc import Iterator
from typing import Any

import pytest

import clew
from clew.errors import ConflictError
from tests.helpers.child import crash_state
from tests.helpers.procs import spawn
from tests.helpers.raw import Raw

# Writes every commit of a changed state with journal entries must make: in one batch
# when this store wrote the parent (warm), after reading the branch when it did not
# (cold). The sweep below also breaks every other query, whatever the implementation
# happens to run.
COMMIT_WRITES = {
    "warm": [
        "bump_seqs",
        "insert_journal_guess",
        "insert_blob",
        "insert_checkpoint_next",
        "cas_head_pending",
        "seal_journal",
    ],
    "cold": ["bump_seqs", "insert_journal", "insert_blob", "insert_checkpoint", "set_head", "seal_journal"],
}
ALL_WRITES = sorted(
    {(q, cold) for cold, names in ((False, COMMIT_WRITES["warm"]), (True, COMMIT_WRITES["cold"])) for q in names}
)


@pytest.fixture
def fault(store: clew.Store) -> Any:
    """``with fault(name): ...`` expects the hook's RuntimeError before query ``name``."""

    @contextlib.contextmanager
    def inject(name: str) -> Iterator[None]:
        store._ctx.fault = name
        try:
            with pytest.raises(RuntimeError, match=f"injected fault before {name}$"):
                yield
        finally:
            store._ctx.fault = None

    return inject


def _states() -> list[dict[str, Any]]:
    base = {"doc": "a large document " * 50, "messages": [{"i": i, "text": f"m{i} " * 20} for i in range(70)]}
    return [
        {**base, "step": 1},
        {**base, "step": 2, "messages": [*base["messages"], {"i": 70}]},
        {
            **base,
            "step": 3,
            "doc": "a new document " * 60,
            "messages": [*base["messages"], {"i": 70}, {"i": 71, "text": "new " * 300}],
            "extra": {"k": [1, 2]},
        },
    ]


class Scenario:
    """A run with two checkpoints and pending journal entries, about to commit a third."""

    def __init__(self, store: clew.Store, raw: Raw, run_id: str) -> None:
        self.store, self.raw, self.run_id = store, raw, run_id
        self.s1, self.s2, self.s3 = _states()
        c1 = store.commit(run_id, state=self.s1, parent=None, journal=[("note", "first")])
        self.c2 = store.commit(run_id, state=self.s2, parent=c1.checkpoint_id).checkpoint_id
        store.append_journal(run_id, [("tool", {"call": 1}), ("tool", {"call": 2})])
        self.before = raw.snapshot(run_id)

    def commit(self) -> clew.CheckpointRecord:
        return self.store.commit(
            self.run_id, state=self.s3, parent=self.c2, status="paused", journal=[("note", "third")]
        )

    def assert_untouched(self) -> None:
        store, run_id = self.store, self.run_id
        assert self.raw.snapshot(run_id) == self.before  # every row of every table, run counters included
        assert store.get_branch(run_id).head == self.c2
        assert store.get_run(run_id).status == "running"
        assert [e.data for e in store.list_journal(run_id, pending_on="main")] == [{"call": 1}, {"call": 2}]
        store._ctx.forget(run_id)
        assert store.load_state(run_id, self.c2) == self.s2
        assert store.verify(run_id).ok

    def assert_commit_goes_through(self) -> None:
        store, run_id = self.store, self.run_id
        c3 = self.commit()
        assert c3.seq == store.get_checkpoint(run_id, self.c2).seq + 1
        assert store.get_branch(run_id).head == c3.checkpoint_id
        assert store.load_state(run_id, c3.checkpoint_id) == self.s3
        sealed = store.list_journal(run_id, checkpoint_id=c3.checkpoint_id)
        assert [e.kind for e in sealed] == ["tool", "tool", "note"]
        assert store.list_journal(run_id, pending_on="main") == []
        assert store.get_run(run_id).status == "paused"
        assert store.verify(run_id).ok


@pytest.mark.parametrize(("query", "cold"), ALL_WRITES, ids=[f"{q}-{'cold' if c else 'warm'}" for q, c in ALL_WRITES])
def test_fault_mid_commit_leaves_previous_head_and_nothing_partial(
    store: clew.Store, raw: Raw, run_id: str, fault: Any, query: str, cold: bool
) -> None:
    sc = Scenario(store, raw, run_id)
    if cold:  # the writer must read the parent's state inside the transaction
        store._ctx.forget(run_id)
    with fault(query):
        sc.commit()
    sc.assert_untouched()
    sc.assert_commit_goes_through()  # nothing is wedged


@pytest.mark.parametrize("cold", [False, True], ids=["warm", "cold"])
def test_fault_before_every_query_of_a_commit(
    store: clew.Store, raw: Raw, run_id: str, monkeypatch: pytest.MonkeyPatch, cold: bool
) -> None:
    """Break the commit before its 1st query, then its 2nd, ... until it has none left."""
    sc = Scenario(store, raw, run_id)
    real_q = store._ctx.q
    names: list[str] = []
    k = 0
    while True:
        k += 1
        calls = 0

        def breaking_q(name: str, *args: Any, _k: int = k, **kw: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == _k:
                names.append(name)
                raise RuntimeError(f"injected fault before {name}")
            return real_q(name, *args, **kw)

        if cold:
            store._ctx.forget(run_id)
        monkeypatch.setattr(store._ctx, "q", breaking_q)
        try:
            sc.commit()
        except RuntimeError:
            monkeypatch.setattr(store._ctx, "q", real_q)
            sc.assert_untouched()
            continue
        monkeypatch.setattr(store._ctx, "q", real_q)
        break
    # (assert_untouched forgets the run: after the first fault the writer is cold; the
    # test above breaks each write of a warm commit)
    assert set(COMMIT_WRITES["cold"]) <= set(names), names
    # The last attempt got through untouched by faults; check it like any commit.
    head = store.get_branch(run_id).head
    assert head is not None and head != sc.c2
    assert store.load_state(run_id, head) == sc.s3
    assert store.verify(run_id).ok


@pytest.mark.parametrize("query", ["run_key", "insert_blob", "insert_checkpoint", "set_head"])
def test_fault_in_first_commit_of_a_branch(store: clew.Store, raw: Raw, run_id: str, fault: Any, query: str) -> None:
    before = raw.snapshot(run_id)
    with fault(query):
        store.commit(run_id, state={"x": [1, 2, 3]}, parent=None)
    assert raw.snapshot(run_id) == before
    assert store.get_branch(run_id).head is None
    c = store.commit(run_id, state={"x": [1, 2, 3]}, parent=None)
    assert store.load_state(run_id, c.checkpoint_id) == {"x": [1, 2, 3]}


@pytest.mark.parametrize(
    "query", ["delete_journal", "delete_checkpoints", "delete_blobs", "delete_branches", "delete_run"]
)
def test_fault_mid_delete_run_deletes_nothing(store: clew.Store, raw: Raw, run_id: str, fault: Any, query: str) -> None:
    s1, s2, _ = _states()
    c1 = store.commit(run_id, state=s1, parent=None)
    store.commit(run_id, state=s2, parent=c1.checkpoint_id, journal=[("note", "x")])
    before = raw.snapshot(run_id)
    with fault(query):
        store.delete_run(run_id)
    assert raw.snapshot(run_id) == before
    store._ctx.forget(run_id)
    assert store.load_state(run_id, store.get_branch(run_id).head or "") == s2


@pytest.mark.parametrize("query", ["bump_journal_seq", "insert_journal"])
def test_fault_mid_append_journal(store: clew.Store, raw: Raw, run_id: str, fault: Any, query: str) -> None:
    store.append_journal(run_id, [("tool", 1)])
    before = raw.snapshot(run_id)
    with fault(query):
        store.append_journal(run_id, [("tool", 2), ("tool", 3)])
    assert raw.snapshot(run_id) == before
    assert [e.data for e in store.append_journal(run_id, [("tool", 2)])] == [2]
    assert [e.seq for e in store.list_journal(run_id)] == [1, 2]


@pytest.mark.parametrize("query", ["insert_run", "insert_branch"])
def test_fault_mid_create_run(store: clew.Store, raw: Raw, fault: Any, query: str) -> None:
    store.create_run("other", agent="a")
    before = raw.total_rows()
    with fault(query):
        store.create_run("new", agent="a")
    assert raw.total_rows() == before
    store.create_run("new", agent="a")
    assert store.get_branch("new").head is None


def test_fault_mid_fork(store: clew.Store, raw: Raw, run_id: str, fault: Any) -> None:
    c = store.commit(run_id, state={"n": 1}, parent=None)
    with fault("insert_branch"):
        store.fork(run_id, checkpoint_id=c.checkpoint_id, branch="alt")
    assert [b.name for b in store.list_branches(run_id)] == ["main"]


def _history(store: clew.Store, run_id: str) -> list[clew.CheckpointRecord]:
    out: list[clew.CheckpointRecord] = []
    cursor = None
    while True:
        page = store.list_checkpoints(run_id, limit=50, cursor=cursor)
        out.extend(page)
        cursor = page.next_cursor
        if cursor is None:
            return out


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_mid_commit_keeps_every_committed_checkpoint_whole(stores: Any, store: clew.Store) -> None:
    """A writer process killed at random points: each time the store reopens whole."""
    run_id = store.create_run(agent="crash").run_id
    rnd = random.Random()
    seed = rnd.randrange(1 << 30)
    rnd.seed(seed)
    reported = -1
    for kill in range(5):
        proc = spawn("crash", stores.url, run_id)
        assert proc.stdout is not None
        target = rnd.randint(3, 25)
        lines = 0
        while lines < target:
            line = proc.stdout.readline()
            assert line, f"crash writer died early (seed {seed}): {proc.stderr.read() if proc.stderr else ''}"
            reported = int(line)
            lines += 1
        proc.send_signal(signal.SIGKILL)  # mid-loop: often inside a commit's transaction
        assert proc.wait(timeout=30) == -signal.SIGKILL
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()

        reopened = stores.open()
        report = reopened.verify(run_id)
        assert report.ok, (seed, kill, report.problems)
        head = reopened.get_branch(run_id).head
        assert head is not None
        state = reopened.load_state(run_id, head)
        assert state["step"] >= reported, "a step the writer saw committed was lost"
        assert state == crash_state(state["step"])
        history = _history(reopened, run_id)
        assert [c.metadata["step"] for c in history] == list(range(state["step"], -1, -1))
        for record in history:
            assert reopened.load_state(run_id, record.checkpoint_id) == crash_state(record.metadata["step"])
            entries = reopened.list_journal(run_id, checkpoint_id=record.checkpoint_id)
            assert {e.data["step"] for e in entries} == {record.metadata["step"]}
            assert entries[-1].data["phase"] == "outcome"
        pending = reopened.list_journal(run_id, pending_on="main")
        assert all(e.data == {"step": state["step"] + 1, "phase": "intent"} for e in pending)
        reopened.close()

    # The store still takes writes after the crashes.
    last = store.get_branch(run_id).head
    with pytest.raises(ConflictError):
        store.commit(run_id, state={"late": True}, parent=None)
    c = store.commit(run_id, state={"late": True}, parent=last)
    assert store.load_state(run_id, c.checkpoint_id) == {"late": True}

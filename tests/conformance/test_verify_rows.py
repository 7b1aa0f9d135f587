"""``verify`` covers every row it is responsible for: branches, the run row, counters,
journal placement; and a keyed seal catches a chain forged without the key.

Each case is a targeted edit behind the store's back, the way someone with write
access to the database would make it. On memory:// the edits go through the store's
own in-memory connection (``tests.helpers.raw``), so every case runs on all three
backends. A memory:// store cannot be opened a second time, with or without the key:
the keyed cases there use one keyed store, and where the shared backends compare it
with a store without the key (or written by one), memory:// gets the same rows by
removing MACs instead.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable

import pytest

import clew
from clew.store._seal import checkpoint_hash, head_seal
from tests.conftest import StoreFactory
from tests.helpers.raw import Raw


class Chain:
    """main: c1 <- c2 <- c3; alt forked at c1 with c4; a pending entry on alt."""

    def __init__(self, store: clew.Store, raw: Raw, run_id: str) -> None:
        self.store, self.raw, self.run_id = store, raw, run_id
        self.rk = raw.rk(run_id)
        c1 = store.commit(run_id, state={"n": 1, "log": ["a"]}, parent=None, journal=[("tool", {"q": 1})])
        c2 = store.commit(run_id, state={"n": 2, "log": ["a", "b"]}, parent=c1.checkpoint_id)
        store.append_journal(run_id, [("call.intent", {"key": "k"})])
        c3 = store.commit(run_id, state={"n": 3, "log": ["a", "b", "c"]}, parent=c2.checkpoint_id)
        store.fork(run_id, checkpoint_id=c1.checkpoint_id, branch="alt")
        c4 = store.commit(run_id, state={"n": 4}, parent=c1.checkpoint_id, branch="alt")
        store.append_journal(run_id, [("call.intent", {"key": "pending"})], branch="alt")
        self.ids = [c.checkpoint_id for c in (c1, c2, c3, c4)]
        assert store.verify(run_id).ok


@pytest.fixture
def chain(store: clew.Store, raw: Raw, run_id: str) -> Chain:
    return Chain(store, raw, run_id)


def _kinds(report: clew.VerifyReport) -> set[tuple[str, str]]:
    return {(p.kind, p.ident) for p in report.problems}


EDITS: dict[str, tuple[Callable[[Chain], None], tuple[str, str] | None]] = {
    "head-missing": (
        lambda c: c.raw.execute("UPDATE branches SET head = 'nowhere' WHERE rk = ? AND name = 'main'", c.rk),
        ("branch", "main"),
    ),
    "head-rolled-back": (
        lambda c: c.raw.execute("UPDATE branches SET head = ? WHERE rk = ? AND name = 'main'", c.ids[1], c.rk),
        ("branch", "main"),
    ),
    "head-on-another-line": (
        lambda c: c.raw.execute("UPDATE branches SET head = ? WHERE rk = ? AND name = 'main'", c.ids[3], c.rk),
        ("branch", "main"),
    ),
    "base-missing": (
        lambda c: c.raw.execute("UPDATE branches SET base = 'gone' WHERE rk = ? AND name = 'alt'", c.rk),
        ("branch", "alt"),
    ),
    "every-checkpoint-deleted": (
        lambda c: c.raw.execute("DELETE FROM checkpoints WHERE rk = ?", c.rk),
        ("branch", "main"),
    ),
    "branch-row-deleted": (
        lambda c: c.raw.execute("DELETE FROM branches WHERE rk = ? AND name = 'alt'", c.rk),
        ("branch", "alt"),
    ),
    "status-not-derived": (
        lambda c: c.raw.execute("UPDATE runs SET status = 'completed' WHERE rk = ?", c.rk),
        ("run", None),  # type: ignore[dict-item]
    ),
    "counter-rolled-back": (
        lambda c: c.raw.execute("UPDATE runs SET ckpt_seq = 1 WHERE rk = ?", c.rk),
        ("run", None),  # type: ignore[dict-item]
    ),
    "labels-damaged": (  # jsonb refuses text that is not JSON: there, valid JSON of the wrong shape
        lambda c: c.raw.execute(
            "UPDATE runs SET labels = ? WHERE rk = ?", "[1]" if c.raw.backend == "postgres" else "{not json", c.rk
        ),
        ("run", None),  # type: ignore[dict-item]
    ),
    "sealed-entry-unsealed": (
        lambda c: c.raw.execute(
            "UPDATE journal SET checkpoint_id = NULL"
            " WHERE rk = ? AND seq = (SELECT min(seq) FROM journal WHERE rk = ?)",
            c.rk,
            c.rk,
        ),
        ("checkpoint", None),  # type: ignore[dict-item]
    ),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_verify_finds_a_targeted_edit(chain: Chain, name: str) -> None:
    edit, expected = EDITS[name]
    edit(chain)
    report = chain.store.verify(chain.run_id)
    assert not report.ok, name
    kind, ident = expected  # type: ignore[misc]
    assert any(p.kind == kind and (ident is None or p.ident == ident) for p in report.problems), report.problems
    assert report.branches == (1 if name == "branch-row-deleted" else 2)


def test_verify_finds_a_pending_entry_moved_to_another_run(store: clew.Store, raw: Raw, chain: Chain) -> None:
    other = store.create_run(agent="other").run_id
    store.commit(other, state={"x": 1}, parent=None)
    ork = raw.rk(other)
    seq = raw.scalar("SELECT seq FROM journal WHERE rk = ? AND checkpoint_id IS NULL AND branch = 'alt'", chain.rk)
    top = raw.scalar("SELECT journal_seq FROM runs WHERE rk = ?", ork)
    raw.execute("UPDATE journal SET rk = ?, seq = ?, branch = 'main' WHERE rk = ? AND seq = ?", ork, top, chain.rk, seq)
    report = store.verify(other)
    assert ("journal", str(top)) in _kinds(report), report.problems


def _point_head(c: Chain, branch: str, head: str, *, reseal: bool) -> None:
    """Move a branch's head; with ``reseal``, recompute its (unkeyed) seal as a forger can."""
    c.raw.execute("UPDATE branches SET head = ? WHERE rk = ? AND name = ?", head, c.rk, branch)
    if reseal:
        h = c.raw.scalar("SELECT hash FROM checkpoints WHERE rk = ? AND checkpoint_id = ?", c.rk, head)
        seal = head_seal(c.run_id, branch, head, bytes(h))
        c.raw.execute("UPDATE branches SET seal = ? WHERE rk = ? AND name = ?", seal, c.rk, branch)


@pytest.mark.parametrize("reseal", [False, True], ids=["seal-left", "resealed"])
@pytest.mark.parametrize("case", ["main-onto-its-fork", "fresh-fork-along-its-base-line"])
def test_verify_finds_a_head_moved_forward(chain: Chain, case: str, reseal: bool) -> None:
    """A head moved to a later checkpoint that exists down its line, but on another
    branch (a branch's head is always its own newest checkpoint, so any later one is)."""
    store, c3 = chain.store, chain.ids[2]
    if case == "main-onto-its-fork":  # next: forked at main's head c3, with c5 on it
        store.fork(chain.run_id, checkpoint_id=c3, branch="next")
        c5 = store.commit(chain.run_id, state={"n": 5}, parent=c3, branch="next").checkpoint_id
        moved, target, lies_on = "main", c5, "next"
    else:  # side: forked at c2, no checkpoint of its own yet; its head moved on to c3
        store.fork(chain.run_id, checkpoint_id=chain.ids[1], branch="side")
        moved, target, lies_on = "side", c3, "main"
    assert store.verify(chain.run_id).ok
    _point_head(chain, moved, target, reseal=reseal)
    report = store.verify(chain.run_id)
    assert _kinds(report) == {("branch", moved)}, report.problems
    messages = [p.message for p in report.problems]
    assert any(f"lies on branch {lies_on!r}" in m for m in messages), messages
    assert any("does not match its seal" in m for m in messages) is not reseal, messages


def test_verify_finds_a_truncated_head(stores: StoreFactory) -> None:
    """The newest checkpoint deleted with the entries it sealed, the head re-pointed to
    its parent: every remaining row is consistent, so only the head's seal catches it,
    and once that is recomputed without the key, only its keyed seal."""
    store = stores.open(seal_key=clew.SealKey("k1", os.urandom(32)))
    run_id = store.create_run(agent="a").run_id
    c1 = store.commit(run_id, state={"amount": 10}, parent=None)
    c2 = store.commit(run_id, state={"amount": 20}, parent=c1.checkpoint_id)
    store.append_journal(run_id, [("call.intent", {"key": "refund"})])
    c3 = store.commit(run_id, state={"amount": 0}, parent=c2.checkpoint_id)  # seals the intent
    assert store.verify(run_id, require_keyed=True).ok
    raw = Raw(stores, store)
    try:
        rk = raw.rk(run_id)
        assert raw.execute("DELETE FROM journal WHERE rk = ? AND checkpoint_id = ?", rk, c3.checkpoint_id) == 1
        assert raw.execute("DELETE FROM checkpoints WHERE rk = ? AND checkpoint_id = ?", rk, c3.checkpoint_id) == 1
        raw.execute("UPDATE branches SET head = ? WHERE rk = ? AND name = 'main'", c2.checkpoint_id, rk)
        report = store.verify(run_id)  # the run's counter still counts the removed checkpoint
        assert _kinds(report) == {("branch", "main"), ("run", run_id)}, report.problems
        assert "a newer one was removed" in next(p.message for p in report.problems if p.kind == "run")
        raw.execute("UPDATE runs SET ckpt_seq = ckpt_seq - 1 WHERE rk = ?", rk)  # so the tamperer lowers it too
        report = store.verify(run_id)
        assert _kinds(report) == {("branch", "main")}, report.problems
        assert [p.message for p in report.problems] == ["does not match its seal: its head was changed"]
        seal = head_seal(run_id, "main", c2.checkpoint_id, bytes.fromhex(c2.hash))
        raw.execute("UPDATE branches SET seal = ? WHERE rk = ? AND name = 'main'", seal, rk)
    finally:
        raw.close()
    report = store.verify(run_id)
    assert _kinds(report) == {("branch", "main")}, report.problems
    assert "keyed seal does not match" in report.problems[0].message
    if stores.shared_across_processes:  # without the key, the truncated run looks whole
        assert stores.open().verify(run_id).ok
    assert store.load_state(run_id, c2.checkpoint_id) == {"amount": 20}


def _seq_of(c: Chain, checkpoint_id: str) -> int:
    return int(c.raw.scalar("SELECT seq FROM checkpoints WHERE rk = ? AND checkpoint_id = ?", c.rk, checkpoint_id))


COUNTERS: dict[str, tuple[Callable[[Chain], object], str]] = {
    "journal-counter-rolled-back": (
        lambda c: c.raw.execute("UPDATE runs SET journal_seq = 1 WHERE rk = ?", c.rk),
        "its journal counter is 1 but entries reach seq 3",
    ),
    "checkpoint-seq-duplicated": (
        lambda c: c.raw.execute(
            "UPDATE checkpoints SET seq = ? WHERE rk = ? AND checkpoint_id = ?", _seq_of(c, c.ids[1]), c.rk, c.ids[2]
        ),
        "two checkpoints share a sequence number",
    ),
}


@pytest.mark.parametrize("name", list(COUNTERS))
def test_verify_finds_a_tampered_sequence(chain: Chain, name: str) -> None:
    edit, message = COUNTERS[name]
    assert chain.raw.scalar("SELECT max(seq) FROM journal WHERE rk = ?", chain.rk) == 3
    edit(chain)
    report = chain.store.verify(chain.run_id)
    assert any(p.kind == "run" and p.ident == chain.run_id and p.message == message for p in report.problems), (
        report.problems
    )


def test_a_duplicated_journal_seq_is_refused_by_the_schema(chain: Chain) -> None:
    """Two journal entries of a run cannot share a seq: (rk, seq) is the table's key."""
    errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
    if chain.raw.backend == "postgres":
        import psycopg

        errors = (psycopg.errors.UniqueViolation,)
    with pytest.raises(errors):
        chain.raw.execute(
            "INSERT INTO journal SELECT * FROM journal WHERE rk = ? AND seq = 1",
            chain.rk,
        )
    assert chain.raw.scalar("SELECT count(*) FROM journal WHERE rk = ?", chain.rk) == 3
    assert chain.store.verify(chain.run_id).ok


def test_a_forged_chain_needs_the_seal_key(stores: StoreFactory) -> None:
    """Without a key, someone who can write the database can re-seal a changed head
    checkpoint; with one, verify rejects what they made.

    On memory:// no store without the key can be opened on the same database: there,
    that the keyed store's only complaints are keyed seals shows the forged hashes agree.
    """
    key = clew.SealKey("k1", os.urandom(32))
    store = stores.open(seal_key=key)
    run_id = store.create_run(agent="a").run_id
    c1 = store.commit(run_id, state={"amount": 10}, parent=None)
    c2 = store.commit(run_id, state={"amount": 20}, parent=c1.checkpoint_id, metadata={"approved": False})
    assert store.verify(run_id, require_keyed=True).ok
    assert store.verify(run_id).keyed == 3  # two checkpoints and the head of main
    raw = Raw(stores, store)
    try:
        # The forger rewrites c2's metadata and re-seals it and the head with clew's own (unkeyed) functions.
        rk = raw.rk(run_id)
        row = raw.rows(
            "SELECT manifest, created_at FROM checkpoints WHERE rk = ? AND checkpoint_id = ?", rk, c2.checkpoint_id
        )[0]
        meta = store.codec.dumps({"approved": True}, "metadata")[0]
        parent_hash = bytes.fromhex(c1.hash)
        forged = checkpoint_hash(parent_hash, c2.checkpoint_id, "main", "step", bytes(row[0]), meta, row[1], [])
        raw.execute(
            "UPDATE checkpoints SET meta = ?, hash = ? WHERE rk = ? AND checkpoint_id = ?",
            store.codec.wrap(meta),
            forged,
            rk,
            c2.checkpoint_id,
        )
        raw.execute(
            "UPDATE branches SET seal = ? WHERE rk = ? AND name = 'main'",
            head_seal(run_id, "main", c2.checkpoint_id, forged),
            rk,
        )
    finally:
        raw.close()
    if stores.shared_across_processes:
        unkeyed = stores.open()  # a store without the key: the forgery is consistent
        assert unkeyed.verify(run_id).ok and unkeyed.verify(run_id).unkeyed > 0
        # A lost key makes the chain unverifiable, never unreadable.
        assert unkeyed.load_state(run_id, c1.checkpoint_id) == {"amount": 10}
    report = store.verify(run_id)
    assert {("checkpoint", c2.checkpoint_id), ("branch", "main")} <= _kinds(report), report.problems
    assert all("keyed seal" in p.message for p in report.problems)  # every unkeyed hash agrees
    with pytest.raises(clew.errors.IntegrityError, match=r"without the key|keyed seal"):
        store.verify(run_id).raise_for_problems()


def test_require_keyed_reports_rows_without_a_mac(shared_stores: StoreFactory) -> None:
    plain = shared_stores.open()
    run_id = plain.create_run(agent="a").run_id
    plain.commit(run_id, state={"x": 1}, parent=None)
    keyed = shared_stores.open(seal_key=clew.SealKey("k1", os.urandom(32)))
    assert keyed.verify(run_id).ok
    report = keyed.verify(run_id, require_keyed=True)
    assert not report.ok and {p.kind for p in report.problems} == {"checkpoint", "branch"}


def test_require_keyed_reports_macs_removed_behind_the_store(stores: StoreFactory) -> None:
    """The rows of the test above on one keyed store (memory:// too): MACs deleted."""
    store = stores.open(seal_key=clew.SealKey("k1", os.urandom(32)))
    run_id = store.create_run(agent="a").run_id
    c1 = store.commit(run_id, state={"x": 1}, parent=None)
    store.commit(run_id, state={"x": 2}, parent=c1.checkpoint_id)
    assert store.verify(run_id, require_keyed=True).ok
    raw = Raw(stores, store)
    try:
        rk = raw.rk(run_id)
        assert raw.execute("UPDATE checkpoints SET mac = NULL WHERE rk = ? AND checkpoint_id = ?", rk, c1.checkpoint_id)
        assert raw.execute("UPDATE branches SET mac = NULL WHERE rk = ?", rk)
    finally:
        raw.close()
    assert store.verify(run_id).ok and store.verify(run_id).unkeyed == 2
    report = store.verify(run_id, require_keyed=True)
    assert _kinds(report) == {("checkpoint", c1.checkpoint_id), ("branch", "main")}, report.problems
    assert all("has no keyed seal" in p.message for p in report.problems)


def test_a_seal_key_must_be_long_enough() -> None:
    with pytest.raises(clew.errors.ConfigError, match="32 bytes"):
        clew.SealKey("k", b"short")


def test_a_seal_key_longer_than_blake2b_takes_is_refused() -> None:
    with pytest.raises(clew.errors.ConfigError, match=r"'k'.*65 bytes.*at most 64 bytes.*secret\[:64\]"):
        clew.SealKey("k", os.urandom(65))
    with pytest.raises(clew.errors.ConfigError, match=r"'2026-10'.*100 bytes.*at most 64 bytes"):
        clew.SealKey("k", os.urandom(32), old={"2026-10": os.urandom(100)})
    assert clew.SealKey("k", os.urandom(64), old={"o": os.urandom(64)}).key_id == "k"


def test_the_first_64_bytes_of_a_long_secret_verify_what_it_sealed() -> None:
    """What a longer secret sealed before it was refused (BLAKE2b keyed by its first
    64 bytes) checks under ``secret[:64]``, as the refusal says."""
    long = os.urandom(80)
    sealed = os.urandom(32)
    earlier = b"old\0" + hashlib.blake2b(sealed, key=long[:64], digest_size=32, person=b"clew-seal").digest()
    assert clew.SealKey("old", long[:64]).check(sealed, earlier) is True
    assert clew.SealKey("new", os.urandom(32), old={"old": long[:64]}).check(sealed, earlier) is True
    assert clew.SealKey("old", long[1:65]).check(sealed, earlier) is False

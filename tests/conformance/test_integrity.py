"""Integrity: ``verify`` finds any damaged row; ``load_state`` refuses damaged blobs.

Damage is done the way a bad disk or a tamperer would: a raw SQL UPDATE that flips a
byte, behind the store's back.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

import clew
from clew.errors import IntegrityError
from tests.helpers import content
from tests.helpers.raw import Raw

POSITIONS: list[int | str] = [0, 1, 2, "middle", -1]


class Damaged:
    """A run with small (stored raw) and large (compressed) values, a fork and a journal."""

    def __init__(self, store: clew.Store, raw: Raw, run_id: str) -> None:
        self.store, self.raw, self.run_id = store, raw, run_id
        self.rk = raw.rk(run_id)
        rnd = random.Random(5)
        self.states = [
            {"n": 1, "messages": ["hi", "hello"], "doc": content.text(rnd, 3000)},
            {"n": 2, "messages": ["hi", "hello", {"role": "tool", "k": [1, 2]}], "doc": "short"},
            {"n": 3, "messages": ["hi"], "note": {"a": (1, 2)}},
        ]
        c1 = store.commit(run_id, state=self.states[0], parent=None, journal=[("tool", {"q": "kb"})])
        store.append_journal(run_id, [("tool", {"q": content.text(rnd, 2000)}), ("edit", "why")])
        c2 = store.commit(run_id, state=self.states[1], parent=c1.checkpoint_id, metadata={"step": "two"})
        store.fork(run_id, checkpoint_id=c1.checkpoint_id, branch="alt")
        c3 = store.commit(run_id, state=self.states[2], parent=c1.checkpoint_id, branch="alt")
        store.append_journal(run_id, [("tool", "pending")], branch="alt")
        self.ids = [c1.checkpoint_id, c2.checkpoint_id, c3.checkpoint_id]
        assert store.verify(run_id).ok

    def blobs(self) -> list[bytes]:
        return [r[0] for r in self.raw.rows("SELECT addr FROM blobs WHERE rk = ? ORDER BY addr", self.rk)]

    def journal_seqs(self) -> list[int]:
        return [r[0] for r in self.raw.rows("SELECT seq FROM journal WHERE rk = ? ORDER BY seq", self.rk)]

    def flip(self, table: str, column: str, key: str, value: Any, pos: int | str) -> None:
        size = self.raw.scalar(f"SELECT length({column}) FROM {table} WHERE rk = ? AND {key} = ?", self.rk, value)
        at = size // 2 if pos == "middle" else int(pos)
        self.raw.flip(table, column, f"rk = ? AND {key} = ?", (self.rk, value), at)


@pytest.fixture
def damaged(store: clew.Store, raw: Raw, run_id: str) -> Damaged:
    return Damaged(store, raw, run_id)


def _first_problem(store: clew.Store, run_id: str) -> tuple[str, str]:
    report = store.verify(run_id)
    assert not report.ok
    return report.problems[0].kind, report.problems[0].ident


def test_verify_counts_what_it_checked(damaged: Damaged) -> None:
    report = damaged.store.verify(damaged.run_id)
    assert report.ok and report.problems == ()
    counts = damaged.raw.counts(damaged.run_id)
    assert (report.checkpoints, report.blobs, report.journal_entries) == (
        counts["checkpoints"],
        counts["blobs"],
        counts["journal"],
    )
    report.raise_for_problems()  # no problems: no error


def test_verify_finds_a_flipped_byte_in_any_blob(damaged: Damaged) -> None:
    blobs = damaged.blobs()
    assert len(blobs) >= 6
    for addr in blobs:
        for pos in POSITIONS:
            damaged.flip("blobs", "data", "addr", addr, pos)
            assert _first_problem(damaged.store, damaged.run_id) == ("blob", addr.hex()), pos
            damaged.flip("blobs", "data", "addr", addr, pos)  # XOR again: restored
    assert damaged.store.verify(damaged.run_id).ok


@pytest.mark.parametrize("column", ["manifest", "meta", "hash"])
def test_verify_finds_a_flipped_byte_in_any_checkpoint_row(damaged: Damaged, column: str) -> None:
    for cid in damaged.ids:
        for pos in POSITIONS:
            damaged.flip("checkpoints", column, "checkpoint_id", cid, pos)
            assert _first_problem(damaged.store, damaged.run_id) == ("checkpoint", cid), pos
            damaged.flip("checkpoints", column, "checkpoint_id", cid, pos)
    assert damaged.store.verify(damaged.run_id).ok


@pytest.mark.parametrize("column", ["data", "hash"])
def test_verify_finds_a_flipped_byte_in_any_journal_row(damaged: Damaged, column: str) -> None:
    seqs = damaged.journal_seqs()
    assert len(seqs) == 4
    for seq in seqs:
        for pos in POSITIONS:
            damaged.flip("journal", column, "seq", seq, pos)
            assert _first_problem(damaged.store, damaged.run_id) == ("journal", str(seq)), pos
            damaged.flip("journal", column, "seq", seq, pos)
    assert damaged.store.verify(damaged.run_id).ok


def test_verify_finds_rows_moved_or_removed(damaged: Damaged) -> None:
    raw, rk = damaged.raw, damaged.rk
    c1, c2, c3 = damaged.ids
    # A sealed journal entry re-attributed to another checkpoint breaks both seals.
    seq = damaged.journal_seqs()[0]
    raw.execute("UPDATE journal SET checkpoint_id = ? WHERE rk = ? AND seq = ?", c2, rk, seq)
    assert _first_problem(damaged.store, damaged.run_id) == ("checkpoint", c1)
    raw.execute("UPDATE journal SET checkpoint_id = ? WHERE rk = ? AND seq = ?", c1, rk, seq)
    # A rewired parent.
    raw.execute("UPDATE checkpoints SET parent_id = ? WHERE rk = ? AND checkpoint_id = ?", c2, rk, c3)
    assert _first_problem(damaged.store, damaged.run_id) == ("checkpoint", c3)
    raw.execute("UPDATE checkpoints SET parent_id = ? WHERE rk = ? AND checkpoint_id = ?", c1, rk, c3)
    assert damaged.store.verify(damaged.run_id).ok
    # A deleted blob.
    addr = damaged.blobs()[0]
    raw.execute("DELETE FROM blobs WHERE rk = ? AND addr = ?", rk, addr)
    kind, _ = _first_problem(damaged.store, damaged.run_id)
    assert kind == "manifest"
    assert addr.hex() in damaged.store.verify(damaged.run_id).problems[0].message


def test_verify_report_names_the_first_bad_object(damaged: Damaged) -> None:
    _, c2, c3 = damaged.ids
    damaged.flip("checkpoints", "meta", "checkpoint_id", c3, -1)
    damaged.flip("checkpoints", "manifest", "checkpoint_id", c2, "middle")
    report = damaged.store.verify(damaged.run_id)
    assert [(p.kind, p.ident) for p in report.problems] == [("checkpoint", c2), ("checkpoint", c3)]
    with pytest.raises(IntegrityError, match=f"checkpoint {c2}.*and 1 more"):
        report.raise_for_problems()
    # Damage to a blob or a journal entry is reported before the checkpoints it feeds.
    addr = damaged.blobs()[-1]
    damaged.flip("blobs", "data", "addr", addr, -1)
    seq = damaged.journal_seqs()[-1]
    damaged.flip("journal", "hash", "seq", seq, 0)
    kinds = [p.kind for p in damaged.store.verify(damaged.run_id).problems]
    assert kinds[:2] == ["blob", "journal"]
    with pytest.raises(IntegrityError, match=addr.hex()):
        damaged.store.verify(damaged.run_id).raise_for_problems()


def _blob_of(damaged: Damaged, value: Any) -> bytes:
    addr = damaged.store.codec.address(damaged.store.codec.dumps(value)[0])
    assert addr in damaged.blobs()
    return addr


@pytest.mark.parametrize("pos", ["middle", -1])
def test_load_state_refuses_a_flipped_blob(damaged: Damaged, pos: int | str) -> None:
    addr = _blob_of(damaged, damaged.states[2]["note"])
    damaged.flip("blobs", "data", "addr", addr, pos)
    damaged.store._ctx.forget(damaged.run_id)
    with pytest.raises(IntegrityError, match=addr.hex()):
        damaged.store.load_state(damaged.run_id, damaged.ids[2])
    # The checkpoints that do not use the damaged blob still load.
    assert damaged.store.load_state(damaged.run_id, damaged.ids[1]) == damaged.states[1]


@pytest.mark.parametrize(("value", "pos"), [("raw", 0), ("raw", 1), ("compressed", "middle"), ("compressed", -1)])
def test_load_state_refuses_a_blob_whose_envelope_was_damaged(damaged: Damaged, value: str, pos: int | str) -> None:
    field, cid = (
        (damaged.states[0]["doc"], damaged.ids[0])
        if value == "compressed"
        else (damaged.states[2]["note"], damaged.ids[2])
    )
    addr = _blob_of(damaged, field)
    envelope = damaged.raw.scalar("SELECT data FROM blobs WHERE rk = ? AND addr = ?", damaged.rk, addr)
    assert (envelope[1] & 1) == (value == "compressed")  # zstd flag as intended
    damaged.flip("blobs", "data", "addr", addr, pos)
    damaged.store._ctx.forget(damaged.run_id)
    with pytest.raises(IntegrityError, match=addr.hex()):
        damaged.store.load_state(damaged.run_id, cid)


def test_load_state_refuses_a_damaged_manifest(damaged: Damaged) -> None:
    cid = damaged.ids[1]
    size = damaged.raw.scalar("SELECT length(manifest) FROM checkpoints WHERE checkpoint_id = ?", cid)
    outcomes = []
    for pos in range(size):
        for mask in (0x01, 0x80):
            damaged.raw.flip("checkpoints", "manifest", "rk = ? AND checkpoint_id = ?", (damaged.rk, cid), pos, mask)
            damaged.store._ctx.forget(damaged.run_id)
            try:
                damaged.store.load_state(damaged.run_id, cid)
                outcomes.append((pos, mask, "loaded"))
            except IntegrityError:
                pass
            except Exception as exc:
                outcomes.append((pos, mask, type(exc).__name__))
            damaged.raw.flip("checkpoints", "manifest", "rk = ? AND checkpoint_id = ?", (damaged.rk, cid), pos, mask)
    assert outcomes == []

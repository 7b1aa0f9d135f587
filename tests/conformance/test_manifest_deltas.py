"""Manifests stored as changes against their parent's (``store/_manifests.py``).

A step that appends to lists stores a few dozen bytes of manifest instead of every
list root again; chains stay bounded; every checkpoint reads back whole, from a fresh
store too; damage anywhere in a chain fails the seal of what builds on it (and verify
says where); retention turns a change whose base it prunes back into a whole manifest.
"""

from __future__ import annotations

from typing import Any

import pytest

import clew
from clew.codec import Codec, Keyring
from clew.errors import IntegrityError
from clew.store import Retention, _manifests
from tests.conftest import StoreFactory
from tests.helpers.raw import Raw

N = 40


def _states(n: int) -> list[dict[str, Any]]:
    out = []
    log: list[dict[str, Any]] = []
    notes: list[str] = []
    for i in range(n):
        log = [*log, {"role": "user", "text": f"message {i} " * 20}]
        notes = [*notes, f"note {i} " * 30]
        out.append({"log": log, "notes": notes, "i": i, "fixed": "same every step"})
    return out


def _commit_line(store: clew.Store, run_id: str, n: int = N) -> list[str]:
    ids: list[str] = []
    parent = None
    for state in _states(n):
        parent = store.commit(run_id, state=state, parent=parent).checkpoint_id
        ids.append(parent)
    return ids


def _stored(raw: Raw, rk: int, codec: Codec | None = None) -> dict[str, tuple[str | None, bytes]]:
    rows = raw.rows("SELECT checkpoint_id, parent_id, manifest FROM checkpoints WHERE rk = ? ORDER BY seq", rk)
    c = codec or Codec()
    return {cid: (parent, c.unwrap(m) if m[:1] == b"\xc7" else m) for cid, parent, m in rows}


def test_appends_store_small_changes_in_bounded_chains(store: clew.Store, raw: Raw, run_id: str) -> None:
    ids = _commit_line(store, run_id)
    stored = _stored(raw, raw.rk(run_id))
    deltas = [cid for cid, (_, m) in stored.items() if _manifests.is_delta(m)]
    wholes = [cid for cid in stored if cid not in deltas]
    # a whole manifest at the start and at least every CHAIN_MAX checkpoints, changes between
    assert len(wholes) == -(-N // _manifests.CHAIN_MAX)
    assert len(deltas) == N - len(wholes)
    mean_delta = sum(len(stored[c][1]) for c in deltas) / len(deltas)
    mean_whole = sum(len(stored[c][1]) for c in wholes[1:]) / max(1, len(wholes) - 1)
    assert mean_delta * 2 < mean_whole, (mean_delta, mean_whole)
    # every chain reaches a whole manifest within CHAIN_MAX rows
    for cid in ids:
        depth = 0
        while _manifests.is_delta(stored[cid][1]):
            cid = stored[cid][0]  # type: ignore[assignment]
            depth += 1
        assert depth < _manifests.CHAIN_MAX


def test_every_checkpoint_reads_back_whole_from_a_fresh_store(stores: StoreFactory, store: clew.Store) -> None:
    run_id = store.create_run(agent="deltas").run_id
    ids = _commit_line(store, run_id)
    fresh = stores.open()
    fresh._ctx.forget(run_id)  # type: ignore[attr-defined]  # memory: the same store; start cold
    expected = _states(N)
    for i in (N - 1, 0, 17, 5, N - 2):
        assert fresh.load_state(run_id, ids[i]) == expected[i]
    assert fresh.load_states(run_id, ids) == dict(zip(ids, expected, strict=True))
    assert fresh.verify(run_id).ok
    # a commit on top of a checkpoint read back (not written) by this store
    nxt = fresh.commit(run_id, state={**expected[-1], "i": N}, parent=ids[-1])
    assert fresh.load_state(run_id, nxt.checkpoint_id)["i"] == N


def test_a_cold_load_reads_the_chain_in_one_query(stores: StoreFactory, store: clew.Store) -> None:
    from tests.helpers.statements import Counter

    run_id = store.create_run(agent="deltas").run_id
    ids = _commit_line(store, run_id, 20)
    fresh = stores.open()
    fresh._ctx.forget(run_id)  # type: ignore[attr-defined]
    counter = Counter(fresh)
    fresh.load_state(run_id, ids[-1])
    cold = [s for s in counter.sql if "WITH RECURSIVE chain" in s]
    assert len(cold) == 1, counter.sql
    fresh.load_state(run_id, ids[-1])
    fresh.load_state(run_id, ids[-2])  # rebuilt on the way to the head's: remembered
    assert len([s for s in counter.sql if "WITH RECURSIVE chain" in s]) == 1


def test_a_branch_starts_whole_then_builds_on_itself(store: clew.Store, raw: Raw, run_id: str) -> None:
    """A fork's first checkpoint stores its manifest whole: until the branch row exists,
    retention cannot know the fork point is one and may prune it."""
    ids = _commit_line(store, run_id, 10)
    store.fork(run_id, checkpoint_id=ids[4], branch="alt")
    states = _states(10)
    parent = ids[4]
    alt = []
    for i in range(3):
        state = {**states[4], "notes": [*states[4]["notes"], f"alt {i}"], "i": 100 + i}
        parent = store.commit(run_id, state=state, parent=parent, branch="alt").checkpoint_id
        alt.append((parent, state))
    stored = _stored(raw, raw.rk(run_id))
    assert not _manifests.is_delta(stored[alt[0][0]][1])
    assert all(_manifests.is_delta(stored[cid][1]) for cid, _ in alt[1:])
    store._ctx.forget(run_id)  # type: ignore[attr-defined]
    for cid, state in alt:
        assert store.load_state(run_id, cid) == state
    assert store.verify(run_id).ok


def _rewrite_delta(raw: Raw, rk: int, cid: str, edit: Any) -> None:
    plain = raw.scalar("SELECT manifest FROM checkpoints WHERE rk = ? AND checkpoint_id = ?", rk, cid)
    codec = Codec()
    depth, changed, dropped = codec.loads(plain)
    depth, changed, dropped = edit(depth, changed, dropped)
    raw.execute(
        "UPDATE checkpoints SET manifest = ? WHERE rk = ? AND checkpoint_id = ?",
        codec.dumps([depth, changed, dropped])[0],
        rk,
        cid,
    )


def _drop_last_root(depth: int, changed: dict[str, Any], dropped: list[str]) -> tuple[Any, ...]:
    entry = changed["log"]
    return depth, {**changed, "log": ["L", entry[1], entry[2] + 1, entry[3]]}, dropped


def _drop_field(depth: int, changed: dict[str, Any], dropped: list[str]) -> tuple[Any, ...]:
    return depth, changed, [*dropped, "fixed"]


def _deep(depth: int, changed: dict[str, Any], dropped: list[str]) -> tuple[Any, ...]:
    return 99, changed, dropped


@pytest.mark.parametrize("edit", [_drop_last_root, _drop_field, _deep], ids=["root", "field", "depth"])
def test_a_damaged_change_fails_what_builds_on_it(store: clew.Store, raw: Raw, run_id: str, edit: Any) -> None:
    ids = _commit_line(store, run_id, 12)
    rk = raw.rk(run_id)
    victim = ids[5]
    assert _manifests.is_delta(_stored(raw, rk)[victim][1])
    _rewrite_delta(raw, rk, victim, edit)
    store._ctx.forget(run_id)  # type: ignore[attr-defined]
    for cid in (victim, ids[6], ids[-1]):
        with pytest.raises(IntegrityError):
            store.load_state(run_id, cid)
    report = store.verify(run_id)
    assert not report.ok
    assert {p.ident for p in report.problems} >= {victim, ids[6], ids[-1]}
    # the last good checkpoint before it is intact, and a fork from it carries on
    assert store.load_state(run_id, ids[4]) == _states(12)[4]
    store.fork(run_id, checkpoint_id=ids[4], branch="repair")
    fixed = store.commit(run_id, state=_states(12)[5], parent=ids[4], branch="repair")
    assert store.load_state(run_id, fixed.checkpoint_id) == _states(12)[5]


def test_a_missing_base_is_an_integrity_error(store: clew.Store, raw: Raw, run_id: str) -> None:
    ids = _commit_line(store, run_id, 6)
    rk = raw.rk(run_id)
    raw.execute("DELETE FROM checkpoints WHERE rk = ? AND checkpoint_id = ?", rk, ids[0])
    store._ctx.forget(run_id)  # type: ignore[attr-defined]
    with pytest.raises(IntegrityError):
        store.load_state(run_id, ids[3])
    assert not store.verify(run_id).ok


def test_retention_makes_changes_whole_when_it_prunes_their_base(store: clew.Store, raw: Raw) -> None:
    run_id = store.create_run(agent="deltas-gc").run_id
    ids = _commit_line(store, run_id)
    report = store.gc([Retention(agent="deltas-gc", keep_last=5)])
    assert report.checkpoints_pruned == N - 5
    stored = _stored(raw, raw.rk(run_id))
    for cid in ids[-5:]:
        node = cid
        while _manifests.is_delta(stored[node][1]):  # a kept chain never reaches a pruned row
            node = stored[node][0]  # type: ignore[assignment]
            assert stored[node][1], f"{cid} builds on pruned {node}"
    store._ctx.forget(run_id)  # type: ignore[attr-defined]
    expected = _states(N)
    for i in range(N - 5, N):
        assert store.load_state(run_id, ids[i]) == expected[i]
    assert store.verify(run_id).ok
    nxt = store.commit(run_id, state={**expected[-1], "i": -1}, parent=ids[-1])
    assert store.load_state(run_id, nxt.checkpoint_id)["i"] == -1


def test_changes_are_encrypted_like_whole_manifests(stores: StoreFactory) -> None:
    keyring = Keyring({"k1": Keyring.generate()})
    store = stores.open(codec=Codec(keyring=keyring))
    run_id = store.create_run(agent="deltas").run_id
    ids = _commit_line(store, run_id, 20)
    raw = Raw(stores, store)
    try:
        rows = raw.rows("SELECT manifest FROM checkpoints WHERE rk = ?", raw.rk(run_id))
        assert all(m[:1] == b"\xc7" for (m,) in rows)  # every stored manifest is an envelope
        assert not any(b"notes" in m or b"log" in m for (m,) in rows)  # field names are user data
        plains = _stored(raw, raw.rk(run_id), Codec(keyring=keyring))
        assert sum(_manifests.is_delta(m) for _, m in plains.values()) >= 18
    finally:
        raw.close()
    store._ctx.forget(run_id)  # type: ignore[attr-defined]
    assert store.load_state(run_id, ids[-1]) == _states(20)[-1]
    assert store.verify(run_id).ok


def test_a_delta_is_written_only_when_it_pays() -> None:
    codec = Codec()
    parent = _manifests.Known({"a": ["v", b"x" * 16]}, 0)
    whole = {"b": ["v", b"y" * 16]}
    plain = codec.dumps(whole)[0]
    stored, depth = _manifests.to_store(codec, whole, plain, parent)
    assert (stored, depth) == (plain, 0)  # everything changed: the whole one is no bigger
    full = _manifests.Known({"a": ["v", b"x" * 16]}, _manifests.CHAIN_MAX - 1)
    assert _manifests.to_store(codec, {"a": ["v", b"x" * 16]}, b"\x81", full)[1] == 0  # the chain is long enough


class _Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.makedirs, (os.environ["CLEW_TEST_MARKER"],))


def test_a_stored_manifest_is_never_unpickled(stores: StoreFactory, tmp_path: Any, monkeypatch: Any) -> None:
    """Manifests are decoded before their seal is checked: even a store that opted into
    pickle decodes them without it, so a forged row cannot run code."""
    marker = tmp_path / "pickle-ran"
    monkeypatch.setenv("CLEW_TEST_MARKER", str(marker))
    store = stores.open(codec=Codec(allow_pickle=True))
    run_id = store.create_run(agent="deltas").run_id
    ids = _commit_line(store, run_id, 6)
    forged = Codec(allow_pickle=True).dumps([1, {"i": _Boom()}, []])[0]  # a pickle inside a change
    raw = Raw(stores, store)
    try:
        where = "rk = ? AND checkpoint_id = ?"
        raw.execute(f"UPDATE checkpoints SET manifest = ? WHERE {where}", forged, raw.rk(run_id), ids[3])
    finally:
        raw.close()
    store._ctx.forget(run_id)  # type: ignore[attr-defined]
    with pytest.raises(IntegrityError):
        store.load_state(run_id, ids[3])
    assert not store.verify(run_id).ok
    assert not marker.exists()
    assert store.load_state(run_id, ids[2]) == _states(6)[2]


def test_a_stale_remembered_manifest_is_read_again(store: clew.Store, run_id: str) -> None:
    """A remembered parent manifest that is wrong (a commit of this store that did not
    land) does not make an intact checkpoint look damaged: it is rebuilt from the rows."""
    ids = _commit_line(store, run_id, 8)
    memo = store._ctx.manifests  # type: ignore[attr-defined]
    rk = store._ctx.run_keys[run_id]  # type: ignore[attr-defined]
    memo.put(rk, ids[5], _manifests.Known({"i": ["v", b"\0" * 16]}, 1))  # the change does not fit it
    assert store.load_state(run_id, ids[6]) == _states(8)[6]
    good = memo.get(rk, ids[6])
    wrong = {**good.manifest, "fixed": ["v", b"\1" * 16]}  # a field ids[7] does not change: fits, fails the seal
    memo.put(rk, ids[6], _manifests.Known(wrong, 1))
    assert store.load_state(run_id, ids[7]) == _states(8)[7]
    assert memo.get(rk, ids[6]).manifest == good.manifest  # read again from the rows

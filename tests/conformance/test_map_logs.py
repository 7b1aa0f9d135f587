"""Large flat dicts as map logs (``store/_state.py``: manifest entries ``"m"``).

A dict that gains a key each step (tool results by call id, say) writes that entry
and nothing else, wherever the key sorts; changes and deletions are appended the same
way, and the log is written again from the live keys once it is mostly overwritten
changes. Every checkpoint reads back equal, warm, cold and in one history listing;
damage is caught; forks and retention keep what they build on.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

import clew
from clew.errors import IntegrityError
from clew.store import Retention, _state
from tests.conftest import StoreFactory
from tests.helpers import content
from tests.helpers.raw import Raw


def _key(rnd: random.Random) -> str:
    return f"call_{rnd.randrange(16**12):012x}"  # random, as model tool-call ids are


def _grow(store: clew.Store, run_id: str, steps: int, seed: int = 1) -> tuple[list[str], list[dict[str, Any]]]:
    """A line of checkpoints whose ``results`` gains a ~1 KB entry each step."""
    rnd = random.Random(seed)
    results: dict[str, Any] = {}
    ids: list[str] = []
    states: list[dict[str, Any]] = []
    parent = None
    for step in range(steps):
        results = {**results, _key(rnd): content.tool_result(rnd, step, 1000)}
        state = {"results": results, "step": step}
        parent = store.commit(run_id, state=state, parent=parent).checkpoint_id
        ids.append(parent)
        states.append(state)
    return ids, states


def test_a_growing_dict_writes_each_new_entry_once(store: clew.Store, raw: Raw, run_id: str) -> None:
    codec = clew.codec.Codec()
    rnd = random.Random(2)
    results: dict[str, Any] = {}
    parent = None
    written: list[int] = []
    entry_bytes: list[int] = []
    for step in range(200):
        key = _key(rnd)
        results = {**results, key: content.tool_result(rnd, step, 1000)}
        entry_bytes.append(len(codec.dumps({key: results[key]})[0]))
        before = raw.stored_bytes(run_id)
        parent = store.commit(run_id, state={"results": results}, parent=parent).checkpoint_id
        written.append(raw.stored_bytes(run_id) - before)
    assert raw.manifest(run_id, parent)["results"][0] == "m"
    # Past the first few steps a step stores its new entry (compressed) and a small row;
    # a tree would rewrite the leaf the key lands in and the index path above it.
    steady = written[50:]
    assert max(steady) < 1400 + max(entry_bytes), max(steady)
    assert sum(written[100:]) < 1.1 * sum(written[50:100]) * 2  # linear: no growth with the dict's size
    store._ctx.forget(run_id)
    assert store.load_state(run_id, parent)["results"] == results  # type: ignore[arg-type]


def test_keys_load_sorted_as_every_decoded_dict(store: clew.Store, run_id: str) -> None:
    ids, states = _grow(store, run_id, 30)
    store._ctx.forget(run_id)
    want = sorted(states[-1]["results"])
    assert list(store.load_state(run_id, ids[-1])["results"]) == want  # docs/codec.md: dict order is not kept
    assert list(store.load_states(run_id, ids)[ids[-1]]["results"]) == want


def _edit(results: dict[str, Any], rnd: random.Random, step: int) -> dict[str, Any]:
    results = dict(results)
    roll = rnd.random()
    if roll < 0.45 or len(results) < 8:
        results[_key(rnd)] = content.tool_result(rnd, step, rnd.randint(100, 1200))
    elif roll < 0.7:
        results[rnd.choice(list(results))] = {"edited": step, "text": content.text(rnd, 200)}
    elif roll < 0.85:
        for k in rnd.sample(list(results), min(3, len(results))):
            del results[k]
    elif roll < 0.95:
        k = rnd.choice(list(results))  # deleted and set again: it moves to the end
        v = results.pop(k)
        results[k] = v
    # else: unchanged, a new dict object
    return results


@pytest.mark.parametrize("seed", range(3))
def test_random_sets_changes_and_deletions_read_back(stores: StoreFactory, store: clew.Store, seed: int) -> None:
    run_id = store.create_run(agent="maps").run_id
    rnd = random.Random(seed)
    results = {_key(rnd): content.tool_result(rnd, i, 800) for i in range(10)}
    expected: list[tuple[str, dict[str, Any]]] = []
    parent = None
    for step in range(150):
        results = _edit(results, rnd, step)
        state = {"results": results, "step": step}
        parent = store.commit(run_id, state=state, parent=parent).checkpoint_id
        expected.append((parent, copy.deepcopy(state)))
        if step % 40 == 39:  # a writer that has to read its parent back
            store._ctx.forget(run_id)
    fresh = stores.open()
    fresh._ctx.forget(run_id)  # type: ignore[attr-defined]  # memory: the same store; start cold
    for cid, want in expected[::7]:
        assert fresh.load_state(run_id, cid) == want
    ids = [cid for cid, _ in expected]
    assert fresh.load_states(run_id, ids) == dict(expected)
    assert fresh.verify(run_id).ok
    # the log was written again from the live keys whenever it was mostly overwritten changes
    last = store.load_state(run_id, ids[-1])  # the writer now remembers the head as read back
    field = store._ctx._cache[(run_id, "main")].fields["results"]  # type: ignore[attr-defined]
    assert isinstance(field, _state.MapCache)
    assert field.changes <= 2 * len(last["results"]) + _state.MAP_SLACK


def test_a_fork_appends_to_its_parents_log(store: clew.Store, raw: Raw, run_id: str) -> None:
    ids, states = _grow(store, run_id, 120)
    store.fork(run_id, checkpoint_id=ids[60], branch="alt")
    store._ctx.forget(run_id)  # the writer reads the fork point back
    before = raw.stored_bytes(run_id)
    alt = {**states[60]["results"], "call_alt": "a new result " * 40}
    c = store.commit(run_id, state={"results": alt, "step": -1}, parent=ids[60], branch="alt")
    assert raw.stored_bytes(run_id) - before < 3000  # the new entry, not the 61 others again
    store._ctx.forget(run_id)
    assert store.load_state(run_id, c.checkpoint_id)["results"] == alt
    assert store.load_state(run_id, ids[-1]) == states[-1]


def test_a_value_grown_into_a_large_container_makes_the_dict_a_tree(store: clew.Store, raw: Raw, run_id: str) -> None:
    ids, states = _grow(store, run_id, 10)
    results = {**states[-1]["results"], "notes": [f"note {i} " * 40 for i in range(40)]}  # ~13 KB: a tree of its own
    c = store.commit(run_id, state={"results": results, "step": 10}, parent=ids[-1])
    assert raw.manifest(run_id, c.checkpoint_id)["results"][0] == "t"
    smaller = {k: v for k, v in results.items() if k != "notes"}
    d = store.commit(run_id, state={"results": smaller, "step": 11}, parent=c.checkpoint_id)
    assert raw.manifest(run_id, d.checkpoint_id)["results"][0] == "m"
    store._ctx.forget(run_id)
    assert store.load_state(run_id, c.checkpoint_id)["results"] == results
    assert store.load_state(run_id, d.checkpoint_id)["results"] == smaller


def test_keys_that_are_not_all_str_keep_the_dict_in_one_blob(store: clew.Store, raw: Raw, run_id: str) -> None:
    ids, states = _grow(store, run_id, 10)
    mixed: dict[Any, Any] = {**states[-1]["results"], 7: "seven"}
    c = store.commit(run_id, state={"results": mixed, "step": 10}, parent=ids[-1])
    assert raw.manifest(run_id, c.checkpoint_id)["results"][0] == "v"
    store._ctx.forget(run_id)
    assert store.load_state(run_id, c.checkpoint_id)["results"] == mixed


def test_in_place_edits_of_written_values_are_seen(store: clew.Store, run_id: str) -> None:
    ids, states = _grow(store, run_id, 10)
    results = dict(states[-1]["results"])
    results["box"] = {"n": 1, "items": [1, 2]}
    parent = store.commit(run_id, state={"results": results}, parent=ids[-1]).checkpoint_id
    results["box"]["items"].append(3)  # the very object written last time, changed inside
    c = store.commit(run_id, state={"results": results}, parent=parent)
    store._ctx.forget(run_id)
    assert store.load_state(run_id, c.checkpoint_id)["results"]["box"]["items"] == [1, 2, 3]
    assert store.load_state(run_id, parent)["results"]["box"]["items"] == [1, 2]


def _leaf_addrs(raw: Raw, run_id: str, checkpoint_id: str) -> list[bytes]:
    codec = clew.codec.Codec()
    rk = raw.rk(run_id)
    entry = raw.manifest(run_id, checkpoint_id)["results"]
    assert entry[0] == "m", entry
    level = [(bytes(a), int(h)) for a, _, h in entry[2]]
    while any(h for _, h in level):
        out = []
        for a, h in level:
            if h == 0:
                out.append((a, h))
                continue
            data = raw.scalar("SELECT data FROM blobs WHERE rk = ? AND addr = ?", rk, a)
            out.extend((c, h - 1) for c, _ in _state.node_children(codec.unwrap(bytes(data))))
        level = out
    return [a for a, _ in level]


@pytest.mark.parametrize("where", ["last leaf", "first leaf"])
def test_a_flipped_byte_in_a_log_is_caught_and_older_checkpoints_stay_good(
    store: clew.Store, raw: Raw, run_id: str, where: str
) -> None:
    ids, states = _grow(store, run_id, 40)
    leaves = _leaf_addrs(raw, run_id, ids[-1])
    addr = leaves[-1] if where == "last leaf" else leaves[0]
    raw.flip("blobs", "data", "rk = ? AND addr = ?", (raw.rk(run_id), addr), -3)
    store._ctx.forget(run_id)
    with pytest.raises(IntegrityError):
        store.load_state(run_id, ids[-1])
    with pytest.raises(IntegrityError):
        store.load_states(run_id, ids[-3:])
    report = store.verify(run_id)
    assert not report.ok and any(addr.hex() in p.ident + p.message for p in report.problems), report.problems
    if where == "last leaf":  # the checkpoint before the last one never reached that leaf
        assert store.load_state(run_id, ids[-2]) == states[-2]
        c = store.fork(run_id, checkpoint_id=ids[-2], branch="repair")
        assert c is not None


def test_malformed_logs_are_integrity_errors() -> None:
    """Leaves that pass their address check but do not make the map their index nodes and
    manifest describe (a writer's bug, or bytes forged with their address) are refused."""
    with pytest.raises(IntegrityError):
        _state.fold_map([{"a": 1}, [["b"], {}]], "test")  # deletes a key it does not hold
    with pytest.raises(IntegrityError):
        _state.fold_map([{1: 2}], "test")
    with pytest.raises(IntegrityError):  # two changes where its index counts one
        _state.map_of_log([[["a"], {"b": 1}]], [1], 1, "test")
    with pytest.raises(IntegrityError):  # not a leaf at all
        _state.map_of_log(["x"], [1], 1, "test")
    with pytest.raises(IntegrityError):  # two keys where the manifest says three
        _state.map_of_log([{"a": 1, "b": 2}], [2], 3, "test")
    assert _state.map_of_log([{"a": 1, "b": 2}, [["a"], {"c": 3}]], [2, 2], 2, "test") == {"b": 2, "c": 3}


def test_retention_keeps_what_kept_checkpoints_read(store: clew.Store) -> None:
    run_id = store.create_run(agent="maps-gc").run_id
    ids, states = _grow(store, run_id, 60)
    report = store.gc([Retention(agent="maps-gc", keep_last=5)])
    assert report.checkpoints_pruned == 55
    store._ctx.forget(run_id)  # type: ignore[attr-defined]
    for cid, want in zip(ids[-5:], states[-5:], strict=True):
        assert store.load_state(run_id, cid) == want
    assert store.verify(run_id).ok
    nxt = {**states[-1]["results"], "call_after": "after retention"}
    c = store.commit(run_id, state={"results": nxt, "step": 60}, parent=ids[-1])
    assert store.load_state(run_id, c.checkpoint_id)["results"] == nxt


def test_a_step_stores_a_small_manifest_change(store: clew.Store, raw: Raw, run_id: str) -> None:
    from clew.store import _manifests

    _grow(store, run_id, 40)
    rk = raw.rk(run_id)
    rows = raw.rows("SELECT checkpoint_id, manifest FROM checkpoints WHERE rk = ? ORDER BY seq", rk)
    deltas = [m for _, m in rows if _manifests.is_delta(bytes(m))]
    assert len(deltas) >= 30
    assert max(len(m) for m in deltas) < 200  # ["M", count, kept, new roots]: not every root again

"""``load_states``: many checkpoints of one run, each shared blob decoded once."""

from __future__ import annotations

import pytest

import clew
from clew.errors import IntegrityError, NotFoundError
from tests.conformance.test_integrity import Damaged, _blob_of
from tests.helpers.raw import Raw


def _history(store: clew.Store, run_id: str, n: int = 20) -> list[str]:
    """A list that grows by a few items a commit (index nodes included) and a dict that changes."""
    ids: list[str] = []
    items: list[object] = []
    parent = None
    for i in range(n):
        items = [*items, *({"k": i, "j": j, "text": f"item {i}.{j}"} for j in range(3))]
        rec = store.commit(run_id, state={"items": items, "n": i, "same": {"a": 1}}, parent=parent)
        parent = rec.checkpoint_id
        ids.append(parent)
    return ids


def test_load_states_equals_load_state_for_each(store: clew.Store, run_id: str) -> None:
    ids = _history(store, run_id)
    store.fork(run_id, checkpoint_id=ids[3], branch="alt")
    alt = store.commit(run_id, state={"items": ["other"], "n": -1}, parent=ids[3], branch="alt").checkpoint_id
    wanted = [*reversed(ids), alt]
    states = store.load_states(run_id, wanted)
    assert list(states) == wanted
    for cid in wanted:
        assert states[cid] == store.load_state(run_id, cid)


def test_shared_items_are_decoded_once(store: clew.Store, run_id: str) -> None:
    ids = _history(store, run_id)
    states = store.load_states(run_id, ids)
    first, last = states[ids[0]], states[ids[-1]]
    assert all(a is b for a, b in zip(first["items"], last["items"], strict=False))
    assert first["same"] is last["same"]
    assert first["items"] is not last["items"]  # each state has its own list of the shared items


def test_load_states_refuses_a_damaged_blob_and_the_rest_still_loads(store: clew.Store, raw: Raw, run_id: str) -> None:
    damaged = Damaged(store, raw, run_id)
    addr = _blob_of(damaged, damaged.states[2]["note"])
    damaged.flip("blobs", "data", "addr", addr, "middle")
    with pytest.raises(IntegrityError, match=addr.hex()):
        damaged.store.load_states(damaged.run_id, damaged.ids)
    good = damaged.store.load_states(damaged.run_id, damaged.ids[:2])
    assert [good[c] for c in damaged.ids[:2]] == damaged.states[:2]


def test_load_states_of_an_unknown_checkpoint(store: clew.Store, run_id: str) -> None:
    ids = _history(store, run_id, 2)
    with pytest.raises(NotFoundError, match="nope"):
        store.load_states(run_id, [ids[0], "nope"])
    with pytest.raises(NotFoundError):
        store.load_states("no-such-run", ids)


async def test_async_twin(stores: object, astore: clew.AsyncStore) -> None:
    run_id = (await astore.create_run(agent="conformance")).run_id
    parent = None
    ids = []
    for i in range(5):
        parent = (await astore.commit(run_id, state={"items": list(range(i * 70))}, parent=parent)).checkpoint_id
        ids.append(parent)
    states = await astore.load_states(run_id, ids)
    assert [states[c] for c in ids] == [await astore.load_state(run_id, c) for c in ids]


def test_maps_and_nested_values_share_their_pieces(store: clew.Store, run_id: str) -> None:
    """Dicts that gain keys, with lists and dicts nested inside, across a history."""
    ids: list[str] = []
    results: dict[str, object] = {}
    parent = None
    for i in range(30):
        results = {**results, f"call_{i:03}": {"text": f"result {i} " * 40, "tags": [i, f"t{i}"] * 5}}
        state = {"results": results, "doc": {"sections": [f"section {j} " * 30 for j in range(i + 1)]}, "n": i}
        parent = store.commit(run_id, state=state, parent=parent).checkpoint_id
        ids.append(parent)
    states = store.load_states(run_id, ids)
    for cid in ids:
        assert states[cid] == store.load_state(run_id, cid)
    # Once the dict is a tree (past 4 KB), an entry is decoded again only when its leaf changes.
    decoded = {id(states[cid]["results"]["call_000"]["tags"]) for cid in ids[10:]}
    assert len(decoded) <= 3, len(decoded)  # keys added at the end: its leaf closes early

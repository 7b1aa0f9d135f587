"""Maps and nested values: stored as content-defined trees, shared, linear, canonical, checked.

Dataclasses, Pydantic models, containers nested in them and large dicts that nest a
large container are trees of blobs (``clew.store._tree``); a large flat dict is a map
log (tests/conformance/test_map_logs.py). These tests hold every backend to what that promises:
a change writes bytes for what changed plus a path, equal content is stored once
whatever its history, every new kind of row is checked, and a failed commit leaves
nothing behind.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any

import pydantic
import pytest

import clew
from clew.errors import IntegrityError
from clew.store import _tree
from tests.helpers import content
from tests.helpers.raw import Raw


@dataclasses.dataclass
class Memory:
    notes: list[str]
    facts: dict[str, Any]
    owner: str = "ada"


class Profile(pydantic.BaseModel):
    name: str
    history: list[dict[str, Any]] = []
    score: float = 0.0


def _results(n: int, seed: int = 5) -> dict[str, Any]:
    rnd = random.Random(seed)
    return {f"call-{rnd.randrange(10**9):09d}": content.tool_result(rnd, i, 500) for i in range(n)}


def _deep_results(n: int, seed: int = 5) -> dict[str, Any]:
    """:func:`_results` and one entry that is a large container: the dict is a tree."""
    rnd = random.Random(seed)
    return {**_results(n, seed), "nested": {"notes": [content.text(rnd, 300) for _ in range(20)]}}


def _manifest(raw: Raw, run_id: str, checkpoint_id: str) -> dict[str, Any]:
    return raw.manifest(run_id, checkpoint_id)


def _tree_blobs(raw: Raw, run_id: str, checkpoint_id: str, field: str) -> tuple[list[bytes], list[bytes]]:
    """(leaves, index nodes) of a field's tree, read back from the database."""
    codec = clew.codec.Codec()
    rk = raw.rk(run_id)
    entry = _manifest(raw, run_id, checkpoint_id)[field]
    assert entry[0] == "t", entry
    leaves: list[bytes] = []
    nodes: list[bytes] = []
    level = [(bytes(entry[2]), int(entry[3]))]
    while level:
        addr, height = level.pop()
        data = raw.scalar("SELECT data FROM blobs WHERE rk = ? AND addr = ?", rk, addr)
        if height == 0:
            leaves.append(addr)
        else:
            nodes.append(addr)
            level.extend((bytes(a), height - 1) for a, _, _ in clew.codec.Codec().loads(codec.unwrap(bytes(data))))
    return leaves, nodes


def test_a_large_dict_is_a_tree_and_loads_back(store: clew.Store, raw: Raw, run_id: str) -> None:
    results = _deep_results(200)
    c = store.commit(run_id, state={"results": results, "small": {"a": 1}}, parent=None)
    manifest = _manifest(raw, run_id, c.checkpoint_id)
    assert manifest["results"][0] == "t" and manifest["small"][0] == "v"
    leaves, nodes = _tree_blobs(raw, run_id, c.checkpoint_id, "results")
    assert len(leaves) > 10 and nodes  # content-defined leaves of about LEAF_TARGET bytes
    store._ctx.forget(run_id)
    loaded = store.load_state(run_id, c.checkpoint_id)
    assert loaded["results"] == results and list(loaded["results"]) == sorted(results)


def test_nested_dataclasses_and_models_keep_their_types(store: clew.Store, run_id: str) -> None:
    rnd = random.Random(3)
    memory = Memory([content.text(rnd, 300) for _ in range(40)], {"profile": Profile(name="Ada")})
    profile = Profile(name="Bo", history=[{"q": content.text(rnd, 400)} for _ in range(30)])
    state = {"memory": memory, "profile": profile, "both": {"m": memory, "p": profile}}
    c = store.commit(run_id, state=state, parent=None)
    store._ctx.forget(run_id)
    loaded = store.load_state(run_id, c.checkpoint_id)
    assert loaded == state
    assert type(loaded["memory"]) is Memory and type(loaded["memory"].facts["profile"]) is Profile
    assert loaded["profile"].model_fields_set == {"name", "history"}
    assert loaded["both"]["m"] is not loaded["memory"]  # equal subtrees load as separate objects


def test_equal_content_is_stored_once_whatever_its_history(store: clew.Store, raw: Raw, run_id: str) -> None:
    """Keys added one by one, in random order, give the same tree as the whole dict at once."""
    results = _deep_results(120)
    keys = list(results)
    random.Random(9).shuffle(keys)
    grown: dict[str, Any] = {}
    parent = None
    for key in keys:
        grown[key] = results[key]
        parent = store.commit(run_id, state={"r": grown}, parent=parent).checkpoint_id
    blobs = raw.counts(run_id)["blobs"]
    store._ctx.forget(run_id)  # a writer that knows nothing, given the dict built in another order
    again = store.commit(run_id, state={"r": dict(sorted(results.items()))}, parent=parent)
    assert raw.counts(run_id)["blobs"] == blobs
    assert _manifest(raw, run_id, again.checkpoint_id) == _manifest(raw, run_id, parent)  # type: ignore[arg-type]
    # The same content under another field, in a fork, and nested: still no new blob.
    store.fork(run_id, checkpoint_id=again.checkpoint_id, branch="alt")
    store.commit(
        run_id,
        state={"r": results, "copy": dict(results), "nested": {"inner": results}},
        parent=again.checkpoint_id,
        branch="alt",
    )
    index = raw.counts(run_id)["blobs"] - blobs
    assert index <= 3, index  # at most the new leaf and index node of {"inner": ...}


def test_a_growing_dict_writes_bytes_linear_in_its_growth(store: clew.Store, raw: Raw, run_id: str) -> None:
    codec = clew.codec.Codec()
    rnd = random.Random(11)
    results: dict[str, Any] = {}
    parent = None
    written: list[int] = []
    appended = 0
    for step in range(300):
        key = f"call-{rnd.randrange(10**9):09d}"  # lands anywhere in the key order
        results[key] = content.tool_result(rnd, step, 500)
        appended += len(codec.dumps(results[key])[0])
        before = raw.stored_bytes(run_id)
        parent = store.commit(run_id, state={"results": results, "step": step}, parent=parent).checkpoint_id
        written.append(raw.stored_bytes(run_id) - before)
    # Each step writes its leaf and the index path: bounded, whatever the dict's size.
    assert max(written[100:]) < 2 * _tree.LEAF_MAX, max(written[100:])
    first, last = sum(written[:150]), sum(written[150:])
    assert last < 1.5 * first, (first, last)  # linear: the second half costs what the first did
    assert raw.stored_bytes(run_id) < 6 * appended  # whole-dict blobs would be ~150x
    assert store.load_state(run_id, parent)["results"] == results  # type: ignore[arg-type]


def test_a_deep_change_writes_one_path_of_leaves(store: clew.Store, raw: Raw, run_id: str) -> None:
    rnd = random.Random(12)
    memory = Memory([content.text(rnd, 500) for _ in range(400)], {f"k{i}": _results(20, i) for i in range(10)})
    c1 = store.commit(run_id, state={"memory": memory}, parent=None)
    size = raw.stored_bytes(run_id)
    memory.facts["k3"]["extra"] = {"found": True}  # three levels down
    before = raw.stored_bytes(run_id)
    c2 = store.commit(run_id, state={"memory": memory}, parent=c1.checkpoint_id)
    changed = raw.stored_bytes(run_id) - before
    assert changed < 4 * _tree.LEAF_MAX and changed < size / 10, (changed, size)
    memory.notes[200] = "edited"  # a list in the middle, not at its end
    before = raw.stored_bytes(run_id)
    c3 = store.commit(run_id, state={"memory": memory}, parent=c2.checkpoint_id)
    assert raw.stored_bytes(run_id) - before < 4 * _tree.LEAF_MAX
    store._ctx.forget(run_id)
    assert store.load_state(run_id, c3.checkpoint_id) == {"memory": memory}
    assert store.load_state(run_id, c2.checkpoint_id)["memory"].notes[200] != "edited"


@pytest.mark.parametrize("kind", ["leaf", "index node"])
def test_verify_and_load_catch_a_flipped_byte_in_a_tree(store: clew.Store, raw: Raw, run_id: str, kind: str) -> None:
    c1 = store.commit(run_id, state={"small": 1}, parent=None)
    c2 = store.commit(run_id, state={"results": _deep_results(200)}, parent=c1.checkpoint_id)
    leaves, nodes = _tree_blobs(raw, run_id, c2.checkpoint_id, "results")
    addr = leaves[len(leaves) // 2] if kind == "leaf" else nodes[0]
    raw.flip("blobs", "data", "rk = ? AND addr = ?", (raw.rk(run_id), addr), -1)
    report = store.verify(run_id)
    assert [(p.kind, p.ident) for p in report.problems] == [("blob", addr.hex())]
    store._ctx.forget(run_id)
    with pytest.raises(IntegrityError, match=addr.hex()):
        store.load_state(run_id, c2.checkpoint_id)
    assert store.load_state(run_id, c1.checkpoint_id) == {"small": 1}  # the last good one still loads


def test_verify_reports_a_missing_tree_blob(store: clew.Store, raw: Raw, run_id: str) -> None:
    c = store.commit(run_id, state={"results": _deep_results(200)}, parent=None)
    leaves, _ = _tree_blobs(raw, run_id, c.checkpoint_id, "results")
    raw.execute("DELETE FROM blobs WHERE rk = ? AND addr = ?", raw.rk(run_id), leaves[0])
    problems = store.verify(run_id).problems
    assert [(p.kind, p.ident) for p in problems] == [("manifest", c.checkpoint_id)]
    assert leaves[0].hex() in problems[0].message
    store._ctx.forget(run_id)
    with pytest.raises(IntegrityError, match="missing"):
        store.load_state(run_id, c.checkpoint_id)


def test_a_failed_commit_of_a_tree_leaves_nothing(store: clew.Store, raw: Raw, run_id: str) -> None:
    results = _results(150)
    c1 = store.commit(run_id, state={"results": results}, parent=None)
    before = raw.snapshot(run_id)
    results["new"] = {"a": "b" * 3000}
    for query in ("insert_blob", "insert_checkpoint_next"):  # a warm writer commits in one batch
        store._ctx.fault = query
        with pytest.raises(RuntimeError, match="injected fault"):
            store.commit(run_id, state={"results": results}, parent=c1.checkpoint_id)
        store._ctx.fault = None
        assert raw.snapshot(run_id) == before
    # The writer's memory of the failed attempt does not leak into the next commit.
    c2 = store.commit(run_id, state={"results": results}, parent=c1.checkpoint_id)
    store._ctx.forget(run_id)
    assert store.load_state(run_id, c2.checkpoint_id)["results"] == results
    assert store.verify(run_id).ok


def test_a_flipped_byte_in_a_spliced_journal_row_is_caught(store: clew.Store, raw: Raw, run_id: str) -> None:
    result = {"text": content.text(random.Random(13), 2000)}
    store.append_journal(run_id, [("call.outcome", {"key": "k", "result": result})])
    c = store.commit(run_id, state={"results": [result]}, parent=None)
    seq = store.list_journal(run_id, checkpoint_id=c.checkpoint_id)[0].seq
    raw.flip("journal", "data", "rk = ? AND seq = ?", (raw.rk(run_id), seq), -3)
    problems = store.verify(run_id).problems
    assert ("journal", str(seq)) in [(p.kind, p.ident) for p in problems]
    store._ctx.forget(run_id)
    assert store.load_state(run_id, c.checkpoint_id) == {"results": [result]}  # the state does not depend on it


# -- the writer's cache never changes what is written ---------------------------------

_KEYS = [f"k{i:03d}" for i in range(60)]


def _edit(state: dict[str, Any], rnd: random.Random) -> None:
    """One random edit, in place, the way a step changes its state."""
    memory: Memory = state["memory"]
    roll = rnd.random()
    if roll < 0.3:
        state["results"][rnd.choice(_KEYS)] = {"v": content.text(rnd, rnd.randint(10, 900)), "n": rnd.random()}
    elif roll < 0.4 and state["results"]:
        del state["results"][rnd.choice(sorted(state["results"]))]
    elif roll < 0.6:
        memory.notes.append(content.text(rnd, rnd.randint(10, 600)))
    elif roll < 0.7 and memory.notes:
        memory.notes[rnd.randrange(len(memory.notes))] = content.text(rnd, 200)
    elif roll < 0.8 and memory.notes:
        memory.notes.insert(rnd.randrange(len(memory.notes)), "inserted")
    elif roll < 0.9:
        memory.facts.setdefault(rnd.choice("abc"), []).append({"x": content.text(rnd, 300)})
    else:
        state["results"] = dict(state["results"])  # the same content in a new object


@pytest.mark.parametrize("seed", range(6))
def test_incremental_encoding_equals_a_fresh_one(seed: int) -> None:
    """After any edits, the cached writer's manifest and blobs are those of a writer that knows nothing."""
    from clew.store._state import StateCache, StateEncoder
    from clew.store._verify import manifest_addrs

    codec = clew.codec.Codec()
    warm = StateEncoder(codec)
    rnd = random.Random(seed)
    state: dict[str, Any] = {"results": {}, "memory": Memory([], {}), "n": 0}
    previous = None
    stored: dict[bytes, bytes] = {}
    logs = 0
    for step in range(120):
        _edit(state, rnd)
        state["n"] = step
        enc = warm.encode(state, previous)
        stored.update((a, codec.unwrap(bytes(d))) for a, d in enc.blobs.items())
        previous = StateCache(str(step), enc.cache)
        fresh = StateEncoder(codec).encode(state, None)
        assert set(enc.manifest) == set(fresh.manifest)
        for name, entry in enc.manifest.items():
            if entry[0] == "m":  # a map log's layout follows its history: it must hold the state
                logs += 1  # (a fresh writer may keep a dict that shrank in one blob instead)
                assert fresh.manifest[name][0] in ("m", "v") and _fold(entry, stored) == state[name], f"step {step}"
            else:
                assert entry == fresh.manifest[name], f"step {step}"
            # every blob the state needs was written at some step
            assert set(manifest_addrs({name: entry}, stored)) <= set(stored), f"step {step}"
    assert logs > 30  # the results dict was a map log most of the time


def _fold(entry: list[Any], plains: dict[bytes, bytes]) -> dict[str, Any]:
    """A map log's dict, from its blobs."""
    from clew.store import _state

    codec = clew.codec.Codec()
    level = [(bytes(a), int(h)) for a, _, h in entry[2]]
    while any(h for _, h in level):
        level = [
            leaf
            for a, h in level
            for leaf in ([(a, h)] if h == 0 else [(c, h - 1) for c, _ in _state.node_children(plains[a])])
        ]
    return _state.fold_map([codec.loads(plains[a]) for a, _ in level], "test")


def test_in_place_edits_of_written_objects_are_seen(store: clew.Store, run_id: str) -> None:
    """The writer compares with private copies, never with the caller's own objects."""
    rnd = random.Random(14)
    messages = [{"role": "user", "content": content.text(rnd, 300), "meta": {"n": i}} for i in range(30)]
    results = _results(40)
    state = {"messages": messages, "results": results, "small": {"a": [1, 2]}}
    parent = store.commit(run_id, state=state, parent=None).checkpoint_id
    edits = [
        lambda: messages[3].__setitem__("content", "edited in place"),
        lambda: messages[4]["meta"].__setitem__("n", -1),
        lambda: results[sorted(results)[7]].__setitem__("output", "edited in place"),
        lambda: state["small"]["a"].append(3),
    ]
    expected = []
    for edit in edits:  # warm: the writer remembers each commit
        edit()
        parent = store.commit(run_id, state=state, parent=parent).checkpoint_id
        expected.append((parent, copy.deepcopy(state)))
    store._ctx.forget(run_id)
    for cid, want in expected:
        assert store.load_state(run_id, cid) == want

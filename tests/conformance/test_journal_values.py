"""Journal values stored once: a tool call's result kept in state is one row, and still checked.

A journal entry's large top-level values live in blobs (``clew.store._splice``) shaped
like the list leaf that appends the same value to state.
"""

from __future__ import annotations

import random
from typing import Any

import ormsgpack
import pytest

import clew
from clew.codec import Codec
from clew.errors import IntegrityError
from clew.store import _splice
from tests.conftest import StoreFactory
from tests.helpers import content
from tests.helpers.raw import Raw


def _value_blob(result: Any) -> bytes:
    return Codec().address(b"\x91" + Codec().dumps(result)[0])


def _ledgered_steps(store: clew.Store, run_id: str, n: int) -> tuple[list[Any], str]:
    """``n`` steps, each journaling a call's outcome and appending its result to state."""
    rnd = random.Random(4)
    results: list[Any] = []
    parent = None
    for step in range(n):
        result = content.tool_result(rnd, step, 1000)
        store.append_journal(run_id, [("call.outcome", {"key": f"k{step}", "ok": True, "result": result})])
        results = [*results, result]
        parent = store.commit(run_id, state={"results": results, "step": step}, parent=parent).checkpoint_id
    assert parent is not None
    return results, parent


def test_a_result_in_the_journal_and_in_state_is_stored_once(store: clew.Store, raw: Raw, run_id: str) -> None:
    results, head = _ledgered_steps(store, run_id, 40)
    rk = raw.rk(run_id)
    for result in (results[0], results[-1]):
        assert raw.scalar("SELECT count(*) FROM blobs WHERE rk = ? AND addr = ?", rk, _value_blob(result)) == 1
    journal = raw.scalar("SELECT sum(length(data)) FROM journal WHERE rk = ?", rk)
    raw_results = sum(len(Codec().dumps(r)[0]) for r in results)
    assert journal < raw_results / 4  # the rows keep only the small fields and where the result is
    entries = store.list_journal(run_id)
    assert [e.data["result"] for e in entries] == results
    sealed = store.list_journal(run_id, checkpoint_id=head)
    assert [e.data for e in sealed] == [{"key": "k39", "ok": True, "result": results[-1]}]
    assert store.verify(run_id).ok


def test_small_entries_and_other_shapes_are_stored_whole(store: clew.Store, raw: Raw, run_id: str) -> None:
    big = "x" * 2000
    data = [{"result": 1}, [big, big], {1: big}, {"writes": big}, {"answer": big, "result": (big, 1), "x": big}, big]
    store.append_journal(run_id, [("note", d) for d in data])
    assert [e.data for e in store.list_journal(run_id, pending_on="main")] == data
    # Only large results and answers in str-keyed maps go to blobs: two here.
    assert raw.counts(run_id)["blobs"] == 2
    assert store.verify(run_id).ok


def test_verify_and_reads_catch_a_damaged_or_missing_journal_value(store: clew.Store, raw: Raw, run_id: str) -> None:
    results, head = _ledgered_steps(store, run_id, 3)
    rk = raw.rk(run_id)
    journal_only = {"key": "x", "result": {"text": content.text(random.Random(8), 3000)}}
    store.append_journal(run_id, [("call.outcome", journal_only)])
    addr = _value_blob(journal_only["result"])
    raw.flip("blobs", "data", "rk = ? AND addr = ?", (rk, addr), -1)
    assert [(p.kind, p.ident) for p in store.verify(run_id).problems] == [("blob", addr.hex())]
    store._ctx.forget(run_id)
    with pytest.raises(IntegrityError, match=addr.hex()):
        store.list_journal(run_id, pending_on="main")
    raw.execute("DELETE FROM blobs WHERE rk = ? AND addr = ?", rk, addr)
    problems = store.verify(run_id).problems
    assert [p.kind for p in problems] == ["journal"] and addr.hex() in problems[0].message
    with pytest.raises(IntegrityError, match="missing"):
        store.list_journal(run_id, pending_on="main")
    # Nothing else is touched: the last good checkpoint and its journal still read.
    assert store.load_state(run_id, head)["results"] == results
    assert store.list_journal(run_id, checkpoint_id=head)[0].data["result"] == results[-1]


def test_a_failed_journal_append_leaves_no_value_blob(store: clew.Store, raw: Raw, run_id: str) -> None:
    before = raw.snapshot(run_id)
    entry = ("call.outcome", {"key": "k", "result": "y" * 5000})
    for query in ("insert_blob", "insert_journal"):
        store._ctx.fault = query
        with pytest.raises(RuntimeError, match="injected fault"):
            store.append_journal(run_id, [entry])
        store._ctx.fault = None
        assert raw.snapshot(run_id) == before
    store.append_journal(run_id, [entry])
    assert store.list_journal(run_id, pending_on="main")[0].data == entry[1]


def test_a_spliced_row_is_laid_out_as_documented() -> None:
    codec = Codec()
    data = {"a": 1, "result": "z" * 1000, "tail": "t" * 1000}
    plain = codec.dumps(data)[0]
    stored, blobs = _splice.split(codec, data, plain, False)
    assert codec.spliced(stored) and len(blobs) == 1
    body = codec.unwrap(stored)
    assert _splice.join(body, {a: codec.unwrap(b) for a, b in blobs.items()}) == plain


def test_trees_and_journal_values_under_encryption(tmp_path: Any) -> None:
    """Keyed addresses: trees and shared journal values work, and nothing is readable on disk."""
    from clew.codec import Keyring

    path = tmp_path / "enc.db"
    keyring = Keyring({"k1": Keyring.generate()})
    results = {f"c{i:02d}": {"out": f"secret-{i} " * 60} for i in range(60)}
    result = {"out": "secret-result " * 80}
    with clew.open(f"sqlite:///{path}", codec=Codec(keyring=keyring)) as store:
        store.create_run("r", agent="a")
        store.append_journal("r", [("call.outcome", {"key": "x", "result": result})])
        c = store.commit("r", state={"results": results, "list": [result]}, parent=None)
        blobs = store.verify("r").blobs
        store.create_run("no-journal", agent="a")
        store.commit("no-journal", state={"results": results, "list": [result]}, parent=None)
        assert store.verify("no-journal").blobs == blobs  # the journal's copy of the result is the list's leaf
    with clew.open(f"sqlite:///{path}", codec=Codec(keyring=keyring)) as store:
        assert store.load_state("r", c.checkpoint_id) == {"results": results, "list": [result]}
        assert store.list_journal("r", checkpoint_id=c.checkpoint_id)[0].data["result"] == result
        assert store.verify("r").ok and store.verify("r").blobs == blobs
    assert b"secret" not in path.read_bytes()


class _Opaque:
    """A type no codec knows: stored with pickle, when the codec allows it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Opaque) and other.n == self.n


def test_a_value_shared_with_state_is_not_marked_pickled_for_its_neighbour(stores: StoreFactory) -> None:
    """An entry with a pickled value beside its result: the result's blob, which a state's
    list leaf shares, holds no pickle and must not say so, or a reader without the
    pickle opt-in could not load that state."""
    store = stores.open(codec=Codec(allow_pickle=True))
    result = "r" * 1000
    run = store.create_run(agent="p", state={"n": 0})
    head = store.get_branch(run.run_id).head
    store.append_journal(run.run_id, [("call.outcome", {"result": result, "obj": _Opaque(1)})])
    ckpt = store.commit(run.run_id, state={"results": [result]}, parent=head)
    assert store.list_journal(run.run_id)[-1].data == {"result": result, "obj": _Opaque(1)}
    reader = stores.open()  # no pickle opt-in (memory: the one store there is)
    assert reader.load_state(run.run_id, ckpt.checkpoint_id) == {"results": [result]}


def _writes_entry(big: str) -> dict[str, Any]:
    """A LangGraph ``put_writes`` entry: a list, a string, a map, a small value, a pair."""
    return {
        "checkpoint": "c1",
        "task": "t1",
        "path": "p",
        "writes": [
            [0, "messages", [{"text": big}, {"text": "b" * 300}]],
            [1, "note", big],
            [2, "results", {"k": big}],
            [3, "i", 5],
            [4, "pair"],
        ],
    }


def test_write_values_go_to_blobs_bare_or_as_one_item_lists(store: clew.Store, raw: Raw, run_id: str) -> None:
    big = "w" * 1000
    data = _writes_entry(big)
    store.append_journal(run_id, [("writes", data)])
    rk = raw.rk(run_id)
    ((row,),) = raw.rows("SELECT data FROM journal WHERE rk = ?", rk)
    codec = Codec()
    splices = ormsgpack.unpackb(codec.unwrap(row))[1]
    rows = data["writes"]
    # A list or a map is stored as its own bytes (the leaf a state writes for it), flagged
    # bare; anything else as a one-item list, the leaf of appending it.
    assert [[bytes(s[1]), *s[2:]] for s in splices] == [
        [codec.address(codec.dumps(rows[0][2])[0]), _splice.BARE],
        [_value_blob(big)],
        [codec.address(codec.dumps(rows[2][2])[0]), _splice.BARE],
    ]
    assert raw.counts(run_id)["blobs"] == 3
    assert store.list_journal(run_id, pending_on="main")[0].data == data
    # A state that appends those items writes that very leaf: no new blob for it.
    store.commit(run_id, state={"messages": rows[0][2]}, parent=None)
    assert codec.address(codec.dumps(rows[0][2])[0]) in {
        bytes(a) for (a,) in raw.rows("SELECT addr FROM blobs WHERE rk = ?", rk)
    }
    assert store.verify(run_id).ok


def test_only_writes_triples_of_a_top_level_list_go_out_of_line(store: clew.Store, raw: Raw, run_id: str) -> None:
    big = ["v" * 1000]
    data = [
        {"writes": [[0, "a", big, "extra"]]},  # not a triple
        {"nested": {"writes": [[0, "a", big]]}},  # not top level
        {"writes": {"0": [0, "a", big]}},  # not a list
        {"other": [[0, "a", big]]},  # another key
    ]
    store.append_journal(run_id, [("note", d) for d in data])
    assert raw.counts(run_id)["blobs"] == 0
    assert [e.data for e in store.list_journal(run_id, pending_on="main")] == data


def test_a_result_row_keeps_the_layout_rows_had_before(store: clew.Store, raw: Raw, run_id: str) -> None:
    """``result`` and ``answer`` splices have two items, as every spliced row had before
    write values went out of line: such rows, stored by an older clew, read as they did."""
    codec = Codec()
    data = {"key": "k", "result": "r" * 1000}
    store.append_journal(run_id, [("call.outcome", data)])
    ((row,),) = raw.rows("SELECT data FROM journal WHERE rk = ?", raw.rk(run_id))
    plain = codec.dumps(data)[0]
    at = plain.index(codec.dumps("r" * 1000)[0])
    assert codec.unwrap(row) == ormsgpack.packb([plain[:at], [[at, _value_blob("r" * 1000)]]])
    assert store.list_journal(run_id, pending_on="main")[0].data == data
    assert store.verify(run_id).ok


def _spliced(data: Any) -> tuple[bytes, bytes, dict[bytes, bytes]]:
    codec = Codec()
    plain = codec.dumps(data)[0]
    stored, blobs = _splice.split(codec, data, plain, False)
    return plain, codec.unwrap(stored), {a: codec.unwrap(bytes(b)) for a, b in blobs.items()}


def test_a_writes_row_reads_back_with_and_without_joining() -> None:
    codec = Codec()
    data = _writes_entry("j" * 1000)
    plain, body, plains = _spliced(data)
    assert _splice.join(body, plains) == plain
    assert _splice.load(codec, body, plains) == data


def test_a_row_that_does_not_match_its_blobs_is_an_integrity_error() -> None:
    codec = Codec()
    _, body, plains = _spliced(_writes_entry("m" * 1000))
    holes, splices = ormsgpack.unpackb(body)

    def both(splices: list[Any], match: str) -> None:
        changed = ormsgpack.packb([holes, splices])
        for read in (lambda: _splice.join(changed, plains), lambda: _splice.load(codec, changed, plains)):
            with pytest.raises(IntegrityError, match=match):
                read()

    bare, one = splices[0], splices[1]
    both([bare[:2], *splices[1:]], "is not a one-item list")  # a bare blob said to be a one-item list
    both([bare, splices[2], one], "not where|is not")  # out of order
    both([[bare[0] + 3, *bare[1:]], *splices[1:]], "not where")  # a value where none can be
    both([[bare[0], bare[1], 7], *splices[1:]], "malformed")  # an unknown form
    both([[bare[0], "x"], *splices[1:]], "malformed")
    # A one-item list blob with a second item after it is not one item either, nor is a
    # bare blob of a string a list or map.
    addr = bytes(one[1])
    with pytest.raises(IntegrityError, match="is not a one-item list"):
        _splice.join(body, {**plains, addr: plains[addr] + b"\x01"})
    addr = bytes(bare[1])
    with pytest.raises(IntegrityError, match="is not a list or map"):
        _splice.join(body, {**plains, addr: ormsgpack.packb("s" * 600)})


def test_a_result_said_to_be_bare_is_an_integrity_error() -> None:
    """A blob of a one-item list is a list too: where the value sits says which form it
    may have. A ``result`` is always a one-item list. (A write's string said to be bare
    reads as the one-item list it would be bare: only the entry's hash, which ``verify``
    checks, tells such a changed row, as any other change to a row's own bytes.)"""
    _, body, plains = _spliced({"result": "r" * 1000})
    holes, splices = ormsgpack.unpackb(body)
    changed = ormsgpack.packb([holes, [[*splices[0], _splice.BARE]]])
    for read in (lambda: _splice.join(changed, plains), lambda: _splice.load(Codec(), changed, plains)):
        with pytest.raises(IntegrityError, match="not where"):
            read()

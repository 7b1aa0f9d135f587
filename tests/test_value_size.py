"""Big values: a cap that names the field, and 100 MB written and read back whole."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import clew
from clew.codec import Codec, Keyring
from clew.errors import EncodeError, IntegrityError
from tests.conftest import StoreFactory

MB = 1 << 20


def test_a_value_over_the_cap_is_refused_naming_its_field(stores: StoreFactory) -> None:
    store = stores.open(codec=Codec(max_blob_size=1 * MB))
    run = store.create_run(agent="big", state={"small": "ok"})
    head = store.get_branch(run.run_id).head
    assert head is not None
    with pytest.raises(EncodeError, match=r"state\.report.*over the codec's cap of 1,048,576") as err:
        store.commit(run.run_id, state={"small": "ok", "report": os.urandom(2 * MB)}, parent=head)
    assert err.value.path == "state.report"
    with pytest.raises(EncodeError, match=r"state\.pages\[1\]"):
        store.commit(run.run_id, state={"pages": [b"a", os.urandom(2 * MB)]}, parent=head)
    with pytest.raises(EncodeError, match=r"journal\[call\.outcome\]"):
        store.append_journal(run.run_id, [("call.outcome", {"result": os.urandom(2 * MB)})])
    assert store.get_branch(run.run_id).head == head  # nothing moved; the last good checkpoint loads
    assert store.load_state(run.run_id, head) == {"small": "ok"}
    assert store.verify(run.run_id).ok


def test_a_tool_result_over_the_cap_fails_the_run_naming_the_field(stores: StoreFactory) -> None:
    store = stores.open(codec=Codec(max_blob_size=1 * MB))
    agent = clew.Agent("big", state=dict, store=store)

    @agent.step(start=True)
    def fetch(state: dict[str, object], ctx: clew.Context) -> None:
        state["raw"] = ctx.call("download", lambda: os.urandom(2 * MB))

    with pytest.raises(EncodeError, match="over the codec's cap"):
        agent.start({"q": "x"}, run_id="r")
    head = store.get_branch("r").head
    assert head is not None and store.load_state("r", head) == {"q": "x"}


def _values() -> dict[str, object]:
    """Values over the size (1 MB) from which a stored payload is written and read in place."""
    raw = os.urandom(3 * MB)
    text = os.urandom(3 * MB).hex()  # compresses to about half: still big once compressed
    return {
        "raw": raw,
        "text": text,
        "nested": {"page": raw, "note": "n"},  # a dict field: a tree of blobs
        "pages": [b"x", raw, raw],  # the same big item twice: one blob
        "small": b"s" * 100,
    }


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
def test_big_values_round_trip_in_every_form(stores: StoreFactory, encrypted: bool) -> None:
    codec = Codec(keyring=Keyring({"k": bytes(32)})) if encrypted else Codec()
    store = stores.open(codec=codec)
    state = _values()
    run = store.create_run(agent="big", state=state)
    first = store.get_branch(run.run_id).head
    assert first is not None
    # Again with the same big values under other names: their blobs are already stored.
    second = store.commit(run.run_id, state={**state, "again": state["raw"]}, parent=first)
    entry = {"result": state["raw"], "args": {"url": "u"}, "answer": state["text"]}
    store.append_journal(run.run_id, [("call.outcome", entry)])
    for reader in (store, stores.open(codec=codec)):  # this writer, and a store that never saw them
        assert reader.load_state(run.run_id, first) == state
        assert reader.load_state(run.run_id, second.checkpoint_id) == {**state, "again": state["raw"]}
        assert reader.list_journal(run.run_id)[-1].data == entry
        assert reader.verify(run.run_id).ok


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
def test_big_values_in_a_commit_from_the_writer_of_its_parent(stores: StoreFactory, encrypted: bool) -> None:
    """The commits a runtime makes: on the parent it wrote itself, with journal entries, which
    go in one batch; a big value there takes the commit's other path (a big value in a
    batch whose answers are awaited once hung PostgreSQL's pipeline)."""
    codec = Codec(keyring=Keyring({"k": bytes(32)})) if encrypted else Codec()
    store = stores.open(codec=codec)
    raw = os.urandom(3 << 20)  # past the size that is stored in two parts
    run = store.create_run(agent="big", state={"n": 0})
    head = store.get_branch(run.run_id).head
    first = store.commit(run.run_id, state={"n": 1}, parent=head, journal=[("note", {"i": 1})])
    in_state = store.commit(run.run_id, state={"n": 2, "page": raw}, parent=first.checkpoint_id)
    entry = {"result": raw[::-1], "ok": True}
    in_journal = store.commit(
        run.run_id, state={"n": 3, "page": raw}, parent=in_state.checkpoint_id, journal=[("call.outcome", entry)]
    )
    after = store.commit(run.run_id, state={"n": 4, "page": raw}, parent=in_journal.checkpoint_id)
    for reader in (store, stores.open(codec=codec)):
        assert reader.load_state(run.run_id, after.checkpoint_id) == {"n": 4, "page": raw}
        assert reader.list_journal(run.run_id)[-1].data == entry
        assert reader.get_branch(run.run_id).head == after.checkpoint_id
        assert reader.verify(run.run_id).ok


def test_a_changed_byte_in_a_big_blob_is_found(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    store = clew.open(f"sqlite:///{path}")
    raw = os.urandom(2 * MB)
    run = store.create_run(agent="big", state={"raw": raw})
    head = store.get_branch(run.run_id).head
    assert head is not None
    with sqlite3.connect(path) as db:  # one byte of the value itself changed, in place
        (rowid,) = db.execute("SELECT rowid FROM clew_blobs WHERE length(data) > ?", (MB,)).fetchone()
        with db.blobopen("clew_blobs", "data", rowid) as blob:
            blob.seek(MB)
            byte = blob.read(1)[0]
            blob.seek(MB)
            blob.write(bytes((byte ^ 0xFF,)))
    with pytest.raises(IntegrityError, match="does not match its address"):
        clew.open(f"sqlite:///{path}").load_state(run.run_id, head)
    assert not store.verify(run.run_id).ok


# One process per measure, so that its peak resident memory is that measure's own.
_BIG = """
import gc, hashlib, json, os, re, sys, tracemalloc
import clew


def peak_resident():
    # VmHWM: this process's own high-water mark (ru_maxrss would start from the parent's at fork)
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1)) * 1024


size = 100 << 20
url, kind, phase = sys.argv[1:]
store = clew.open(url)
big = os.urandom(size) if phase == "write" else None
gc.collect()
tracemalloc.start()
start = peak_resident()
if phase == "write" and kind == "state":
    store.create_run(kind, agent="big", state={"n": 0})
    store.commit(kind, state={"big": big}, parent=store.get_branch(kind).head)
elif phase == "write":
    store.create_run(kind, agent="big")
    store.append_journal(kind, [("call.outcome", {"result": big, "n": 1})])
elif kind == "state":
    big = store.load_state(kind, store.get_branch(kind).head)["big"]
else:
    big = store.list_journal(kind)[-1].data["result"]
_, peak = tracemalloc.get_traced_memory()
resident = peak_resident() - start
# Bytes allocated at the peak, and the growth of the peak resident memory, beyond the
# value written (made before measuring) or read (counted: it is the result), in sizes of it.
counted = phase == "read"
print(json.dumps([peak / size - counted, resident / size - counted, hashlib.sha256(big).hexdigest()]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["state", "journal"])
def test_a_100_mb_value_is_written_and_read_with_one_working_copy(shared_stores: StoreFactory, kind: str) -> None:
    peaks = {}
    for phase in ("write", "read"):
        out = subprocess.run(
            [sys.executable, "-c", _BIG, shared_stores.url, kind, phase], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, out.stderr[-3000:]
        peaks[phase] = json.loads(out.stdout)
    assert peaks["write"][2] == peaks["read"][2]  # read back whole
    traced, resident, _ = peaks["write"]
    # Besides the value: its encoded bytes, and no other copy of its size (no envelope,
    # no joined row, no copy in a parameter buffer). The encoder's buffer counts about
    # 0.6 more while it grows; resident memory shows no such copy is held.
    assert traced < 1.8, peaks
    # libpq builds each query's message with its parameters in it: one more copy there.
    assert resident < (1.3 if shared_stores.backend == "sqlite" else 2.3), peaks
    traced, resident, _ = peaks["read"]
    # Besides the value read: the stored bytes as fetched, and no copy of its payload.
    assert traced < 1.2, peaks
    assert resident < (1.3 if shared_stores.backend == "sqlite" else 2.3), peaks


async def test_big_values_round_trip_through_the_async_store(astore: clew.AsyncStore) -> None:
    state = _values()
    run = await astore.create_run(agent="big", state=state)
    head = (await astore.get_branch(run.run_id)).head
    assert head is not None
    entry = {"result": state["raw"], "n": 1}
    await astore.append_journal(run.run_id, [("call.outcome", entry)])
    assert await astore.load_state(run.run_id, head) == state
    assert (await astore.list_journal(run.run_id))[-1].data == entry
    assert (await astore.verify(run.run_id)).ok

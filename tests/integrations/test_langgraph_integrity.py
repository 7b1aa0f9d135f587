"""A changed byte in a LangGraph thread is caught: by ``verify``, and on read.

Every read checks a checkpoint's seal (its manifest and metadata) and each state
blob against its address. Pending writes are journal entries sealed in the run's
hash chain: ``verify`` finds a change there, and a saver made with
``verify_reads=True`` refuses to return such a thread. The stock savers return
tampered data as if nothing happened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from clew.codec import Codec
from clew.errors import DecodeError, IntegrityError
from clew.integrations.langgraph import ClewSaver
from tests.conftest import StoreFactory
from tests.integrations import _workload as w
from tests.integrations._graphs import review_graph
from tests.integrations.conftest import thread

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
CODEC = Codec()


@contextmanager
def _db(stores: StoreFactory) -> Iterator[Any]:
    """A raw connection to the store's database, outside clew (as an attacker would have)."""
    if stores.backend == "sqlite":
        conn = sqlite3.connect(stores.path, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(stores.pg, autocommit=True, options=f"-c search_path={stores.schema}") as conn:
            yield conn


def _q(stores: StoreFactory, sql: str) -> str:
    return sql if stores.backend == "sqlite" else sql.replace("?", "%s")


def _rewrite_rows(stores: StoreFactory, table: str, key: str, col: str, change: Callable[[bytes], bytes | None]) -> int:
    """Apply ``change`` to the stored bytes of every row; returns how many rows changed."""
    changed = 0
    with _db(stores) as conn:
        rows = conn.execute(f"SELECT {key}, {col} FROM {table}").fetchall()
        for k, data in rows:
            new = change(bytes(data))
            if new is not None and new != bytes(data):
                conn.execute(_q(stores, f"UPDATE {table} SET {col} = ? WHERE {key} = ?"), (new, k))
                changed += 1
    return changed


def _edit_plaintext(old: bytes, new: bytes) -> Callable[[bytes], bytes | None]:
    def change(blob: bytes) -> bytes | None:
        plain = CODEC.unwrap(blob)
        return CODEC.wrap(plain.replace(old, new)) if old in plain else None

    return change


def _run_workload(stores: StoreFactory, n: int = 5, **options: Any) -> tuple[ClewSaver, Any]:
    saver = ClewSaver(stores.open(), **options)
    graph = w.compile_workload("loop", n, saver)
    w.run(graph, "t", n)
    return saver, graph


def test_edited_message_is_caught_on_read_and_by_verify(stores: StoreFactory) -> None:
    saver, graph = _run_workload(stores)
    last_answer = w.text("answer4", w.HUMAN_BYTES).encode()
    assert _rewrite_rows(stores, "clew_blobs", "addr", "data", _edit_plaintext(last_answer[:30], b"X" * 30)) == 1
    with pytest.raises(IntegrityError, match="does not match its address"):
        graph.get_state(thread())
    assert saver.store is not None
    report = saver.store.verify("t")
    assert not report.ok and report.problems[0].kind == "blob"
    # The pending write of that message shares its blob with the state after it, so the
    # checkpoints whose tuples read that write (step 4's, and step 3's when the write
    # was sealed into its child) name it too. The state before it, and an older
    # checkpoint whole, still load.
    with pytest.raises(IntegrityError, match="does not match its address"):
        saver.get_tuple(_config_before_step(saver, 4))
    state = saver.store.load_state("t", _config_before_step(saver, 4)["configurable"]["checkpoint_id"])
    assert len(state["messages"]) == 13
    older = saver.get_tuple(_config_before_step(saver, 2))
    assert older is not None and len(older.checkpoint["channel_values"]["messages"]) == 7


def _config_before_step(saver: ClewSaver, steps: int) -> Any:
    assert saver.store is not None
    for rec in saver.store.list_checkpoints("t"):
        if rec.metadata.get("step") == steps:
            return {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": rec.checkpoint_id}}
    raise AssertionError("no such step")


def test_flipped_byte_is_caught(stores: StoreFactory) -> None:
    saver, graph = _run_workload(stores)

    def flip(blob: bytes) -> bytes | None:
        if len(blob) < 300:
            return None
        mid = len(blob) // 2
        return blob[:mid] + bytes([blob[mid] ^ 0x01]) + blob[mid + 1 :]

    assert _rewrite_rows(stores, "clew_blobs", "addr", "data", flip) > 0
    with pytest.raises((IntegrityError, DecodeError)):
        graph.get_state(thread())
    assert saver.store is not None and not saver.store.verify("t").ok


def test_edited_pending_write_is_caught(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    graph = review_graph().compile(checkpointer=saver)
    graph.invoke({"messages": [HumanMessage("hi")]}, thread())  # pauses: its interrupt is a pending write
    edited = _rewrite_rows(stores, "clew_journal", "seq", "data", _edit_plaintext(b"approve?", b"approve!"))
    assert edited == 1
    assert saver.store is not None
    report = saver.store.verify("t")
    assert [p.kind for p in report.problems] == ["journal"]
    with pytest.raises(IntegrityError, match="journal"):
        ClewSaver(saver.store, verify_reads=True).get_tuple(thread())


def test_edited_checkpoint_metadata_is_caught(stores: StoreFactory) -> None:
    saver, _ = _run_workload(stores, n=2)

    def bump(blob: bytes) -> bytes | None:
        meta = CODEC.decode(blob)
        if meta.get("step") != 1:
            return None
        meta["step"] = 7
        return CODEC.encode(meta)

    assert _rewrite_rows(stores, "clew_checkpoints", "checkpoint_id", "meta", bump) == 1
    assert saver.store is not None
    report = saver.store.verify("t")
    assert report.problems and report.problems[0].kind == "checkpoint"
    with pytest.raises(IntegrityError, match="does not match its seal"):  # every read checks the seal
        list(ClewSaver(saver.store).list(thread()))

"""LangGraph hands the saver the whole message list at every step; clew stores what changed.

400 steps of the agent workload (tests/integrations/_workload.py: a tool call of
~400 B, a ~1 KB tool result and a ~400 B answer each step) must take less than 3x
the bytes they append, measured as the database's size on disk, and grow linearly.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import clew
from clew.integrations.langgraph import ClewSaver
from tests.conftest import StoreFactory
from tests.integrations import _workload as w
from tests.integrations.conftest import thread

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


def _size(stores: StoreFactory, store: clew.Store) -> int:
    """Bytes on disk: the SQLite file, or every relation (with indexes, TOAST) of the schema."""
    if stores.backend == "sqlite":
        store.checkpoint_wal()  # type: ignore[attr-defined]  # SQLiteStore: fold the WAL in
        return os.path.getsize(stores.path)
    import psycopg

    with psycopg.connect(stores.pg, autocommit=True) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (stores.schema,)).fetchall()
        total = 0
        for (table,) in tables:
            name = f'"{stores.schema}"."{table}"'
            conn.execute(f"VACUUM {name}")
            total += conn.execute("SELECT pg_total_relation_size(%s)", (name,)).fetchone()[0]
        return int(total)


def _grow(stores: StoreFactory, store: clew.Store, thread_id: str, n: int) -> tuple[int, list[Any]]:
    graph = w.compile_workload("loop", n, ClewSaver(store))
    w.run(graph, thread_id, n)
    return _size(stores, store), graph.get_state(thread(thread_id)).values["messages"]


def test_400_steps_store_less_than_3x_what_they_append(stores: StoreFactory) -> None:
    store = stores.open()
    size, messages = _grow(stores, store, "t", 400)
    assert len(messages) == 1 + 3 * 400
    raw = w.raw_bytes(messages[1:])
    assert raw > 700_000
    assert size < 3 * raw, f"{size:,} bytes stored for {raw:,} appended ({size / raw:.2f}x)"
    assert store.verify("t").ok


def test_storage_grows_linearly(stores: StoreFactory) -> None:
    store = stores.open()
    empty = _size(stores, store)
    s100, _ = _grow(stores, store, "a", 100)
    s300, _ = _grow(stores, store, "b", 300)
    per_step_short = (s100 - empty) / 100
    per_step_long = (s300 - s100) / 300
    # Quadratic storage (the whole list each step) would make the long run cost ~3x a step.
    assert per_step_long < 1.3 * per_step_short, (per_step_short, per_step_long)

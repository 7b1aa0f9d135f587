"""Erasure: a run, or every run of a subject, removed for good: no copy left on disk."""

from __future__ import annotations

import time
from typing import Any

import pytest

import clew
from clew.errors import ConfigError, NotFoundError
from tests.helpers.raw import Raw
from tests.helpers.scan import total_copies
from tests.privacy.conftest import spread


def _vacuum_full(stores: Any, store: clew.Store, *markers: str) -> None:
    """What docs/privacy.md tells PostgreSQL operators to run after an erasure.

    VACUUM FULL keeps row versions that a transaction still open anywhere in the database
    may see (other test sessions share this server), so it is repeated until those end.
    """
    import psycopg

    for _ in range(60):
        with psycopg.connect(stores.pg, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c"
                " WHERE c.relnamespace = %s::regnamespace AND c.relkind = 'r'",
                (stores.schema,),
            ).fetchall()
            for (t,) in tables:
                conn.execute(f"VACUUM FULL {t}")
        if not any(total_copies(stores, store, m) for m in markers):
            return
        time.sleep(1)


def test_erase_leaves_no_copy_on_disk(stores: Any, compile_default_off: None) -> None:
    store = stores.open()
    if stores.backend != "postgres":
        assert store._conn.execute("PRAGMA secure_delete").fetchone()[0] == 1  # type: ignore[attr-defined]
    gone, kept = "MARKER-gone-7f3a9c21e", "MARKER-kept-0b8d4e66a"
    spread(store, gone, "gone")
    spread(store, kept, "kept")
    assert total_copies(stores, store, gone)
    report = store.erase("gone")
    assert report.run_ids == ("gone",)
    assert report.checkpoints == 4 and report.blobs > 0 and report.journal_entries > 0 and report.branches == 1
    assert report.scrubbed is (stores.backend != "postgres")
    if stores.backend == "postgres":
        _vacuum_full(stores, store, gone)
    assert total_copies(stores, store, gone) == {}
    assert total_copies(stores, store, kept)  # the scan still sees what was not erased
    with pytest.raises(NotFoundError):
        store.get_run("gone")
    head = store.get_branch("kept").head
    assert head is not None and store.load_state("kept", head)["note"] == kept
    assert store.verify("kept").ok


def test_without_secure_delete_a_delete_leaves_copies(shared_stores: Any, compile_default_off: None) -> None:
    """The control: a plain delete, with secure_delete off and the log not truncated, leaves
    the erased data on disk, which is what the scan above would find."""
    if shared_stores.backend == "postgres":
        store = shared_stores.open()
        spread(store, "MARKER-left-5e2c7a10", "r")
        store.delete_run("r")
        assert total_copies(shared_stores, store, "MARKER-left-5e2c7a10")  # until VACUUM FULL
        return
    store = shared_stores.open()
    store._conn.execute("PRAGMA secure_delete=OFF")  # type: ignore[attr-defined]
    spread(store, "MARKER-left-5e2c7a10", "r")
    store.delete_run("r")
    assert total_copies(shared_stores, store, "MARKER-left-5e2c7a10")


def test_erase_a_subject(stores: Any) -> None:
    store = stores.open()
    spread(store, "MARKER-a1-3c1d", "a1", subject="cust-1")
    spread(store, "MARKER-a2-9e0f", "a2", subject="cust-1")
    spread(store, "MARKER-b1-77aa", "b1", subject="cust-2")
    report = store.erase(subject="cust-1")
    assert sorted(report.run_ids) == ["a1", "a2"] and report.checkpoints == 8
    assert [r.run_id for r in store.list_runs().items] == ["b1"]
    if stores.backend == "postgres":
        _vacuum_full(stores, store, "MARKER-a1-3c1d", "MARKER-a2-9e0f")
    for m in ("MARKER-a1-3c1d", "MARKER-a2-9e0f"):
        assert total_copies(stores, store, m) == {}
    assert store.erase(subject="cust-1").run_ids == ()  # nothing left: erasing again is a no-op
    raw = Raw(stores, store)
    try:
        assert raw.total_rows()["runs"] == 1
    finally:
        raw.close()


def test_erase_needs_one_target(store: clew.Store) -> None:
    with pytest.raises(ConfigError, match="not both"):
        store.erase()
    with pytest.raises(ConfigError, match="not both"):
        store.erase("r", subject="s")
    with pytest.raises(NotFoundError):
        store.erase("nope")


def test_subject_must_be_text(store: clew.Store) -> None:
    agent = clew.Agent("a", state=dict, store=store)

    @agent.step(start=True)
    def s(state: dict[str, Any], ctx: clew.Context) -> None:
        return None

    with pytest.raises(ConfigError, match="subject"):
        agent.start({}, subject="")


async def test_async_erase(stores: Any) -> None:
    sync = stores.open()
    spread(sync, "MARKER-async-1f2e", "r", subject="s")
    if stores.backend == "memory":
        report = sync.erase(subject="s")  # one database per in-memory store: erase it there
    else:
        store = await clew.open_async(stores.url)
        try:
            report = await store.erase(subject="s")
        finally:
            await store.close()
    assert report.run_ids == ("r",)
    assert sync.list_runs().items == []

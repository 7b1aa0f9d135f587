"""Schema migrations: an older database is brought up to date on open, its data intact.

The starting point is a real file written by the schema-3 release
(``tests/fixtures/store_v3.db``, made by ``tests/fixtures/make_store_v3.py``). On
PostgreSQL the same rows are copied into the schema-3 tables that release created.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import clew
from clew.errors import SchemaVersionError
from clew.store._schema import SCHEMA_VERSION
from tests.conftest import StoreFactory

FIXTURE = Path(__file__).parent.parent / "fixtures" / "store_v3.db"
TABLES = ["runs", "branches", "checkpoints", "blobs", "journal"]

# The PostgreSQL schema of release 3, as it created it.
_PG_V3 = [
    """CREATE TABLE runs (
        rk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, agent TEXT NOT NULL,
        status TEXT NOT NULL, labels JSONB NOT NULL, meta BYTEA NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL, lease_owner TEXT, lease_expires DOUBLE PRECISION,
        ckpt_seq BIGINT NOT NULL DEFAULT 0, journal_seq BIGINT NOT NULL DEFAULT 0)""",
    "CREATE INDEX runs_status ON runs (status, lease_expires)",
    "CREATE INDEX runs_agent ON runs (agent, rk)",
    """CREATE TABLE branches (rk BIGINT NOT NULL, name TEXT NOT NULL, head TEXT, base TEXT,
        created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (rk, name))""",
    """CREATE TABLE checkpoints (rk BIGINT NOT NULL, checkpoint_id TEXT NOT NULL, seq BIGINT NOT NULL,
        branch TEXT NOT NULL, parent_id TEXT, kind TEXT NOT NULL, manifest BYTEA NOT NULL, meta BYTEA NOT NULL,
        hash BYTEA NOT NULL, created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (rk, checkpoint_id))""",
    "CREATE INDEX checkpoints_id ON checkpoints (checkpoint_id)",
    "CREATE TABLE blobs (rk BIGINT NOT NULL, addr BYTEA NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (rk, addr))",
    """CREATE TABLE journal (rk BIGINT NOT NULL, seq BIGINT NOT NULL, branch TEXT NOT NULL, checkpoint_id TEXT,
        kind TEXT NOT NULL, data BYTEA NOT NULL, hash BYTEA NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (rk, seq))""",
    "CREATE INDEX journal_pending ON journal (rk, branch, seq) WHERE checkpoint_id IS NULL",
    "CREATE INDEX journal_ckpt ON journal (rk, checkpoint_id, seq)",
    "CREATE INDEX checkpoints_branch ON checkpoints (rk, branch, seq)",
    "CREATE TABLE clew_schema (version INTEGER NOT NULL, applied_at DOUBLE PRECISION NOT NULL)",
]


def _v3_database(stores: StoreFactory) -> None:
    if stores.backend == "sqlite":
        shutil.copy(FIXTURE, stores.path)
        return
    import psycopg

    src = sqlite3.connect(FIXTURE)
    with psycopg.connect(stores.pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{stores.schema}"')
        conn.execute(f'SET search_path TO "{stores.schema}"')
        for stmt in _PG_V3:
            conn.execute(stmt)
        for table in [*TABLES, "clew_schema"]:
            cur = src.execute(f"SELECT * FROM {table}")
            cols = [d[0] for d in cur.description]
            rows = cur.fetchall()
            override = " OVERRIDING SYSTEM VALUE" if table == "runs" else ""
            marks = ", ".join(["%s"] * len(cols))
            with conn.cursor() as c:
                c.executemany(f"INSERT INTO {table} ({', '.join(cols)}){override} VALUES ({marks})", rows)
    src.close()


def _tables(stores: StoreFactory, store: clew.Store) -> set[str]:
    if stores.backend == "sqlite":
        conn = sqlite3.connect(stores.path)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        conn.close()
        return names
    import psycopg

    with psycopg.connect(stores.pg) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (stores.schema,)
        ).fetchall()
    return {r[0] for r in rows}


def _agent(store: clew.Store) -> clew.Agent[dict[str, Any]]:
    agent: clew.Agent[dict[str, Any]] = clew.Agent("legacy", state=dict, store=store, version="3")

    @agent.step(start=True)
    def ask(state: dict[str, Any], ctx: clew.Context) -> str:
        state["n"] = state.get("n", 0) + 1
        state["billing"] = ctx.call("billing", lambda: {"plan": "Pro"})
        state["answer"] = ctx.interrupt({"question": "approve?"})
        return "finish"

    @agent.step
    def finish(state: dict[str, Any], ctx: clew.Context) -> None:
        state["done"] = True

    return agent


def test_a_schema_3_database_is_migrated_with_a_status_per_branch(shared_stores: StoreFactory) -> None:
    _v3_database(shared_stores)
    store = shared_stores.open()
    assert store.migrate() == SCHEMA_VERSION
    assert {f"clew_{t}" for t in TABLES} <= _tables(shared_stores, store)
    assert not set(TABLES) & _tables(shared_stores, store)  # the old names are gone: no clash with other tables
    for run_id in ("legacy-forked", "legacy-done", "legacy-paused", "legacy-failed"):
        report = store.verify(run_id)
        assert report.ok, report.problems
    statuses = {b.name: b.status for b in store.list_branches("legacy-forked")}
    # Release 3 called this run "completed" although main still waited for its answer.
    assert statuses == {"main": "paused", "alt": "completed"}
    assert store.get_run("legacy-forked").status == "paused"
    assert "branch" not in store.get_run("legacy-forked").metadata
    assert {r.run_id for r in store.list_runs(status="paused")} == {"legacy-forked", "legacy-paused"}
    assert store.get_run("legacy-done").status == "completed"
    failed = store.get_branch("legacy-failed")
    assert failed.status == "failed" and failed.error is not None and "kb down" in failed.error["message"]
    # Both lines live on: main can still be answered, with the code that wrote it.
    run = _agent(store).resume("legacy-forked", answer="approved", actor="carol")
    assert (run.status, run.branch, run.state["answer"]) == ("completed", "main", "approved")
    assert store.get_run("legacy-forked").status == "completed"
    assert store.verify("legacy-forked").ok
    assert shared_stores.open().migrate() == SCHEMA_VERSION  # a second open changes nothing


def test_a_new_database_is_created_at_the_current_version(stores: StoreFactory) -> None:
    store = stores.open()
    assert store.migrate() == SCHEMA_VERSION
    run = store.create_run(agent="m")
    head = store.commit(run.run_id, state={"log": ["a", "b"]}, parent=None, journal=[("note", 1)])
    assert store.load_state(run.run_id, head.checkpoint_id) == {"log": ["a", "b"]}
    assert store.verify(run.run_id).ok


def test_a_newer_database_is_refused(shared_stores: StoreFactory) -> None:
    store = shared_stores.open()
    if shared_stores.backend == "sqlite":
        conn = sqlite3.connect(shared_stores.path)
        conn.execute("INSERT INTO clew_schema (version, applied_at) VALUES (?, ?)", (SCHEMA_VERSION + 1, time.time()))
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(shared_stores.pg, autocommit=True) as conn:
            conn.execute(
                f'INSERT INTO "{shared_stores.schema}".clew_schema (version, applied_at) VALUES (%s, 0)',
                (SCHEMA_VERSION + 1,),
            )
    store.close()
    with pytest.raises(SchemaVersionError, match="upgrade clew"):
        clew.open(shared_stores.url)

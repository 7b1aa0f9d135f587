"""Schema migrations: an older database is brought up to date on open, its data intact."""

from __future__ import annotations

import time

import pytest

import clew
from clew.errors import SchemaVersionError
from clew.store._sql import MIGRATIONS, SCHEMA_TABLE, SCHEMA_VERSION
from tests.conftest import StoreFactory


def _make_v1(shared_stores: StoreFactory) -> None:
    """A database as the first clew release left it: version 1, no newer migration."""
    dialect = "sqlite" if shared_stores.backend == "sqlite" else "postgres"
    statements = [SCHEMA_TABLE[dialect], *MIGRATIONS[dialect][0]]
    if dialect == "sqlite":
        import sqlite3

        conn = sqlite3.connect(shared_stores.path)
        for stmt in statements:
            conn.execute(stmt)
        conn.execute("INSERT INTO clew_schema (version, applied_at) VALUES (1, ?)", (time.time(),))
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(shared_stores.pg, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{shared_stores.schema}"')
            conn.execute(f'SET search_path TO "{shared_stores.schema}"')
            for stmt in statements:
                conn.execute(stmt)
            conn.execute("INSERT INTO clew_schema (version, applied_at) VALUES (1, %s)", (time.time(),))


def test_an_old_database_is_migrated_on_open(shared_stores: StoreFactory) -> None:
    _make_v1(shared_stores)
    store = shared_stores.open()
    assert store.migrate() == SCHEMA_VERSION
    run = store.create_run(agent="m")
    head = store.commit(run.run_id, state={"log": ["a", "b"]}, parent=None, journal=[("note", 1)])
    assert store.load_state(run.run_id, head.checkpoint_id) == {"log": ["a", "b"]}
    assert store.verify(run.run_id).ok
    assert shared_stores.open().migrate() == SCHEMA_VERSION  # a second open changes nothing


def test_a_newer_database_is_refused(shared_stores: StoreFactory) -> None:
    store = shared_stores.open()
    if shared_stores.backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(shared_stores.path)
        conn.execute("INSERT INTO clew_schema (version, applied_at) VALUES (?, 0)", (SCHEMA_VERSION + 1,))
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

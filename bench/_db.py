"""Databases for the benchmarks: where they live, how big they are, how to throw them away.

Bytes stored are measured the same way for every system: a SQLite file after its
write-ahead log is folded in, and on PostgreSQL the total size (heap, indexes, TOAST)
of the tables in the system's own schema.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_DEFAULT = (
    os.environ.get("CLEW_BENCH_PG_URL")
    or os.environ.get("CLEW_TEST_PG_URL")
    or "postgresql://postgres@127.0.0.1:5432/test"
)


def sqlite_bytes(path: str) -> int:
    """The file's size after a WAL checkpoint (call it once every writer is closed)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def sqlite_connect(path: str, *, autocommit: bool = True) -> sqlite3.Connection:
    """A connection with clew's pragmas: WAL and ``synchronous=NORMAL`` (survives a process crash).

    Every SQLite system in the suite gets the same durability, so the stock saver
    does not pay for the fsync per commit of SQLite's default ``synchronous=FULL``.
    ``autocommit=False`` keeps Python's default transaction handling (what
    ``SqliteSaver`` expects: it calls ``commit()`` itself).
    """
    if autocommit:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    else:
        conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def pg_available(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def pg_bytes(url: str, schema: str) -> int:
    """``pg_total_relation_size`` summed over the schema's tables."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def pg_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def new_schema(url: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return name


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def schema(url: str) -> Iterator[str]:
    """A fresh schema, dropped on exit."""
    name = new_schema(url)
    try:
        yield name
    finally:
        drop_schema(url, name)

"""The database schema: the current one for a new database, and the migrations that
bring an older one up to date. No I/O here: :func:`migrate` is an operation.

A new database is created at the current version in one go; an existing one runs the
migrations from its version on, in one transaction, under a lock. Every table is keyed
by the run's internal key ``rk`` first, so the schema can be sharded by run, and every
name starts with ``clew_``, so clew can share a database (or a schema) with other
libraries' tables, LangGraph's savers included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from clew.errors import SchemaVersionError
from clew.store._query import Context, Op, Q
from clew.store._read import head_row_seal

SCHEMA_VERSION = 8


# Workers claim the highest priority first, then the oldest: an index walk, whatever the backlog.
_QUEUE_INDEX = "CREATE INDEX clew_branches_queue ON clew_branches (status, priority DESC, created_at)"


def _current(blob: str, real: str, ident: str) -> list[str]:
    return [
        f"""CREATE TABLE clew_runs (
            rk {ident},
            run_id TEXT NOT NULL UNIQUE,
            agent TEXT NOT NULL,
            status TEXT NOT NULL,
            labels {"TEXT" if blob == "BLOB" else "JSONB"} NOT NULL,
            meta {blob} NOT NULL,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL,
            ckpt_seq BIGINT NOT NULL DEFAULT 0,
            journal_seq BIGINT NOT NULL DEFAULT 0,
            dek {blob})""",
        "CREATE INDEX clew_runs_status ON clew_runs (status, rk)",
        "CREATE INDEX clew_runs_agent ON clew_runs (agent, rk)",
        f"""CREATE TABLE clew_branches (
            rk BIGINT NOT NULL, name TEXT NOT NULL, head TEXT, base TEXT,
            created_at {real} NOT NULL,
            status TEXT NOT NULL DEFAULT 'running',
            error {blob},
            lease_owner TEXT,
            lease_expires {real},
            epoch BIGINT NOT NULL DEFAULT 0,
            seal {blob},
            updated_at {real} NOT NULL DEFAULT 0,
            mac {blob},
            priority BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (rk, name))""",
        "CREATE INDEX clew_branches_status ON clew_branches (status, lease_expires)",
        _QUEUE_INDEX,
        f"""CREATE TABLE clew_checkpoints (
            rk BIGINT NOT NULL, checkpoint_id TEXT NOT NULL, seq BIGINT NOT NULL,
            branch TEXT NOT NULL, parent_id TEXT, kind TEXT NOT NULL,
            manifest {blob} NOT NULL, meta {blob} NOT NULL, hash {blob} NOT NULL,
            created_at {real} NOT NULL, mac {blob}, PRIMARY KEY (rk, checkpoint_id))""",
        "CREATE INDEX clew_checkpoints_id ON clew_checkpoints (checkpoint_id)",
        "CREATE INDEX clew_checkpoints_branch ON clew_checkpoints (rk, branch, seq)",
        # A rowid table on SQLite on purpose: WITHOUT ROWID spills any row over ~1 KB to a
        # whole overflow page, which more than tripled the file for ~1 KB tool results.
        f"""CREATE TABLE clew_blobs (
            rk BIGINT NOT NULL, addr {blob} NOT NULL, data {blob} NOT NULL,
            PRIMARY KEY (rk, addr))""",
        f"""CREATE TABLE clew_journal (
            rk BIGINT NOT NULL, seq BIGINT NOT NULL, branch TEXT NOT NULL,
            checkpoint_id TEXT, kind TEXT NOT NULL, data {blob} NOT NULL, hash {blob} NOT NULL,
            created_at {real} NOT NULL, hv SMALLINT NOT NULL DEFAULT 2, PRIMARY KEY (rk, seq))""",
        "CREATE INDEX clew_journal_pending ON clew_journal (rk, branch, seq) WHERE checkpoint_id IS NULL",
        "CREATE INDEX clew_journal_ckpt ON clew_journal (rk, checkpoint_id, seq)",
    ]


CURRENT: dict[str, list[str]] = {
    "sqlite": _current("BLOB", "REAL", "INTEGER PRIMARY KEY"),
    "postgres": _current("BYTEA", "DOUBLE PRECISION", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
}
SCHEMA_TABLE: dict[str, str] = {
    "sqlite": "CREATE TABLE IF NOT EXISTS clew_schema (version INTEGER NOT NULL, applied_at REAL NOT NULL)",
    "postgres": (
        "CREATE TABLE IF NOT EXISTS clew_schema (version INTEGER NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
    ),
}

# -- migrations of existing databases ------------------------------------------------
# Entry i brings a database from version i + 1 to i + 2 (version 1 was the first
# release). An entry is SQL text, or an operation for what SQL alone cannot do.

Step = str | Callable[[Context], Op[None]]

# Version 2: the journal's indexes end in ``seq``, so reading a checkpoint's (or a
# branch's pending) entries in order is an index range, not a scan of the run's journal.
_JOURNAL_INDEXES_BY_SEQ: list[Step] = [
    "DROP INDEX journal_pending",
    "DROP INDEX journal_ckpt",
    "CREATE INDEX journal_pending ON journal (rk, branch, seq) WHERE checkpoint_id IS NULL",
    "CREATE INDEX journal_ckpt ON journal (rk, checkpoint_id, seq)",
]
# Version 3: a branch's own checkpoints in order, for listing history without walking
# parent links one row at a time.
_CHECKPOINTS_BY_BRANCH: list[Step] = ["CREATE INDEX checkpoints_branch ON checkpoints (rk, branch, seq)"]
# Version 4: ``clew_`` names; status, error and lease (with a fencing epoch) per branch;
# branch heads sealed; journal hashes that bind their run (``hv`` 2).
_RENAMES = [("runs", "clew_runs"), ("branches", "clew_branches"), ("checkpoints", "clew_checkpoints")]
_RENAMES += [("blobs", "clew_blobs"), ("journal", "clew_journal")]
_OLD_INDEXES = ["runs_status", "runs_agent", "checkpoints_id", "checkpoints_branch", "journal_pending", "journal_ckpt"]


def _per_branch(blob: str, real: str) -> list[Step]:
    return [
        *[f"DROP INDEX {name}" for name in _OLD_INDEXES],
        *[f"ALTER TABLE {old} RENAME TO {new}" for old, new in _RENAMES],
        "ALTER TABLE clew_branches ADD COLUMN status TEXT NOT NULL DEFAULT 'running'",
        f"ALTER TABLE clew_branches ADD COLUMN error {blob}",
        "ALTER TABLE clew_branches ADD COLUMN lease_owner TEXT",
        f"ALTER TABLE clew_branches ADD COLUMN lease_expires {real}",
        "ALTER TABLE clew_branches ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0",
        f"ALTER TABLE clew_branches ADD COLUMN seal {blob}",
        f"ALTER TABLE clew_branches ADD COLUMN updated_at {real} NOT NULL DEFAULT 0",
        f"ALTER TABLE clew_branches ADD COLUMN mac {blob}",
        f"ALTER TABLE clew_checkpoints ADD COLUMN mac {blob}",
        "ALTER TABLE clew_journal ADD COLUMN hv SMALLINT NOT NULL DEFAULT 1",
        _branch_status_from_runs,
        "ALTER TABLE clew_runs DROP COLUMN lease_owner",
        "ALTER TABLE clew_runs DROP COLUMN lease_expires",
        *[s for s in CURRENT["sqlite"] if s.startswith("CREATE INDEX") and s != _QUEUE_INDEX],
    ]


def _branch_status_from_runs(ctx: Context) -> Op[None]:
    """Before version 4 a run had one status and lease, applied to the branch named in its
    metadata (``main`` by default). That branch takes them; every other branch gets the
    status its head shows: paused at a question, completed, or failed (stopped when the
    run moved to another branch: ``resume`` continues it)."""
    p = "?" if ctx.d.name == "sqlite" else "%s"
    runs = yield Q("SELECT rk, run_id, status, meta, lease_owner, lease_expires, updated_at FROM clew_runs", (), "all")
    for rk, run_id, status, meta, owner, expires, updated in runs:
        run_meta = _decode(ctx, meta)
        active = run_meta.get("branch", "main")
        error = run_meta.get("error")
        branches = yield Q(
            "SELECT b.name, b.head, c.kind, c.meta, c.hash FROM clew_branches b"
            f" LEFT JOIN clew_checkpoints c ON c.rk = b.rk AND c.checkpoint_id = b.head WHERE b.rk = {p}",
            (rk,),
            "all",
        )
        for name, head, kind, ckpt_meta, head_hash in branches:
            lease: tuple[Any, Any] = (None, None)
            err = None
            if name == active:
                b_status, lease = status, (owner, expires)
                err = error if status == "failed" else None
            elif kind in ("interrupt", "unknown_outcome", "edit"):
                b_status = "paused"
            elif head is not None and _decode(ctx, ckpt_meta).get("next", "") is None:
                b_status = "completed"
            else:
                b_status = "failed"
                err = {
                    "type": "clew.errors.RunStatusError",
                    "message": f"branch {name!r} stopped when the run moved to branch {active!r}; "
                    "resume it to continue",
                }
            seal, mac = head_row_seal(ctx, run_id, name, head, bytes(head_hash) if head_hash is not None else None)
            yield Q(
                f"UPDATE clew_branches SET status = {p}, error = {p}, lease_owner = {p}, lease_expires = {p},"
                f" epoch = {p}, seal = {p}, mac = {p}, updated_at = {p} WHERE rk = {p} AND name = {p}",
                (
                    b_status,
                    ctx.codec.encode(err, "error") if err is not None else None,
                    lease[0],
                    lease[1],
                    1 if lease[0] is not None else 0,
                    seal,
                    mac,
                    updated,
                    rk,
                    name,
                ),
                "rowcount",
            )
        meta_left = {k: v for k, v in run_meta.items() if k not in ("branch", "error")}
        yield Q(
            f"UPDATE clew_runs SET meta = {p} WHERE rk = {p}", (ctx.codec.encode(meta_left, "metadata"), rk), "rowcount"
        )
        yield Q(ctx.d.sql["refresh_run_status"], (time.time(), rk), "rowcount")


def _decode(ctx: Context, data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        value = ctx.codec.decode(bytes(data))
    except Exception:  # a damaged row: verify() reports it; the migration must go on
        return {}
    return dict(value) if isinstance(value, dict) else {}


# Version 5: each run's data key, wrapped by a keyring key (NULL: a run written before
# data keys, or in the clear; empty: a data subject's run, under the subject's own key).
def _data_keys(blob: str) -> list[Step]:
    return [f"ALTER TABLE clew_runs ADD COLUMN dek {blob}"]


# Version 6: a branch's queue priority (``Agent.enqueue(priority=...)``), and the index
# workers claim by.
_PRIORITY: list[Step] = ["ALTER TABLE clew_branches ADD COLUMN priority BIGINT NOT NULL DEFAULT 0", _QUEUE_INDEX]


# Version 7: no table changes. Manifests may now be stored as changes against the
# parent's (store/_manifests.py), which earlier versions would misread as damaged rows:
# the version makes them refuse the store instead ("upgrade clew").
_MANIFEST_CHANGES: list[Step] = []


# Version 8: no table changes. Large flat dicts may be stored as map logs (manifest
# entries "m", store/_state.py), and journal rows may keep LangGraph's written values
# in blobs (store/_splice.py): formats earlier versions cannot read.
_MAP_LOGS: list[Step] = []


MIGRATIONS: dict[str, list[list[Step]]] = {
    "sqlite": [
        _JOURNAL_INDEXES_BY_SEQ,
        _CHECKPOINTS_BY_BRANCH,
        _per_branch("BLOB", "REAL"),
        _data_keys("BLOB"),
        _PRIORITY,
        _MANIFEST_CHANGES,
        _MAP_LOGS,
    ],
    "postgres": [
        _JOURNAL_INDEXES_BY_SEQ,
        _CHECKPOINTS_BY_BRANCH,
        _per_branch("BYTEA", "DOUBLE PRECISION"),
        _data_keys("BYTEA"),
        _PRIORITY,
        _MANIFEST_CHANGES,
        _MAP_LOGS,
    ],
}
"""Upgrades of existing databases; a new one is created from :data:`CURRENT`."""


def migrate(ctx: Context, prelude: list[Q]) -> Op[int]:
    """Bring the schema up to date; returns its version. The runner holds the lock.

    ``prelude`` runs first in the same transaction (PostgreSQL: schema and lock).
    """
    for q in prelude:  # noqa: UP028 - runners send results back; a list iterator cannot take them
        yield q
    yield Q(SCHEMA_TABLE[ctx.d.name], (), "exec")
    row = yield Q("SELECT max(version) FROM clew_schema", (), "one")
    version = int(row[0] or 0)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database has clew schema version {version}; this clew knows up to {SCHEMA_VERSION}: upgrade clew"
        )
    if version == SCHEMA_VERSION:
        return version
    p = "?" if ctx.d.name == "sqlite" else "%s"
    record = f"INSERT INTO clew_schema (version, applied_at) VALUES ({p}, {p})"
    if version == 0:
        for stmt in CURRENT[ctx.d.name]:
            yield Q(stmt, (), "exec")
        yield Q(record, (SCHEMA_VERSION, time.time()), "exec")
        return SCHEMA_VERSION
    for v in range(version, SCHEMA_VERSION):
        for step in MIGRATIONS[ctx.d.name][v - 1]:
            if isinstance(step, str):
                yield Q(step, (), "exec")
            else:
                yield from step(ctx)
        yield Q(record, (v + 1, time.time()), "exec")
    return SCHEMA_VERSION

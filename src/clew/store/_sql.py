"""SQL text for each dialect, and the schema migrations. No I/O here.

Queries are written once with ``?`` placeholders; the PostgreSQL dialect turns them
into ``%s``. Where the dialects differ the text is given per dialect. Every table is
keyed by the run's internal key ``rk`` first, so the schema can be sharded by run.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 3

_SQLITE_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS clew_schema (version INTEGER NOT NULL, applied_at REAL NOT NULL)""",
    """CREATE TABLE runs (
        rk INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        agent TEXT NOT NULL,
        status TEXT NOT NULL,
        labels TEXT NOT NULL,
        meta BLOB NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        lease_owner TEXT,
        lease_expires REAL,
        ckpt_seq INTEGER NOT NULL DEFAULT 0,
        journal_seq INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX runs_status ON runs (status, lease_expires)",
    "CREATE INDEX runs_agent ON runs (agent, rk)",
    """CREATE TABLE branches (
        rk INTEGER NOT NULL, name TEXT NOT NULL, head TEXT, base TEXT,
        created_at REAL NOT NULL, PRIMARY KEY (rk, name)) WITHOUT ROWID""",
    """CREATE TABLE checkpoints (
        rk INTEGER NOT NULL, checkpoint_id TEXT NOT NULL, seq INTEGER NOT NULL,
        branch TEXT NOT NULL, parent_id TEXT, kind TEXT NOT NULL,
        manifest BLOB NOT NULL, meta BLOB NOT NULL, hash BLOB NOT NULL,
        created_at REAL NOT NULL, PRIMARY KEY (rk, checkpoint_id)) WITHOUT ROWID""",
    "CREATE INDEX checkpoints_id ON checkpoints (checkpoint_id)",
    # A rowid table on purpose: WITHOUT ROWID spills any row over ~1 KB to a whole
    # overflow page, which more than tripled the file for ~1 KB tool results.
    """CREATE TABLE blobs (
        rk INTEGER NOT NULL, addr BLOB NOT NULL, data BLOB NOT NULL,
        PRIMARY KEY (rk, addr))""",
    """CREATE TABLE journal (
        rk INTEGER NOT NULL, seq INTEGER NOT NULL, branch TEXT NOT NULL,
        checkpoint_id TEXT, kind TEXT NOT NULL, data BLOB NOT NULL, hash BLOB NOT NULL,
        created_at REAL NOT NULL, PRIMARY KEY (rk, seq))""",
    "CREATE INDEX journal_pending ON journal (rk, branch) WHERE checkpoint_id IS NULL",
    "CREATE INDEX journal_ckpt ON journal (rk, checkpoint_id)",
]

_PG_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS clew_schema (version INTEGER NOT NULL, applied_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE runs (
        rk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        agent TEXT NOT NULL,
        status TEXT NOT NULL,
        labels JSONB NOT NULL,
        meta BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        lease_owner TEXT,
        lease_expires DOUBLE PRECISION,
        ckpt_seq BIGINT NOT NULL DEFAULT 0,
        journal_seq BIGINT NOT NULL DEFAULT 0)""",
    "CREATE INDEX runs_status ON runs (status, lease_expires)",
    "CREATE INDEX runs_agent ON runs (agent, rk)",
    """CREATE TABLE branches (
        rk BIGINT NOT NULL, name TEXT NOT NULL, head TEXT, base TEXT,
        created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (rk, name))""",
    """CREATE TABLE checkpoints (
        rk BIGINT NOT NULL, checkpoint_id TEXT NOT NULL, seq BIGINT NOT NULL,
        branch TEXT NOT NULL, parent_id TEXT, kind TEXT NOT NULL,
        manifest BYTEA NOT NULL, meta BYTEA NOT NULL, hash BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (rk, checkpoint_id))""",
    "CREATE INDEX checkpoints_id ON checkpoints (checkpoint_id)",
    """CREATE TABLE blobs (
        rk BIGINT NOT NULL, addr BYTEA NOT NULL, data BYTEA NOT NULL,
        PRIMARY KEY (rk, addr))""",
    """CREATE TABLE journal (
        rk BIGINT NOT NULL, seq BIGINT NOT NULL, branch TEXT NOT NULL,
        checkpoint_id TEXT, kind TEXT NOT NULL, data BYTEA NOT NULL, hash BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (rk, seq))""",
    "CREATE INDEX journal_pending ON journal (rk, branch) WHERE checkpoint_id IS NULL",
    "CREATE INDEX journal_ckpt ON journal (rk, checkpoint_id)",
]

# Migrations, in order; entry i brings the schema from version i to i + 1.
# Version 2: the journal's indexes end in ``seq``, so reading a checkpoint's (or a
# branch's pending) entries in order is an index range, not a scan of the run's journal.
_JOURNAL_INDEXES_BY_SEQ = [
    "DROP INDEX journal_pending",
    "DROP INDEX journal_ckpt",
    "CREATE INDEX journal_pending ON journal (rk, branch, seq) WHERE checkpoint_id IS NULL",
    "CREATE INDEX journal_ckpt ON journal (rk, checkpoint_id, seq)",
]
# Version 3: a branch's own checkpoints in order, for listing history without walking
# parent links one row at a time.
_CHECKPOINTS_BY_BRANCH = ["CREATE INDEX checkpoints_branch ON checkpoints (rk, branch, seq)"]
MIGRATIONS: dict[str, list[list[str]]] = {
    "sqlite": [_SQLITE_SCHEMA[1:], _JOURNAL_INDEXES_BY_SEQ, _CHECKPOINTS_BY_BRANCH],
    "postgres": [_PG_SCHEMA[1:], _JOURNAL_INDEXES_BY_SEQ, _CHECKPOINTS_BY_BRANCH],
}
SCHEMA_TABLE: dict[str, str] = {"sqlite": _SQLITE_SCHEMA[0], "postgres": _PG_SCHEMA[0]}

_RUN_COLS = "run_id, agent, status, labels, meta, created_at, updated_at, lease_owner, lease_expires"
_CKPT_COLS = "checkpoint_id, seq, branch, parent_id, kind, meta, hash, created_at"

COMMON: dict[str, str] = {
    "schema_version": "SELECT max(version) FROM clew_schema",
    "record_version": "INSERT INTO clew_schema (version, applied_at) VALUES (?, ?)",
    "run_key": "SELECT rk FROM runs WHERE run_id = ?",
    "get_run": f"SELECT {_RUN_COLS} FROM runs WHERE run_id = ?",
    "insert_run": (
        "INSERT INTO runs (run_id, agent, status, labels, meta, created_at, updated_at,"
        " lease_owner, lease_expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING rk"
    ),
    "update_run": (
        "UPDATE runs SET status = coalesce(?, status), meta = coalesce(?, meta), updated_at = ?"
        f" WHERE rk = ? RETURNING {_RUN_COLS}"
    ),
    "bump_ckpt_seq": (
        "UPDATE runs SET ckpt_seq = ckpt_seq + 1, status = coalesce(?, status), updated_at = ?"
        " WHERE rk = ? AND run_id = ? RETURNING ckpt_seq"
    ),
    "bump_journal_seq": (
        "UPDATE runs SET journal_seq = journal_seq + ? WHERE rk = ? AND run_id = ? RETURNING journal_seq"
    ),
    "insert_branch": "INSERT INTO branches (rk, name, head, base, created_at) VALUES (?, ?, ?, ?, ?)",
    "get_branch": "SELECT name, head, base, created_at FROM branches WHERE rk = ? AND name = ?",
    "list_branches": "SELECT name, head, base, created_at FROM branches WHERE rk = ? ORDER BY created_at, name",
    "insert_blob": "INSERT INTO blobs (rk, addr, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    "insert_checkpoint": (
        "INSERT INTO checkpoints (rk, checkpoint_id, seq, branch, parent_id, kind, manifest, meta,"
        " hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "get_checkpoint": f"SELECT {_CKPT_COLS} FROM checkpoints WHERE rk = ? AND checkpoint_id = ?",
    "get_sealed": (
        "SELECT c.manifest, c.meta, c.hash, c.parent_id, c.branch, c.kind, c.created_at, p.hash"
        " FROM checkpoints c LEFT JOIN checkpoints p ON p.rk = c.rk AND p.checkpoint_id = c.parent_id"
        " WHERE c.rk = ? AND c.checkpoint_id = ?"
    ),
    "journal_hashes": "SELECT hash FROM journal WHERE rk = ? AND checkpoint_id = ? ORDER BY seq",
    "find_checkpoint": "SELECT r.run_id FROM checkpoints c JOIN runs r ON r.rk = c.rk WHERE c.checkpoint_id = ?",
    "checkpoint_hash": "SELECT hash FROM checkpoints WHERE rk = ? AND checkpoint_id = ?",
    "branch_line": (
        f"SELECT {_CKPT_COLS} FROM checkpoints WHERE rk = ? AND branch = ? AND seq <= ? ORDER BY seq DESC LIMIT ?"
    ),
    "all_checkpoints": (
        "SELECT checkpoint_id, seq, branch, parent_id, kind, manifest, meta, hash, created_at"
        " FROM checkpoints WHERE rk = ? ORDER BY seq"
    ),
    "pending_journal": (
        "SELECT seq, hash FROM journal WHERE rk = ? AND branch = ? AND checkpoint_id IS NULL ORDER BY seq"
    ),
    "insert_journal": (
        "INSERT INTO journal (rk, seq, branch, checkpoint_id, kind, data, hash, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "seal_journal": "UPDATE journal SET checkpoint_id = ? WHERE rk = ? AND branch = ? AND checkpoint_id IS NULL",
    "journal_of_checkpoint": (
        "SELECT seq, branch, checkpoint_id, kind, data, hash, created_at FROM journal"
        " WHERE rk = ? AND checkpoint_id = ? ORDER BY seq"
    ),
    "journal_pending_rows": (
        "SELECT seq, branch, checkpoint_id, kind, data, hash, created_at FROM journal"
        " WHERE rk = ? AND branch = ? AND checkpoint_id IS NULL ORDER BY seq"
    ),
    "all_journal": (
        "SELECT seq, branch, checkpoint_id, kind, data, hash, created_at FROM journal WHERE rk = ? ORDER BY seq"
    ),
    "all_blobs": "SELECT addr, data FROM blobs WHERE rk = ?",
    "count_blobs": "SELECT count(*) FROM blobs WHERE rk = ?",
    "delete_journal": "DELETE FROM journal WHERE rk = ?",
    "delete_checkpoints": "DELETE FROM checkpoints WHERE rk = ?",
    "delete_blobs": "DELETE FROM blobs WHERE rk = ?",
    "delete_branches": "DELETE FROM branches WHERE rk = ?",
    "delete_run": "DELETE FROM runs WHERE rk = ?",
    "acquire_lease": (
        "UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE rk = ?"
        " AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires < ?)"
    ),
    "renew_lease": "UPDATE runs SET lease_expires = ? WHERE rk = ? AND lease_owner = ?",
    "release_lease": "UPDATE runs SET lease_owner = NULL, lease_expires = NULL WHERE rk = ? AND lease_owner = ?",
    "lease_of": "SELECT lease_owner, lease_expires FROM runs WHERE rk = ?",
}

SQLITE: dict[str, str] = {
    # The run id check: a writer's remembered run key may be a deleted run's.
    "cas_head": (
        "UPDATE branches SET head = ? WHERE rk = ? AND name = ? AND head IS ?"
        " AND EXISTS (SELECT 1 FROM runs WHERE runs.rk = branches.rk AND runs.run_id = ?)"
    ),
    "blobs_by_addr": "SELECT addr, data FROM blobs WHERE rk = ? AND addr IN ({marks})",
    "claim_expired": (
        "UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE rk IN ("
        " SELECT rk FROM runs WHERE status IN ({marks})"
        " AND (lease_expires IS NULL OR lease_expires < ?) AND agent = coalesce(?, agent)"
        " ORDER BY lease_expires LIMIT ?)"
        f" RETURNING {_RUN_COLS}"
    ),
    "label_clause": "EXISTS (SELECT 1 FROM json_each(runs.labels) WHERE key = ? AND value = ?)",
}

POSTGRES: dict[str, str] = {
    "cas_head": (
        "UPDATE branches SET head = ? WHERE rk = ? AND name = ? AND head IS NOT DISTINCT FROM ?"
        " AND EXISTS (SELECT 1 FROM runs WHERE runs.rk = branches.rk AND runs.run_id = ?)"
    ),
    "blobs_by_addr": "SELECT addr, data FROM blobs WHERE rk = ? AND addr = ANY(?)",
    "claim_expired": (
        "UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE rk IN ("
        " SELECT rk FROM runs WHERE status IN ({marks})"
        " AND (lease_expires IS NULL OR lease_expires < ?) AND agent = coalesce(?, agent)"
        " ORDER BY lease_expires LIMIT ?"
        " FOR UPDATE SKIP LOCKED)"
        f" RETURNING {_RUN_COLS}"
    ),
    "label_clause": "labels ->> ? = ?",
    "insert_run": (
        "INSERT INTO runs (run_id, agent, status, labels, meta, created_at, updated_at,"
        " lease_owner, lease_expires) VALUES (?, ?, ?, CAST(? AS jsonb), ?, ?, ?, ?, ?) RETURNING rk"
    ),
}


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL of one backend, placeholders already in its style."""

    name: str
    sql: dict[str, str]
    expands_in_lists: bool  # SQLite: ``IN (?, ?, ...)``; PostgreSQL: ``= ANY(array)``

    def label_path(self, key: str) -> str:
        """The parameter that selects a label key in ``label_clause``."""
        return key


def _pg(text: str) -> str:
    # Arrays of bytea go in binary (%b): psycopg would otherwise escape each item as text.
    return text.replace("%", "%%").replace("?", "%s").replace("ANY(%s)", "ANY(%b)")


SQLITE_DIALECT = Dialect("sqlite", {**COMMON, **SQLITE}, expands_in_lists=True)
POSTGRES_DIALECT = Dialect("postgres", {k: _pg(v) for k, v in {**COMMON, **POSTGRES}.items()}, expands_in_lists=False)

"""SQL text for each dialect. No I/O here; the schema itself is in ``_schema``.

Queries are written once with ``?`` placeholders; the PostgreSQL dialect turns them
into ``%s``. Where the dialects differ the text is given per dialect. Every table is
keyed by the run's internal key ``rk`` first, so the schema can be sharded by run.
"""

from __future__ import annotations

from dataclasses import dataclass

_RUN_COLS = "run_id, agent, status, labels, meta, created_at, updated_at, dek"
_BRANCH_COLS = (
    "name, head, base, created_at, status, error, lease_owner, lease_expires, epoch, seal, updated_at, mac, priority"
)
# A run's status, derived from its branches': the first of these that any branch has.
_RUN_STATUS = (
    "(SELECT CASE max(CASE status WHEN 'running' THEN 5 WHEN 'paused' THEN 4 WHEN 'failed' THEN 3"
    " WHEN 'completed' THEN 2 ELSE 1 END) WHEN 5 THEN 'running' WHEN 4 THEN 'paused' WHEN 3 THEN 'failed'"
    " WHEN 2 THEN 'completed' ELSE 'cancelled' END FROM clew_branches b WHERE b.rk = clew_runs.rk)"
)
_CKPT_COLS = "checkpoint_id, seq, branch, parent_id, kind, meta, hash, created_at"

COMMON: dict[str, str] = {
    "schema_version": "SELECT max(version) FROM clew_schema",
    "record_version": "INSERT INTO clew_schema (version, applied_at) VALUES (?, ?)",
    "run_key": "SELECT rk FROM clew_runs WHERE run_id = ?",
    "get_run": f"SELECT {_RUN_COLS} FROM clew_runs WHERE run_id = ?",
    "insert_run": (
        "INSERT INTO clew_runs (run_id, agent, status, labels, meta, created_at, updated_at, dek)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING rk"
    ),
    "update_run": (f"UPDATE clew_runs SET meta = ?, updated_at = ? WHERE rk = ? RETURNING {_RUN_COLS}"),
    "bump_journal_seq": (
        "UPDATE clew_runs SET journal_seq = journal_seq + ? WHERE rk = ? AND run_id = ? RETURNING journal_seq, dek"
    ),
    # A commit's one write to the run row: the checkpoint counter and the journal's, together.
    "bump_seqs": (
        "UPDATE clew_runs SET ckpt_seq = ckpt_seq + 1, journal_seq = journal_seq + ?, updated_at = ?"
        " WHERE rk = ? AND run_id = ? RETURNING ckpt_seq, journal_seq, dek"
    ),
    # A commit's fast path moves the head only if it is still the parent, the lease still
    # holds it, it is not cancelled and nothing is pending on it (all of which the writer
    # saw at its own last commit); else nothing is returned and the transaction is undone.
    "cas_head": (
        "UPDATE clew_branches SET head = ?, seal = ?, mac = ?, status = coalesce(?, status), updated_at = ?"
        " WHERE rk = ? AND name = ? AND head = ? AND status <> 'cancelled'"
        " AND (? = 0 OR (lease_owner = ? AND epoch = ?))"
        " AND NOT EXISTS (SELECT 1 FROM clew_journal j WHERE j.rk = clew_branches.rk AND j.branch = clew_branches.name"
        " AND j.checkpoint_id IS NULL) RETURNING epoch"
    ),
    # The same when the writer appended entries pending on the branch since: exactly those
    # are pending (as many, with these hashes), and the same transaction seals them.
    "cas_head_pending": (
        "UPDATE clew_branches SET head = ?, seal = ?, mac = ?, status = coalesce(?, status), updated_at = ?"
        " WHERE rk = ? AND name = ? AND head = ? AND status <> 'cancelled'"
        " AND (? = 0 OR (lease_owner = ? AND epoch = ?))"
        " AND (SELECT count(*) FROM clew_journal j WHERE j.rk = clew_branches.rk AND j.branch = clew_branches.name"
        " AND j.checkpoint_id IS NULL) = ?"
        " AND (SELECT count(*) FROM clew_journal j WHERE j.rk = clew_branches.rk AND j.branch = clew_branches.name"
        " AND j.checkpoint_id IS NULL AND j.hash {in_hashes}) = ? RETURNING epoch"
    ),
    "insert_journal_guess": (
        "INSERT INTO clew_journal (rk, seq, branch, checkpoint_id, kind, data, hash, created_at, hv)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 2) ON CONFLICT DO NOTHING"
    ),
    "refresh_run_status": f"UPDATE clew_runs SET status = {_RUN_STATUS}, updated_at = ? WHERE rk = ?",
    "insert_branch": (
        "INSERT INTO clew_branches (rk, name, head, base, created_at, status, lease_owner, lease_expires, epoch,"
        " seal, updated_at, mac, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    # A fork is queued (if its worker dies) with the priority of the branch it forks from.
    "fork_priority": (
        "SELECT b.priority FROM clew_branches b JOIN clew_checkpoints c ON c.rk = b.rk AND c.branch = b.name"
        " WHERE b.rk = ? AND c.checkpoint_id = ?"
    ),
    "get_branch": f"SELECT {_BRANCH_COLS} FROM clew_branches WHERE rk = ? AND name = ?",
    "list_branches": f"SELECT {_BRANCH_COLS} FROM clew_branches WHERE rk = ? ORDER BY created_at, name",
    "set_head": (
        "UPDATE clew_branches SET head = ?, seal = ?, mac = ?, status = coalesce(?, status), updated_at = ?"
        " WHERE rk = ? AND name = ?"
    ),
    "set_branch_status": "UPDATE clew_branches SET status = ?, error = ?, updated_at = ? WHERE rk = ? AND name = ?",
    "revoke_lease": (
        "UPDATE clew_branches SET lease_owner = NULL, lease_expires = NULL, epoch = epoch + 1 WHERE rk = ? AND name = ?"
    ),
    "insert_blob": "INSERT INTO clew_blobs (rk, addr, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    "insert_checkpoint": (
        "INSERT INTO clew_checkpoints (rk, checkpoint_id, seq, branch, parent_id, kind, manifest, meta,"
        " hash, created_at, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "get_checkpoint": f"SELECT {_CKPT_COLS} FROM clew_checkpoints WHERE rk = ? AND checkpoint_id = ?",
    "get_sealed": (
        "SELECT c.manifest, c.meta, c.hash, c.parent_id, c.branch, c.kind, c.created_at, p.hash, c.seq"
        " FROM clew_checkpoints c LEFT JOIN clew_checkpoints p ON p.rk = c.rk AND p.checkpoint_id = c.parent_id"
        " WHERE c.rk = ? AND c.checkpoint_id = ?"
    ),
    "journal_hashes": "SELECT hash FROM clew_journal WHERE rk = ? AND checkpoint_id = ? ORDER BY seq",
    # A checkpoint and its ancestors, up to a limit, by their parent links: the chain a
    # manifest stored as a change resolves through (see _manifests).
    "manifest_chain": (
        "WITH RECURSIVE chain(n, checkpoint_id, parent_id, manifest) AS ("
        "SELECT 0, checkpoint_id, parent_id, manifest FROM clew_checkpoints WHERE rk = ? AND checkpoint_id = ?"
        " UNION ALL SELECT chain.n + 1, c.checkpoint_id, c.parent_id, c.manifest FROM chain"
        " JOIN clew_checkpoints c ON c.rk = ? AND c.checkpoint_id = chain.parent_id WHERE chain.n + 1 < ?)"
        " SELECT n, checkpoint_id, parent_id, manifest FROM chain ORDER BY n"
    ),
    "find_checkpoint": (
        "SELECT r.run_id FROM clew_checkpoints c JOIN clew_runs r ON r.rk = c.rk WHERE c.checkpoint_id = ?"
    ),
    "checkpoint_hash": "SELECT hash FROM clew_checkpoints WHERE rk = ? AND checkpoint_id = ?",
    "branch_line": (
        f"SELECT {_CKPT_COLS} FROM clew_checkpoints WHERE rk = ? AND branch = ? AND seq <= ? ORDER BY seq DESC LIMIT ?"
    ),
    "all_checkpoints": (
        "SELECT checkpoint_id, seq, branch, parent_id, kind, manifest, meta, hash, created_at, mac"
        " FROM clew_checkpoints WHERE rk = ? ORDER BY seq"
    ),
    "pending_journal": (
        "SELECT seq, hash FROM clew_journal WHERE rk = ? AND branch = ? AND checkpoint_id IS NULL ORDER BY seq"
    ),
    "insert_journal": (
        "INSERT INTO clew_journal (rk, seq, branch, checkpoint_id, kind, data, hash, created_at, hv)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 2)"
    ),
    "seal_journal": "UPDATE clew_journal SET checkpoint_id = ? WHERE rk = ? AND branch = ? AND checkpoint_id IS NULL",
    "journal_of_checkpoint": (
        "SELECT seq, branch, checkpoint_id, kind, data, hash, created_at FROM clew_journal"
        " WHERE rk = ? AND checkpoint_id = ? ORDER BY seq"
    ),
    "journal_pending_rows": (
        "SELECT seq, branch, checkpoint_id, kind, data, hash, created_at FROM clew_journal"
        " WHERE rk = ? AND branch = ? AND checkpoint_id IS NULL ORDER BY seq"
    ),
    "all_journal": (
        "SELECT seq, branch, checkpoint_id, kind, data, hash, created_at, hv FROM clew_journal"
        " WHERE rk = ? ORDER BY seq"
    ),
    "verify_run": "SELECT labels, meta, status, ckpt_seq, journal_seq FROM clew_runs WHERE rk = ?",
    "all_blobs": "SELECT addr, data FROM clew_blobs WHERE rk = ?",
    "count_blobs": "SELECT count(*) FROM clew_blobs WHERE rk = ?",
    "delete_journal": "DELETE FROM clew_journal WHERE rk = ?",
    "delete_checkpoints": "DELETE FROM clew_checkpoints WHERE rk = ?",
    "delete_blobs": "DELETE FROM clew_blobs WHERE rk = ?",
    "delete_branches": "DELETE FROM clew_branches WHERE rk = ?",
    "delete_run": "DELETE FROM clew_runs WHERE rk = ?",
    "acquire_lease": (
        "UPDATE clew_branches SET lease_owner = ?, lease_expires = ?, epoch = epoch + 1 WHERE rk = ? AND name = ?"
        " AND status NOT IN ('completed', 'cancelled')"
        " AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires < ?) RETURNING epoch"
    ),
    "renew_lease": (
        "UPDATE clew_branches SET lease_expires = ? WHERE rk = ? AND name = ? AND lease_owner = ?"
        " AND epoch = coalesce(?, epoch) RETURNING epoch"
    ),
    "release_lease": (
        "UPDATE clew_branches SET lease_owner = NULL, lease_expires = NULL"
        " WHERE rk = ? AND name = ? AND lease_owner = ? AND epoch = coalesce(?, epoch)"
    ),
    "lease_of": "SELECT lease_owner, lease_expires, status FROM clew_branches WHERE rk = ? AND name = ?",
    # A claim: the branch row is locked (PostgreSQL) or the database is (SQLite), so the
    # epoch read with it is the one this update moves on from.
    "take_lease": "UPDATE clew_branches SET lease_owner = ?, lease_expires = ?, epoch = ? WHERE rk = ? AND name = ?",
    # Branches of one agent's runs whose lease is live (``max_running``), whatever their
    # status (a run that just completed holds its lease until its worker releases it): a
    # range of the status index per status, as few rows as there are runs executing.
    "live_leases": (
        "SELECT count(*) FROM clew_branches b JOIN clew_runs r ON r.rk = b.rk"
        " WHERE b.status IN ('running', 'paused', 'failed', 'completed', 'cancelled')"
        " AND b.lease_expires >= ? AND r.agent = ?"
    ),
}

SQLITE: dict[str, str] = {
    "lock_branch": "SELECT head, status, lease_owner, epoch FROM clew_branches WHERE rk = ? AND name = ?",
    "blobs_by_addr": "SELECT addr, data FROM clew_blobs WHERE rk = ? AND addr IN ({marks})",
    "claim_expired": (
        "SELECT b.rk, r.run_id, r.labels, r.dek, b.name, b.head, b.lease_owner, b.lease_expires, b.epoch"
        " FROM clew_branches b JOIN clew_runs r ON r.rk = b.rk WHERE b.status IN ({marks})"
        " AND (b.lease_expires IS NULL OR b.lease_expires < ?) AND r.agent = coalesce(?, r.agent)"
        " ORDER BY b.priority DESC, b.created_at, b.rk, b.name LIMIT ?"
    ),
    "label_clause": "EXISTS (SELECT 1 FROM json_each(clew_runs.labels) WHERE key = ? AND value = ?)",
    # The branch row and its pending journal entries (one row with NULLs when none).
    "lock_branch_pending": (
        "SELECT b.head, b.status, b.lease_owner, b.epoch, j.seq, j.hash FROM clew_branches b"
        " LEFT JOIN clew_journal j ON j.rk = b.rk AND j.branch = b.name AND j.checkpoint_id IS NULL"
        " WHERE b.rk = ? AND b.name = ? ORDER BY j.seq"
    ),
    # The checkpoint row, numbered by the run's counter that this transaction just bumped.
    "insert_checkpoint_next": (
        "INSERT INTO clew_checkpoints (rk, checkpoint_id, seq, branch, parent_id, kind, manifest, meta,"
        " hash, created_at, mac) SELECT rk, ?, ckpt_seq, ?, ?, ?, ?, ?, ?, ?, ? FROM clew_runs WHERE rk = ?"
    ),
    # The row is made with room for the value, which the runner then writes into it in
    # place, part by part (sqlite3's blob I/O): no whole copy of a big value is bound.
    "insert_framed_blob": "INSERT INTO clew_blobs (rk, addr, data) VALUES (?, ?, zeroblob(?)) ON CONFLICT DO NOTHING",
}

POSTGRES: dict[str, str] = {
    # The row lock fences the branch: a takeover (which bumps its epoch) waits for this
    # transaction, or this one sees the new epoch.
    "lock_branch": "SELECT head, status, lease_owner, epoch FROM clew_branches WHERE rk = ? AND name = ? FOR UPDATE",
    "blobs_by_addr": "SELECT addr, data FROM clew_blobs WHERE rk = ? AND addr = ANY(?)",
    # The run row is locked too: the journal entry of the claim bumps its sequence, and a
    # writer to the run (which locks the run row, then the branch) is skipped, never waited on.
    "claim_expired": (
        "SELECT b.rk, r.run_id, r.labels, r.dek, b.name, b.head, b.lease_owner, b.lease_expires, b.epoch"
        " FROM clew_branches b JOIN clew_runs r ON r.rk = b.rk WHERE b.status IN ({marks})"
        " AND (b.lease_expires IS NULL OR b.lease_expires < ?) AND r.agent = coalesce(?, r.agent)"
        " ORDER BY b.priority DESC, b.created_at, b.rk, b.name LIMIT ? FOR UPDATE OF b, r SKIP LOCKED"
    ),
    # Claims under ``max_running`` for one agent wait for each other (until commit), so
    # each counts the leases the one before it took.
    "agent_lock": "SELECT pg_advisory_xact_lock(1668048247, hashtext(current_schema() || ':' || ?))",
    "label_clause": "labels ->> ? = ?",
    "lock_branch_pending": (
        "SELECT b.head, b.status, b.lease_owner, b.epoch, j.seq, j.hash FROM clew_branches b"
        " LEFT JOIN clew_journal j ON j.rk = b.rk AND j.branch = b.name AND j.checkpoint_id IS NULL"
        " WHERE b.rk = ? AND b.name = ? ORDER BY j.seq FOR UPDATE OF b"
    ),
    "insert_checkpoint_next": (
        "INSERT INTO clew_checkpoints (rk, checkpoint_id, seq, branch, parent_id, kind, manifest, meta,"
        " hash, created_at, mac) SELECT rk, CAST(? AS TEXT), ckpt_seq, CAST(? AS TEXT), CAST(? AS TEXT),"
        " CAST(? AS TEXT), CAST(? AS BYTEA), CAST(? AS BYTEA), CAST(? AS BYTEA), CAST(? AS DOUBLE PRECISION),"
        " CAST(? AS BYTEA) FROM clew_runs WHERE rk = ?"
    ),
    "insert_framed_blob": (
        "INSERT INTO clew_blobs (rk, addr, data) VALUES (?, ?, CAST(? AS bytea) || CAST(? AS bytea))"
        " ON CONFLICT DO NOTHING"
    ),
    "insert_run": (
        "INSERT INTO clew_runs (run_id, agent, status, labels, meta, created_at, updated_at, dek)"
        " VALUES (?, ?, ?, CAST(? AS jsonb), ?, ?, ?, ?) RETURNING rk"
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

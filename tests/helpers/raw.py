"""Plain SQL against the database behind a store, bypassing clew.

Tests use it to count what a store wrote and to damage what it stored (flip a byte,
delete a row) the way a failing disk or a tamperer would. Queries are written with
``?`` placeholders and translated for PostgreSQL.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import clew
from clew.codec import Codec
from clew.store import _manifests

TABLES = ("blobs", "checkpoints", "journal", "branches")
_TABLE = re.compile(r"(?<![\w.])(runs|blobs|checkpoints|journal|branches)\b(?!\s*\()")


class Raw:
    """A connection of its own to the database a test's stores share.

    Args:
        stores: the test's ``StoreFactory`` (from ``tests/conftest.py``).
        store: a store opened by it; the in-memory backend has no other way in.
    """

    def __init__(self, stores: Any, store: clew.Store) -> None:
        self.backend: str = stores.backend
        self._owned = True
        if self.backend == "memory":
            self._conn: Any = store._conn  # type: ignore[attr-defined]  # the private in-memory database
            self._owned = False
        elif self.backend == "sqlite":
            self._conn = sqlite3.connect(stores.path, isolation_level=None, timeout=30)
        else:
            import psycopg

            self._conn = psycopg.connect(stores.pg, autocommit=True, options=f"-c search_path={stores.schema}")

    def _sql(self, sql: str) -> str:
        sql = _TABLE.sub(r"clew_\1", sql)  # tests name tables without clew's prefix
        return sql if self.backend != "postgres" else sql.replace("%", "%%").replace("?", "%s")

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cur = self._conn.execute(self._sql(sql), params)
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cur.fetchall()]

    def scalar(self, sql: str, *params: Any) -> Any:
        rows = self.rows(sql, *params)
        return rows[0][0] if rows else None

    def execute(self, sql: str, *params: Any) -> int:
        """Run a statement (committed at once); returns the rows it touched."""
        return int(self._conn.execute(self._sql(sql), params).rowcount)

    def rk(self, run_id: str) -> int:
        rk = self.scalar("SELECT rk FROM runs WHERE run_id = ?", run_id)
        assert rk is not None, f"no run {run_id!r} in the database"
        return int(rk)

    def counts(self, run_id: str) -> dict[str, int]:
        """Rows per table for one run."""
        rk = self.rk(run_id)
        return {t: int(self.scalar(f"SELECT count(*) FROM {t} WHERE rk = ?", rk)) for t in TABLES}

    def total_rows(self) -> dict[str, int]:
        """Rows per table, all runs."""
        return {t: int(self.scalar(f"SELECT count(*) FROM {t}")) for t in (*TABLES, "runs")}

    def snapshot(self, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
        """Every stored row of a run, for comparing before and after a failure."""
        rk = self.rk(run_id)
        out = {"runs": self.rows("SELECT * FROM runs WHERE rk = ?", rk)}
        for table in TABLES:
            out[table] = sorted(self.rows(f"SELECT * FROM {table} WHERE rk = ?", rk), key=repr)
        return out

    def stored_bytes(self, run_id: str) -> int:
        """Bytes of blob data, manifests, checkpoint metadata and journal data of a run."""
        rk = self.rk(run_id)
        blobs = self.scalar("SELECT coalesce(sum(length(data)), 0) FROM blobs WHERE rk = ?", rk)
        ckpts = self.scalar(
            "SELECT coalesce(sum(length(manifest) + length(meta)), 0) FROM checkpoints WHERE rk = ?", rk
        )
        journal = self.scalar("SELECT coalesce(sum(length(data)), 0) FROM journal WHERE rk = ?", rk)
        return int(blobs) + int(ckpts) + int(journal)

    def manifest(self, run_id: str, checkpoint_id: str, codec: Any = None) -> dict[str, Any]:
        """A checkpoint's whole manifest, rebuilt from the stored rows (a row may hold
        only the change against its parent's: see ``store/_manifests.py``)."""
        rows = self.rows("SELECT checkpoint_id, parent_id, manifest FROM checkpoints WHERE rk = ?", self.rk(run_id))
        return whole_manifest({cid: (parent, m) for cid, parent, m in rows}, checkpoint_id, codec)

    def manifest_bytes(self, run_id: str, checkpoint_id: str, codec: Any = None) -> bytes:
        """The canonical bytes of a checkpoint's whole manifest: what its seal covers."""
        c = codec or Codec()
        return bytes(c.dumps(self.manifest(run_id, checkpoint_id, c), "manifest")[0])

    def flip(self, table: str, column: str, where: str, params: tuple[Any, ...], pos: int, mask: int = 0xFF) -> None:
        """XOR one byte of a stored bytes column (``pos`` may be negative)."""
        rows = self.rows(f"SELECT {column} FROM {table} WHERE {where}", *params)
        assert len(rows) == 1, f"{table} {where} {params}: {len(rows)} rows"
        data = bytearray(rows[0][0])
        data[pos] ^= mask
        n = self.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", bytes(data), *params)
        assert n == 1

    def close(self) -> None:
        if self._owned:
            self._conn.close()


def whole_manifest(rows: dict[str, tuple[Any, Any]], checkpoint_id: str, codec: Any = None) -> dict[str, Any]:
    """A checkpoint's whole manifest from a run's ``checkpoint_id -> (parent_id, stored
    manifest)`` rows, following its chain of changes down to a whole one."""
    c = codec or Codec()

    def unwrap(data: bytes) -> bytes:
        return bytes(c.unwrap(data)) if data[:1] == b"\xc7" else data

    chain = _manifests.chain_of(rows, checkpoint_id)
    return dict(_manifests.resolve_rows(unwrap, checkpoint_id, chain).manifest)

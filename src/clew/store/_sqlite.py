"""The SQLite backend (also the in-memory one, on a private ``:memory:`` database).

Durability: the file is in WAL mode. ``synchronous="normal"`` (the default) keeps
every committed checkpoint through a crash of the process; ``synchronous="full"``
also through a power loss, at the cost of an fsync per commit. Several processes may
share one file: writers take SQLite's write lock (``BEGIN IMMEDIATE``) and wait up to
``busy_timeout`` seconds for it; readers never block.

:class:`AsyncSQLiteStore` runs the same operations on one dedicated thread per store,
since SQLite has no asynchronous interface; the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from clew.codec import Codec
from clew.errors import (
    ClewError,
    ConfigError,
    ConflictError,
    SchemaVersionError,
    StoreError,
    StoreUnavailableError,
)
from clew.store import _ops
from clew.store._base import AsyncStore, Store, drive
from clew.store._schema import SCHEMA_TABLE, SCHEMA_VERSION, migrate
from clew.store._seal import SealKey
from clew.store._sql import SQLITE_DIALECT

T = TypeVar("T")
_SYNC_MODES = {"off", "normal", "full", "extra"}


@contextlib.contextmanager
def _translate(where: str) -> Iterator[None]:
    """Turn sqlite3 exceptions into clew errors: the only place they are caught."""
    try:
        yield
    except ClewError:
        raise
    except sqlite3.IntegrityError as exc:
        raise ConflictError(f"{where}: {exc}") from exc
    except sqlite3.OperationalError as exc:
        msg = str(exc)
        if "unable to open" in msg or "disk I/O" in msg or "readonly" in msg:
            raise StoreUnavailableError(f"{where}: {msg}") from exc
        if "locked" in msg or "busy" in msg:
            raise StoreError(
                f"{where}: database stayed locked past busy_timeout ({msg}); "
                "another process holds a long write transaction"
            ) from exc
        raise StoreError(f"{where}: {msg}") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{where}: {exc} (is this a clew SQLite file?)") from exc


class SQLiteStore(Store):
    """A store in one SQLite file, or in memory with ``path=":memory:"``.

    Args:
        path: the database file (created if missing; its directory must exist).
        codec: how values are encoded; the default refuses pickle.
        synchronous: ``"normal"`` (survives a process crash) or ``"full"``
            (survives a power loss).
        busy_timeout: seconds a writer waits for another process's write lock.
        mode: ``"rw"``, or ``"ro"`` to read an existing file only: it is never created
            nor migrated, and writes raise :class:`~clew.errors.ConfigError`.
        seal_key: a key for keyed seals (see :class:`~clew.store.SealKey`).
    """

    def __init__(
        self,
        path: str,
        *,
        codec: Codec | None = None,
        synchronous: str = "normal",
        busy_timeout: float = 30.0,
        mode: str = "rw",
        seal_key: SealKey | None = None,
    ) -> None:
        if synchronous.lower() not in _SYNC_MODES:
            raise ConfigError(f"synchronous must be one of {sorted(_SYNC_MODES)}, not {synchronous!r}")
        if mode not in ("ro", "rw"):
            raise ConfigError(f"mode must be 'ro' (read-only) or 'rw', not {mode!r}")
        self.path = path
        self.read_only = mode == "ro"
        self.url = "memory://" if path == ":memory:" else f"sqlite:///{path}" + ("?mode=ro" if self.read_only else "")
        self._ctx = _ops.Context(SQLITE_DIALECT, codec or Codec(), seal_key=seal_key)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        if self.read_only:
            self._conn = self._open_read_only(path, busy_timeout)
            try:
                self._check_version()
            except BaseException:
                self.close()
                raise
            return
        if path != ":memory:":
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                hint = "create it first"
                if not os.path.isabs(path) and os.path.isdir(os.path.dirname("/" + path)):
                    # sqlite:///tmp/x.db names tmp/x.db under the working directory
                    hint += f"; for the absolute path /{path} write sqlite:////{path} (four slashes)"
                raise StoreUnavailableError(
                    f"cannot open SQLite store {path!r}: directory {parent!r} does not exist; {hint}"
                )
        with _translate(f"opening {self.url}"):
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
            try:
                conn.execute("PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA journal_mode=MEMORY")
                conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
                conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
                # Deleted content is overwritten with zeros, whatever SQLite's build default
                # (upstream: off): an erased run leaves no bytes in the file's free pages.
                conn.execute("PRAGMA secure_delete=ON")
            except BaseException:
                conn.close()
                raise
        self._conn = conn
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _open_read_only(self, path: str, busy_timeout: float) -> sqlite3.Connection:
        """Open an existing file read-only: nothing is created, nothing migrated."""
        if path == ":memory:":
            raise ConfigError("memory:// cannot be opened read-only: it starts empty")
        if not os.path.isfile(path):
            raise StoreUnavailableError(
                f"no SQLite store at {path!r}: the file does not exist (opened read-only, so it is not created); "
                "check the path"
            )
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        with _translate(f"opening {self.url}"):
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        return conn

    def _check_version(self) -> None:
        with self._lock, _translate(f"opening {self.url}"):
            conn = self._connection()
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clew_schema'").fetchone()
            if found is None:
                raise StoreError(f"{self.path!r} holds no clew store (no clew_schema table); check the path")
            version = conn.execute("SELECT max(version) FROM clew_schema").fetchone()[0] or 0
            if version != SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.url} has schema version {version} and this clew reads version {SCHEMA_VERSION}: "
                    + ("upgrade clew" if version > SCHEMA_VERSION else "open it read-write once to migrate it")
                )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.url}: store is closed")
        return self._conn

    def _migrate(self) -> int:
        if self.read_only:
            self._check_version()
            return SCHEMA_VERSION
        with self._lock, _translate(f"migrating {self.url}"):
            conn = self._connection()
            conn.execute(SCHEMA_TABLE["sqlite"])
            version = conn.execute("SELECT max(version) FROM clew_schema").fetchone()[0] or 0
            if version == SCHEMA_VERSION:
                return version
            conn.execute("BEGIN IMMEDIATE")  # the lock: a second process waits, then finds it done
            try:
                result = drive(migrate(self._ctx, []), lambda q: self._run_query(conn, q))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return result

    def _run_query(self, conn: sqlite3.Connection, q: _ops.Q | list[_ops.Q]) -> Any:
        if isinstance(q, list):
            return [self._run_query(conn, one) for one in q]
        if q.mode == "many":
            conn.executemany(q.sql, q.params)
            return None
        if q.mode == "blob":
            return self._write_framed(conn, q)
        cur = conn.execute(q.sql, q.params)
        if q.mode == "one":
            return cur.fetchone()
        if q.mode == "all":
            return cur.fetchall()
        return cur.rowcount if q.mode == "rowcount" else None

    @staticmethod
    def _write_framed(conn: sqlite3.Connection, q: _ops.Q) -> None:
        """A big blob: the row is made with room for it, then its parts are written in place."""
        rk, addr, *parts = q.params
        cur = conn.execute(q.sql, (rk, addr, sum(len(p) for p in parts)))
        if cur.rowcount == 1 and cur.lastrowid is not None:  # else already stored (same address, same bytes)
            with conn.blobopen("clew_blobs", "data", cur.lastrowid) as blob:
                for part in parts:
                    blob.write(part)

    def _execute(self, op: _ops.Op[T], *, write: bool) -> T:
        if write and self.read_only:
            raise ConfigError(f"{self.url} is open read-only (mode=ro): open it without mode=ro to write")
        with self._lock, _translate(self.url):
            conn = self._connection()
            began = False

            def execute(q: _ops.Q | list[_ops.Q]) -> Any:
                nonlocal began
                if not began:
                    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    began = True
                return self._run_query(conn, q)

            try:
                result = drive(op, execute)
            except BaseException:
                if began:
                    conn.execute("ROLLBACK")
                raise
            if began:
                conn.execute("COMMIT")
            return result

    def checkpoint_wal(self) -> None:
        """Fold the write-ahead log into the main file (for measuring its size)."""
        with self._lock, _translate(self.url):
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _scrub(self) -> bool:
        """Fold the write-ahead log into the file (whose freed pages secure_delete zeroed) and
        truncate it, so no copy of erased rows stays in the log."""
        if self.path == ":memory:":
            return True
        with self._lock, _translate(self.url):
            busy, _, _ = self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return bool(busy == 0)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class AsyncSQLiteStore(AsyncStore):
    """The async twin of :class:`SQLiteStore`; operations run on one private thread."""

    def __init__(self, path: str, **options: Any) -> None:
        self._sync = SQLiteStore(path, **options)
        self.url = self._sync.url
        self._ctx = self._sync._ctx
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="clew-sqlite")

    @property
    def sync_store(self) -> SQLiteStore:
        """The sync store on the same connection (for sync callers of this database, memory:// too)."""
        return self._sync

    async def _aexecute(self, op: _ops.Op[T], *, write: bool) -> T:
        if self._pool is None:
            raise StoreError(f"{self.url}: store is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, lambda: self._sync._execute(op, write=write)
        )

    async def _amigrate(self) -> int:
        return self._sync.migrate()

    async def _ascrub(self) -> bool:
        if self._pool is None:
            raise StoreError(f"{self.url}: store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._sync._scrub)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._sync.close()

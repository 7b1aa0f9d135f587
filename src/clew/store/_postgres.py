"""The PostgreSQL backend: psycopg 3 with a connection pool, sync and async.

Safe for many processes on many machines: each operation is one READ COMMITTED
transaction; a branch head moves by compare-and-set (an ``UPDATE ... WHERE head IS
NOT DISTINCT FROM parent`` that a concurrent writer turns into zero rows); a run's
row lock orders the commits of that run only, so different runs never wait on each
other; expired leases are claimed with ``FOR UPDATE SKIP LOCKED``. Migrations are
versioned in ``clew_schema`` and applied under a transaction-scoped advisory lock.

Made for the infrastructure PostgreSQL runs on (see docs/postgres.md): each
operation's queries travel in pipeline mode, a batch per round trip; connections
are checked after an idle spell and keep TCP keepalives on; an operation whose
connection died before its COMMIT was sent is run again once on a fresh connection
(its earlier queries are replayed and must give the same answers); a COMMIT whose
answer was lost raises :class:`~clew.errors.CommitUnknownError`. Behind a pooler in
transaction mode (``?pooler=transaction``, or a pooler found when connecting) no
session state and no server-side prepared statement is used.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from clew._extras import require
from clew.codec import Codec
from clew.errors import (
    ClewError,
    CommitUnknownError,
    ConfigError,
    ConflictError,
    SchemaVersionError,
    StoreError,
    StoreUnavailableError,
)
from clew.store import _ops
from clew.store._base import AsyncStore, Store
from clew.store._pgconfig import PgOptions, parse, where
from clew.store._pgconn import POOLER_HINT, aprobe, holds_big, params, probe, retire
from clew.store._schema import SCHEMA_VERSION, migrate
from clew.store._seal import SealKey
from clew.store._sql import POSTGRES_DIALECT

psycopg = require("psycopg", "postgres", "the PostgreSQL store")
psycopg_pool = require("psycopg_pool", "postgres", "the PostgreSQL store")

T = TypeVar("T")
log = logging.getLogger("clew.store")
_LOCK_ID = 0x636C6577  # "clew": the advisory lock taken while migrating
#: A pooled connection idle this long is pinged before use (one round trip): servers
#: and proxies drop idle connections (idle_session_timeout, Cloud SQL, Supabase).
CHECK_AFTER = 1.0


def _describe(url: str, exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "does not exist" in msg and "database" in msg:
        return f"PostgreSQL at {where(url)}: {msg}; create it (createdb) or fix the URL"
    if "unsupported startup parameter" in msg:
        return f"PostgreSQL at {where(url)}: {msg}: {POOLER_HINT} to the store URL"
    return (
        f"cannot reach PostgreSQL at {where(url)}: {msg}; is the server running and the URL right "
        "(postgresql://user@host:port/dbname)?"
    )


class _Usage:
    """Connections of a pool in use by the store's operations (to tell a full pool from a down server)."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            self.n += 1
        try:
            yield
        finally:
            with self._lock:
                self.n -= 1


def _pool_message(url: str, usage: _Usage | None, opts: PgOptions, exc: BaseException) -> str:
    if usage is not None and usage.n >= opts.pool_max:
        return (
            f"no free connection to PostgreSQL at {where(url)} within pool_timeout={opts.pool_timeout:g} s: "
            f"all {opts.pool_max} connections of the pool (pool_max={opts.pool_max}) are in use; raise pool_max "
            "in the store URL (the server's max_connections permitting), or pool_timeout, or share the store "
            "among fewer threads"
        )
    return (
        f"cannot reach PostgreSQL at {where(url)}: no connection could be made within "
        f"pool_timeout={opts.pool_timeout:g} s ({exc}); is the server up?"
    )


@contextlib.contextmanager
def _translate(url: str, opts: PgOptions, usage: _Usage | None = None) -> Iterator[None]:
    """Turn psycopg exceptions into clew errors: the only place they are caught."""
    try:
        yield
    except ClewError:
        raise
    except psycopg.errors.UniqueViolation as exc:
        raise ConflictError(f"PostgreSQL at {where(url)}: {exc}") from exc
    except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
        raise ConflictError(f"PostgreSQL at {where(url)}: concurrent writers collided ({exc}); retry") from exc
    except psycopg.errors.QueryCanceled as exc:
        raise StoreError(
            f"PostgreSQL at {where(url)} cancelled a query ({exc}); statement_timeout is "
            f"{opts.statement_timeout or 'the server default'}: raise it in the store URL (?statement_timeout=30s)"
        ) from exc
    except psycopg.errors.LockNotAvailable as exc:
        raise StoreError(
            f"PostgreSQL at {where(url)}: a lock was not granted within lock_timeout "
            f"{opts.lock_timeout or '(server default)'} ({exc}): another transaction holds it; retry, or raise "
            "lock_timeout in the store URL"
        ) from exc
    except (psycopg.errors.InvalidSqlStatementName, psycopg.errors.DuplicatePreparedStatement) as exc:
        raise StoreError(f"PostgreSQL at {where(url)}: {exc}; {POOLER_HINT}") from exc
    except psycopg_pool.PoolTimeout as exc:
        raise StoreUnavailableError(_pool_message(url, usage, opts, exc)) from exc
    except psycopg.OperationalError as exc:
        if "unsupported startup parameter" in str(exc) or re.search(r"invalid \w+ value", str(exc)):
            raise ConfigError(_describe(url, exc)) from exc
        raise StoreUnavailableError(_describe(url, exc)) from exc
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL at {where(url)}: {exc}") from exc


def _stamp(conn: Any) -> None:
    """Pool callback: remember when a connection went idle."""
    conn._clew_idle_since = time.monotonic()


class _Health:
    """Pings a pooled connection before use when it may have died: after an idle spell,
    or when it sat idle while another connection was found dead (a restart or failover
    kills them all). A dead one is dropped and the next taken at once.

    This is done here rather than with the pool's own ``check=``: after a failed check
    the pool backs off for a second or more before the next connection, and with an
    idle timeout of about that length (``idle_session_timeout=1s``, an aggressive
    proxy) the fresh connection has died of idleness by then, again and again until
    ``pool_timeout``. Here a fresh connection is never pinged, so that cannot happen.
    """

    def __init__(self) -> None:
        self.lost_at = 0.0
        self.replaced = 0  # connections found dead before use

    def suspect(self, conn: Any) -> bool:
        since = getattr(conn, "_clew_idle_since", 0.0)
        return since <= self.lost_at or time.monotonic() - since >= CHECK_AFTER

    @contextlib.contextmanager
    def connection(self, pool: Any, usage: _Usage, *, ping: bool = False) -> Iterator[Any]:
        """A live connection of ``pool``; ``ping`` checks it whatever its age (a retry
        after a lost connection does: one made just before a restart looks fresh)."""
        for _ in range(pool.max_size + 1):
            conn = pool.getconn()
            if not ping and not self.suspect(conn):
                break
            try:
                conn.execute("")
                break
            except psycopg.Error:
                self.replaced += 1
                pool.putconn(conn)  # closed: the pool drops it and makes a new one
        else:
            conn = pool.getconn()  # every pooled connection was dead: the newest is fresh
        try:
            with usage.held():
                yield conn
        finally:
            pool.putconn(conn)

    @contextlib.asynccontextmanager
    async def aconnection(self, pool: Any, usage: _Usage, *, ping: bool = False) -> AsyncIterator[Any]:
        for _ in range(pool.max_size + 1):
            conn = await pool.getconn()
            if not ping and not self.suspect(conn):
                break
            try:
                await conn.execute("")
                break
            except psycopg.Error:
                self.replaced += 1
                await pool.putconn(conn)
        else:
            conn = await pool.getconn()
        try:
            with usage.held():
                yield conn
        finally:
            await pool.putconn(conn)


async def _astamp(conn: Any) -> None:
    _stamp(conn)


def _pool_args(opts: PgOptions) -> dict[str, Any]:
    """The arguments both connection pools are made with."""
    return {
        "min_size": opts.pool_min,
        "max_size": opts.pool_max,
        "kwargs": opts.connect_kwargs(),
        "open": False,
        "timeout": opts.pool_timeout,
        "name": f"clew {where(opts.url)}",
    }


def _prelude(opts: PgOptions) -> _ops.Q | None:
    """Behind a pooler, the settings are made local to each transaction (sent with its first batch)."""
    if opts.direct or not opts.settings:
        return None
    calls = ", ".join("set_config(%s, %s, true)" for _ in opts.settings)
    params = [x for kv in opts.settings.items() for x in kv]
    return _ops.Q(f"SELECT {calls}", params, "exec")


class _Pipelined:
    """Runs an operation's queries in pipeline mode: a batch of queries is one round
    trip, and queries whose answer is not needed (``exec``, ``many``) travel with the
    next batch or with the COMMIT."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.pipeline: Any = None
        self.big = False  # a big value went through: libpq's buffers grew to its size

    def _send(self, q: _ops.Q) -> Any:
        self.big |= q.mode == "blob"
        cur = self.conn.cursor(binary=True)
        if q.mode == "many":
            cur.executemany(q.sql, q.params)
        else:
            cur.execute(q.sql, params(q))
        return cur

    @staticmethod
    def _result(cur: Any, mode: str) -> Any:
        if mode == "one":
            return cur.fetchone()
        if mode == "all":
            return cur.fetchall()
        return cur.rowcount if mode == "rowcount" else None

    @staticmethod
    def _awaits(batch: list[_ops.Q]) -> bool:
        """Whether the batch's answers are awaited (a pipeline sync) here. A big value must
        not ride in such a batch: psycopg's sync stops flushing once its queue is empty
        and then waits for answers, while the rest of a big message is still in libpq's
        buffer and the server waits for it (a hang). Big values go in batches whose
        answers are not awaited, which the transaction's end flushes in full."""
        awaits = any(one.mode in ("one", "all", "rowcount") for one in batch)
        if awaits and any(one.mode == "blob" for one in batch):
            raise AssertionError("a big value in a batch whose answers are awaited would stall the pipeline")
        return awaits

    def begin(self) -> None:
        """Open the transaction: BEGIN travels with the operation's first batch."""
        self.conn.cursor().execute(_begin(self.conn), prepare=False)

    def commit(self) -> Any:
        """Send COMMIT; leaving the pipeline brings its answer (check it with :func:`_committed`).

        Not :meth:`Pipeline.sync`: that one stops flushing once its queue is empty and
        waits for answers, while the rest of a big value may still sit in libpq's buffer
        and the server waits for it (a hang). Leaving the pipeline flushes everything."""
        cur = self.conn.cursor()
        cur.execute("COMMIT", prepare=False)
        return cur

    def __call__(self, q: _ops.Q | list[_ops.Q]) -> Any:
        batch = q if isinstance(q, list) else [q]
        awaits = self._awaits(batch)
        curs = [self._send(one) for one in batch]
        if awaits:
            self.pipeline.sync()
        results = [self._result(c, one.mode) for c, one in zip(curs, batch, strict=True)]
        self.big = self.big or any(holds_big(r) for r in results)
        return results if isinstance(q, list) else results[0]


class _APipelined(_Pipelined):
    async def _asend(self, q: _ops.Q) -> Any:
        self.big |= q.mode == "blob"
        cur = self.conn.cursor(binary=True)
        if q.mode == "many":
            await cur.executemany(q.sql, q.params)
        else:
            await cur.execute(q.sql, params(q))
        return cur

    @staticmethod
    async def _aresult(cur: Any, mode: str) -> Any:
        if mode == "one":
            return await cur.fetchone()
        if mode == "all":
            return await cur.fetchall()
        return cur.rowcount if mode == "rowcount" else None

    async def abegin(self) -> None:
        await self.conn.cursor().execute(_begin(self.conn), prepare=False)

    async def acommit(self) -> Any:
        cur = self.conn.cursor()
        await cur.execute("COMMIT", prepare=False)
        return cur

    async def acall(self, q: _ops.Q | list[_ops.Q]) -> Any:
        batch = q if isinstance(q, list) else [q]
        awaits = self._awaits(batch)
        curs = [await self._asend(one) for one in batch]
        if awaits:
            await self.pipeline.sync()
        results = [await self._aresult(c, one.mode) for c, one in zip(curs, batch, strict=True)]
        self.big = self.big or any(holds_big(r) for r in results)
        return results if isinstance(q, list) else results[0]


def _begin(conn: Any) -> str:
    """The BEGIN that opens an operation's transaction, with the connection's settings
    (a read-only store's connections are read-only)."""
    return "BEGIN READ ONLY" if conn.read_only else "BEGIN"


def _committed(cur: Any, attempt: _Attempt) -> None:
    """Check COMMIT's answer: a transaction the server had aborted answers ROLLBACK
    (nothing was written: the outcome is known)."""
    if cur.statusmessage != "COMMIT":
        attempt.phase = "run"
        raise psycopg.errors.InFailedSqlTransaction(
            f"PostgreSQL answered {cur.statusmessage!r} to COMMIT: the transaction was rolled back"
        )


def _abandon(conn: Any) -> None:
    """After a failed operation: end its transaction, so the pool gets the connection back idle."""
    if conn.closed:
        return
    try:
        conn.rollback()
    except psycopg.Error:
        conn.close()  # the pool drops a closed connection and makes a new one


async def _aabandon(conn: Any) -> None:
    if conn.closed:
        return
    try:
        await conn.rollback()
    except psycopg.Error:
        await conn.close()


class _Diverged(StoreUnavailableError):
    """A replayed query answered differently on the fresh connection: the operation cannot be resumed."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"the connection to PostgreSQL at {where(url)} was lost mid-operation and the data changed before it "
            "could be run again; nothing of it was written: retry"
        )


class _Attempt:
    """One try of an operation on one connection, and how far it got.

    ``phase``: ``"run"`` while queries are sent (a failure here leaves nothing
    committed), ``"commit"`` once COMMIT is on its way (a failure here leaves the
    outcome unknown), ``"done"`` when the server acknowledged it.
    """

    def __init__(self) -> None:
        self.phase = "run"
        self.conn: Any = None
        self.result: Any = None

    def lost_connection(self) -> bool:
        return self.conn is not None and bool(self.conn.closed)


class _Replay:
    """An operation's queries and their answers so far, to resume it on a new connection."""

    def __init__(self, op: _ops.Op[Any]) -> None:
        self.op = op
        self.history: list[tuple[Any, Any]] = []
        self.done = False
        self.result: Any = None
        try:
            self.pending: Any = next(op)
        except StopIteration as stop:
            self.done, self.result = True, stop.value

    def answer(self, q: Any, results: Any) -> None:
        self.history.append((q, results))
        try:
            self.pending = self.op.send(results)
        except StopIteration as stop:
            self.done, self.result = True, stop.value


def _unknown(url: str, exc: BaseException) -> CommitUnknownError:
    return CommitUnknownError(
        f"the connection to PostgreSQL at {where(url)} died while committing ({str(exc).strip() or exc!r}); "
        "the transaction may or may not have committed: when the server answers again, re-read what it wrote "
        "(for a checkpoint, store.get_branch(run_id, branch).head) before trying again"
    )


def _after_failure(
    url: str, health: _Health, tries: int, attempt: _Attempt, exc: StoreUnavailableError, *, write: bool
) -> bool:
    """What a lost connection means for the operation: True to try again, or raise, or return (phase done)."""
    if attempt.lost_connection():
        health.lost_at = time.monotonic()
    if attempt.phase == "done" or (attempt.phase == "commit" and not write):
        return False  # the answer is complete (a read's COMMIT changes nothing)
    if attempt.phase == "commit":
        raise _unknown(url, exc.__cause__ or exc) from exc
    if tries == 1 and attempt.lost_connection():
        log.warning("PostgreSQL connection lost (%s); running the operation again on a fresh connection", exc)
        return True
    raise exc


def _migrate_op(ctx: _ops.Context, schema: str | None) -> _ops.Op[int]:
    """Migrations as an operation, so sync and async share them; under an advisory lock."""
    prelude = [_ops.Q(f'CREATE SCHEMA IF NOT EXISTS "{schema}"', (), "rowcount")] if schema else []
    prelude.append(_ops.Q("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,), "one"))
    return (yield from migrate(ctx, prelude))


def _version_op(url: str, schema: str | None) -> _ops.Op[int]:
    """For a read-only store: the schema must exist and be current (nothing is created or migrated)."""
    row = yield _ops.Q("SELECT to_regclass('clew_schema') IS NOT NULL", (), "one")
    if not row[0]:
        raise StoreError(
            f"no clew tables at {where(url)}{f' in schema {schema!r}' if schema else ''}: nothing to read "
            "(a read-only store never creates them); check the URL and its ?schema="
        )
    row = yield _ops.Q("SELECT max(version) FROM clew_schema", (), "one")
    version = int(row[0] or 0)
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where(url)} has clew schema version {version} and this clew reads version {SCHEMA_VERSION}: "
            + ("upgrade clew" if version > SCHEMA_VERSION else "open the store read-write once to migrate it")
        )
    return version


class _PgCommon:
    url: str
    opts: PgOptions
    _pool: Any
    _health: _Health
    _usage: _Usage

    def _start(self, write: bool) -> Any:
        if self._pool is None:
            raise StoreError(f"{self.url}: store is closed")
        if write and self.opts.read_only:
            raise ConfigError(f"{self.url} is open read-only (mode=ro): open the store without mode=ro to write")
        return self._pool


class PostgresStore(_PgCommon, Store):
    """A store in a PostgreSQL database.

    Args:
        url: ``postgresql://user@host:port/dbname``, with any libpq options in its query
            (``sslmode``, ``application_name``, ``connect_timeout``...) and clew's own
            (see :data:`clew.store._pgconfig.CLEW_OPTIONS` and docs/postgres.md).
        codec: how values are encoded; the default refuses pickle.
        seal_key: a key for keyed seals (see :class:`~clew.store.SealKey`).
        **options: clew's options (``schema``, ``pool_max``, ``pooler``...), overriding the URL's.

    Raises:
        ConfigError: an unknown option or a bad value.
        StoreUnavailableError: the server cannot be reached.
    """

    def __init__(
        self, url: str, *, codec: Codec | None = None, seal_key: SealKey | None = None, **options: Any
    ) -> None:
        self.opts = opts = parse(url, options)
        self.url = opts.url
        self.schema = opts.schema
        self._pool: Any = None
        self._ctx = _ops.Context(POSTGRES_DIALECT, codec or Codec(), seal_key=seal_key)
        self._health = _Health()
        self._usage = _Usage()
        with _translate(self.url, opts):
            self.opts = opts = probe(opts)
            target = opts.for_replica() if opts.read_only else opts
            self._prelude = _prelude(opts)
            self._pool = psycopg_pool.ConnectionPool(
                target.conninfo,
                **_pool_args(target),
                reset=_stamp,
                configure=self._configure,
            )
            self._pool.open(wait=True, timeout=opts.connect_timeout)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _configure(self, conn: Any) -> None:
        conn.read_only = self.opts.read_only or None
        _stamp(conn)

    def _migrate(self) -> int:
        if self.opts.read_only:
            return int(self._execute(_version_op(self.url, self.schema), write=False))
        return int(self._execute(_migrate_op(self._ctx, self.schema), write=True))

    def _execute(self, op: _ops.Op[T], *, write: bool) -> T:
        pool = self._start(write)
        replay = _Replay(op)
        for tries in (1, 2):
            attempt = _Attempt()
            try:
                with _translate(self.url, self.opts, self._usage):
                    self._attempt(pool, replay, attempt, retry=tries > 1)
            except StoreUnavailableError as exc:
                if _after_failure(self.url, self._health, tries, attempt, exc, write=write):
                    continue
            return replay.result  # type: ignore[no-any-return]  # the op's return value
        raise AssertionError("unreachable")

    def _attempt(self, pool: Any, replay: _Replay, attempt: _Attempt, *, retry: bool) -> None:
        with self._health.connection(pool, self._usage, ping=retry) as conn:
            attempt.conn = conn
            runner = _Pipelined(conn)
            # BEGIN and COMMIT are sent as statements of the pipeline, not through
            # conn.transaction(), which syncs on entering and on leaving; leaving the
            # pipeline sends COMMIT and brings its answer. Measured on a local server:
            # a four-statement transaction 710 -> 370 µs (docs/postgres.md).
            try:
                with conn.pipeline() as runner.pipeline:
                    runner.begin()
                    if self._prelude is not None:
                        runner(self._prelude)
                    for q, seen in replay.history:
                        if runner(q) != seen:
                            raise _Diverged(self.url)
                    while not replay.done:
                        q = replay.pending
                        replay.answer(q, runner(q))
                    attempt.phase = "commit"
                    commit = runner.commit()
                _committed(commit, attempt)
                attempt.phase = "done"
            except BaseException:
                if attempt.phase != "done":
                    _abandon(conn)
                raise
            if runner.big:
                retire(conn)
                conn.close()

    def close(self) -> None:
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            pool.close()


class AsyncPostgresStore(_PgCommon, AsyncStore):
    """The async twin of :class:`PostgresStore`; make one with ``await AsyncPostgresStore.open(url)``."""

    def __init__(self, opts: PgOptions, pool: Any, ctx: _ops.Context, health: _Health) -> None:
        self.opts = opts
        self._health = health
        self._usage = _Usage()
        self.url = opts.url
        self.schema = opts.schema
        self._pool = pool
        self._ctx = ctx
        self._prelude = _prelude(opts)

    @classmethod
    async def open(
        cls, url: str, *, codec: Codec | None = None, seal_key: SealKey | None = None, **options: Any
    ) -> AsyncPostgresStore:
        """Connect, migrate and return the store. Arguments as for :class:`PostgresStore`."""
        opts = parse(url, options)
        read_only = opts.read_only or None
        health = _Health()

        async def configure(conn: Any) -> None:
            await conn.set_read_only(read_only)
            _stamp(conn)

        with _translate(opts.url, opts):
            opts = await aprobe(opts)
            target = opts.for_replica() if opts.read_only else opts
            pool = psycopg_pool.AsyncConnectionPool(
                target.conninfo, **_pool_args(target), reset=_astamp, configure=configure
            )
            await pool.open(wait=True, timeout=opts.connect_timeout)
        store = cls(opts, pool, _ops.Context(POSTGRES_DIALECT, codec or Codec(), seal_key=seal_key), health)
        try:
            await store._amigrate()
        except BaseException:
            await store.close()
            raise
        return store

    async def _amigrate(self) -> int:
        if self.opts.read_only:
            return int(await self._aexecute(_version_op(self.url, self.schema), write=False))
        return int(await self._aexecute(_migrate_op(self._ctx, self.schema), write=True))

    async def _aexecute(self, op: _ops.Op[T], *, write: bool) -> T:
        pool = self._start(write)
        replay = _Replay(op)
        for tries in (1, 2):
            attempt = _Attempt()
            try:
                with _translate(self.url, self.opts, self._usage):
                    await self._aattempt(pool, replay, attempt, retry=tries > 1)
            except StoreUnavailableError as exc:
                if _after_failure(self.url, self._health, tries, attempt, exc, write=write):
                    continue
            return replay.result  # type: ignore[no-any-return]  # the op's return value
        raise AssertionError("unreachable")

    async def _aattempt(self, pool: Any, replay: _Replay, attempt: _Attempt, *, retry: bool) -> None:
        async with self._health.aconnection(pool, self._usage, ping=retry) as conn:
            attempt.conn = conn
            runner = _APipelined(conn)
            try:  # BEGIN and COMMIT as statements of the pipeline: see _attempt
                async with conn.pipeline() as runner.pipeline:
                    await runner.abegin()
                    if self._prelude is not None:
                        await runner.acall(self._prelude)
                    for q, seen in replay.history:
                        if await runner.acall(q) != seen:
                            raise _Diverged(self.url)
                    while not replay.done:
                        q = replay.pending
                        replay.answer(q, await runner.acall(q))
                    attempt.phase = "commit"
                    commit = await runner.acommit()
                _committed(commit, attempt)
                attempt.phase = "done"
            except BaseException:
                if attempt.phase != "done":
                    await _aabandon(conn)
                raise
            if runner.big:
                retire(conn)
                await conn.close()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

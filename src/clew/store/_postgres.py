"""The PostgreSQL backend: psycopg 3 with a connection pool, sync and async.

Safe for many processes on many machines: each operation is one READ COMMITTED
transaction; a branch head moves by compare-and-set (an ``UPDATE ... WHERE head IS
NOT DISTINCT FROM parent`` that a concurrent writer turns into zero rows); a run's
row lock orders the commits of that run only, so different runs never wait on each
other; expired leases are claimed with ``FOR UPDATE SKIP LOCKED``. Migrations are
versioned in ``clew_schema`` and applied under an advisory lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from clew._extras import require
from clew.codec import Codec
from clew.errors import (
    ClewError,
    ConfigError,
    ConflictError,
    StoreError,
    StoreUnavailableError,
)
from clew.store import _ops
from clew.store._base import AsyncStore, Store, adrive, drive
from clew.store._schema import migrate
from clew.store._seal import SealKey
from clew.store._sql import POSTGRES_DIALECT

psycopg = require("psycopg", "postgres", "the PostgreSQL store")
psycopg_pool = require("psycopg_pool", "postgres", "the PostgreSQL store")

T = TypeVar("T")
_LOCK_ID = 0x636C6577  # "clew": the advisory lock taken while migrating


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"


def _describe(url: str, exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "does not exist" in msg and "database" in msg:
        return f"PostgreSQL at {_where(url)}: {msg}; create it (createdb) or fix the URL"
    return (
        f"cannot reach PostgreSQL at {_where(url)}: {msg}; is the server running and the URL right "
        "(postgresql://user@host:port/dbname)?"
    )


@contextlib.contextmanager
def _translate(url: str) -> Iterator[None]:
    """Turn psycopg exceptions into clew errors: the only place they are caught."""
    try:
        yield
    except ClewError:
        raise
    except psycopg.errors.UniqueViolation as exc:
        raise ConflictError(f"PostgreSQL at {_where(url)}: {exc}") from exc
    except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
        raise ConflictError(f"PostgreSQL at {_where(url)}: concurrent writers collided ({exc}); retry") from exc
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        raise StoreUnavailableError(_describe(url, exc)) from exc
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL at {_where(url)}: {exc}") from exc


def _clew_url(url: str, schema: str | None) -> str:
    """The URL that opens this store again with :func:`clew.open` (schema included)."""
    return f"{url}?schema={schema}" if schema else url


def _options(schema: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"autocommit": True}
    if schema:
        if not schema.replace("_", "").isalnum():
            raise ConfigError(f"schema name {schema!r} must be letters, digits and underscores")
        kwargs["options"] = f"-c search_path={schema}"
    return kwargs


def _pool_args(
    schema: str | None, pool_min: int | str, pool_max: int | str, connect_timeout: float | str
) -> dict[str, Any]:
    """The arguments both connection pools are made with (options may come from a URL as str)."""
    return {
        "min_size": int(pool_min),
        "max_size": int(pool_max),
        "kwargs": _options(schema),
        "open": False,
        "timeout": float(connect_timeout),
    }


def _migration_steps(schema: str | None) -> list[str]:
    return [f'CREATE SCHEMA IF NOT EXISTS "{schema}"'] if schema else []


class _Pipelined:
    """Runs an operation's queries in pipeline mode: a batch of queries is one round
    trip, and queries whose answer is not needed (``exec``, ``many``) travel with the
    next batch or with the COMMIT."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.pipeline: Any = None

    def _send(self, q: _ops.Q) -> Any:
        cur = self.conn.cursor(binary=True)
        if q.mode == "many":
            cur.executemany(q.sql, q.params)
        else:
            cur.execute(q.sql, q.params)
        return cur

    @staticmethod
    def _result(cur: Any, mode: str) -> Any:
        if mode == "one":
            return cur.fetchone()
        if mode == "all":
            return cur.fetchall()
        return cur.rowcount if mode == "rowcount" else None

    def __call__(self, q: _ops.Q | list[_ops.Q]) -> Any:
        batch = q if isinstance(q, list) else [q]
        curs = [self._send(one) for one in batch]
        if any(one.mode in ("one", "all", "rowcount") for one in batch):
            self.pipeline.sync()
        results = [self._result(c, one.mode) for c, one in zip(curs, batch, strict=True)]
        return results if isinstance(q, list) else results[0]


class _APipelined(_Pipelined):
    async def _asend(self, q: _ops.Q) -> Any:
        cur = self.conn.cursor(binary=True)
        if q.mode == "many":
            await cur.executemany(q.sql, q.params)
        else:
            await cur.execute(q.sql, q.params)
        return cur

    @staticmethod
    async def _aresult(cur: Any, mode: str) -> Any:
        if mode == "one":
            return await cur.fetchone()
        if mode == "all":
            return await cur.fetchall()
        return cur.rowcount if mode == "rowcount" else None

    async def acall(self, q: _ops.Q | list[_ops.Q]) -> Any:
        batch = q if isinstance(q, list) else [q]
        curs = [await self._asend(one) for one in batch]
        if any(one.mode in ("one", "all", "rowcount") for one in batch):
            await self.pipeline.sync()
        results = [await self._aresult(c, one.mode) for c, one in zip(curs, batch, strict=True)]
        return results if isinstance(q, list) else results[0]


def _migrate_op(ctx: _ops.Context, schema: str | None) -> _ops.Op[int]:
    """Migrations as an operation, so sync and async share them; under an advisory lock."""
    prelude = [_ops.Q(stmt, (), "rowcount") for stmt in _migration_steps(schema)]
    prelude.append(_ops.Q("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,), "one"))
    return (yield from migrate(ctx, prelude))


class PostgresStore(Store):
    """A store in a PostgreSQL database.

    Args:
        url: ``postgresql://user@host:port/dbname``.
        codec: how values are encoded; the default refuses pickle.
        schema: a schema to keep clew's tables in (created if missing).
        pool_min: connections kept open.
        pool_max: connections at most.
        connect_timeout: seconds to wait for the server on open.
        seal_key: a key for keyed seals (see :class:`~clew.store.SealKey`).
    """

    def __init__(
        self,
        url: str,
        *,
        codec: Codec | None = None,
        schema: str | None = None,
        pool_min: int | str = 1,
        pool_max: int | str = 10,
        connect_timeout: float | str = 10.0,
        seal_key: SealKey | None = None,
    ) -> None:
        self.url = _clew_url(url, schema)
        self.schema = schema
        self._ctx = _ops.Context(POSTGRES_DIALECT, codec or Codec(), seal_key=seal_key)
        pool_args = _pool_args(schema, pool_min, pool_max, connect_timeout)
        with _translate(url):
            # One direct connection first: its error says exactly what is wrong.
            psycopg.connect(url, connect_timeout=int(float(connect_timeout)), autocommit=True).close()
            self._pool: Any = psycopg_pool.ConnectionPool(url, **pool_args)
            self._pool.open(wait=True, timeout=float(connect_timeout))
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _migrate(self) -> int:
        return int(self._execute(_migrate_op(self._ctx, self.schema), write=True))

    def _execute(self, op: _ops.Op[T], *, write: bool) -> T:
        if self._pool is None:
            raise StoreError(f"{self.url}: store is closed")
        with _translate(self.url), self._pool.connection() as conn:
            runner = _Pipelined(conn)
            with conn.pipeline() as runner.pipeline, conn.transaction():
                return drive(op, runner)

    def close(self) -> None:
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            pool.close()


class AsyncPostgresStore(AsyncStore):
    """The async twin of :class:`PostgresStore`; make one with ``await AsyncPostgresStore.open(url)``."""

    def __init__(self, url: str, pool: Any, ctx: _ops.Context, schema: str | None) -> None:
        self.url = _clew_url(url, schema)
        self.schema = schema
        self._pool = pool
        self._ctx = ctx

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        codec: Codec | None = None,
        schema: str | None = None,
        pool_min: int | str = 1,
        pool_max: int | str = 10,
        connect_timeout: float | str = 10.0,
        seal_key: SealKey | None = None,
    ) -> AsyncPostgresStore:
        """Connect, migrate and return the store. Arguments as for :class:`PostgresStore`."""
        pool_args = _pool_args(schema, pool_min, pool_max, connect_timeout)
        with _translate(url):
            conn = await psycopg.AsyncConnection.connect(url, connect_timeout=int(float(connect_timeout)))
            await conn.close()
            pool = psycopg_pool.AsyncConnectionPool(url, **pool_args)
            await pool.open(wait=True, timeout=float(connect_timeout))
        store = cls(url, pool, _ops.Context(POSTGRES_DIALECT, codec or Codec(), seal_key=seal_key), schema)
        try:
            await store._amigrate()
        except BaseException:
            await store.close()
            raise
        return store

    async def _amigrate(self) -> int:
        return int(await self._aexecute(_migrate_op(self._ctx, self.schema), write=True))

    async def _aexecute(self, op: _ops.Op[T], *, write: bool) -> T:
        if self._pool is None:
            raise StoreError(f"{self.url}: store is closed")
        with _translate(self.url):
            async with self._pool.connection() as conn:
                runner = _APipelined(conn)
                async with conn.pipeline() as runner.pipeline, conn.transaction():
                    return await adrive(op, runner.acall)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

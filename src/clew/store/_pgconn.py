"""What the PostgreSQL store does about its connections beyond the pool: finds out,
when connecting, whether a pooler answers; binds a big value without copying it;
and retires a connection whose libpq buffers grew to a big value's size.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from clew._extras import require
from clew.codec._envelope import FRAME_ABOVE
from clew.store import _ops
from clew.store._pgconfig import PgOptions, where

psycopg = require("psycopg", "postgres", "the PostgreSQL store")

log = logging.getLogger("clew.store")
POOLER_HINT = "behind a connection pooler (pgbouncer, Supavisor, RDS Proxy) add ?pooler=transaction (or =session)"


def _pooled(conn: Any, pid: Any) -> bool:
    """Whether ``conn`` reaches the server through a connection pooler: a pooler hands its
    clients a cancel key of its own, so the server process ``pid`` that answers is not
    the one named at connection (a plain TCP proxy passes the server's key through)."""
    return pid is not None and int(pid[0]) != conn.info.backend_pid


def _with_pooler(opts: PgOptions, why: str) -> PgOptions:
    """For ``pooler=auto`` with a pooler found: the rules of transaction mode, safe in either mode."""
    log.info(
        "PostgreSQL at %s is reached through a connection pooler (%s): no session state and no prepared "
        "statements are used (pooler=transaction); add ?pooler=transaction or ?pooler=session to the store URL "
        "to say so",
        where(opts.url),
        why,
    )
    return dataclasses.replace(opts, pooler="transaction")


def _refused_startup(opts: PgOptions, exc: BaseException) -> bool:
    return opts.pooler == "auto" and "unsupported startup parameter" in str(exc)


def _after_probe(opts: PgOptions, pooled: bool) -> PgOptions:
    if pooled and opts.pooler == "auto":
        return _with_pooler(opts, "its cancel key is not the server process's")
    if pooled and opts.pooler == "none":
        log.warning(
            "PostgreSQL at %s is reached through a connection pooler, and the store URL says pooler=none: in "
            "transaction mode prepared statements will fail; %s",
            where(opts.url),
            POOLER_HINT,
        )
    return opts


def probe(opts: PgOptions) -> PgOptions:
    """One direct connection first: its error says exactly what is wrong, and with
    ``pooler=auto`` it finds out whether a pooler answers."""
    target = opts.for_replica() if opts.read_only else opts
    try:
        conn = psycopg.connect(target.conninfo, **target.connect_kwargs())
    except psycopg.OperationalError as exc:
        if not _refused_startup(opts, exc):
            raise
        return probe(_with_pooler(opts, "it refused the settings sent when connecting"))
    with conn:
        return _after_probe(opts, _pooled(conn, conn.execute("SELECT pg_backend_pid()").fetchone()))


async def aprobe(opts: PgOptions) -> PgOptions:
    """:func:`probe`, async."""
    target = opts.for_replica() if opts.read_only else opts
    try:
        conn = await psycopg.AsyncConnection.connect(target.conninfo, **target.connect_kwargs())
    except psycopg.OperationalError as exc:
        if not _refused_startup(opts, exc):
            raise
        return await aprobe(_with_pooler(opts, "it refused the settings sent when connecting"))
    async with conn:
        cur = await conn.execute("SELECT pg_backend_pid()")
        return _after_probe(opts, _pooled(conn, await cur.fetchone()))


class _Whole:
    """A big parameter bound as the very bytes it holds (see :class:`_WholeDumper`)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data


_Dumper: Any = psycopg.adapt.Dumper


class _WholeDumper(_Dumper):  # type: ignore[misc]  # psycopg is loaded at run time (an optional extra)
    """Dumps a :class:`_Whole` as bytea without a copy: psycopg's own bytes dumper copies
    the value into its parameter buffer before libpq copies it into the message."""

    format = psycopg.pq.Format.BINARY
    oid = psycopg.postgres.types["bytea"].oid

    def dump(self, obj: _Whole) -> bytes | memoryview:
        return obj.data


psycopg.adapters.register_dumper(_Whole, _WholeDumper)


def params(q: _ops.Q) -> Any:
    """A ``blob`` query's big last parameter goes as is."""
    if q.mode == "blob":
        return [*q.params[:-1], _Whole(q.params[-1])]
    return q.params


def holds_big(result: Any) -> bool:
    """Whether a query's answer (a row, or a list of them) holds a big value."""
    rows = result if isinstance(result, list) else [result]
    return any(type(v) is bytes and len(v) >= FRAME_ABOVE for row in rows if isinstance(row, tuple) for v in row)


def retire(conn: Any) -> None:
    """Mark a connection to close after an operation that moved a big value: libpq keeps
    its buffers as big as the biggest message they held until the connection closes, so
    the pool makes a new one instead of keeping that memory for as long as it lives."""
    conn._clew_retired = True


class _QuietRetire(logging.Filter):
    """The pool warns of each closed connection given back; a retired one is no news."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (args and getattr(args[0], "_clew_retired", False))


logging.getLogger("psycopg.pool").addFilter(_QuietRetire())

"""``clew.open(url)``: one entry point for every backend.

A URL's query holds options: for SQLite clew's own (``synchronous``, ``busy_timeout``,
``mode``); for PostgreSQL libpq's pass through and clew's are taken out (see
:mod:`clew.store._pgconfig`). An option nobody knows is a :class:`ConfigError`.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from clew.codec import Codec
from clew.errors import ConfigError
from clew.store import AsyncStore, Store
from clew.store._sqlite import AsyncSQLiteStore, SQLiteStore

_SCHEMES = "memory://, sqlite:///relative/file.db, sqlite:////absolute/file.db or postgresql://user@host/dbname"
#: clew's options for SQLite URLs, with what each one takes.
SQLITE_OPTIONS = {
    "synchronous": "normal (survives a process crash, the default) or full (survives a power loss)",
    "busy_timeout": "seconds a writer waits for another process's write lock (default 30)",
    "mode": "ro to open read-only (never creates the file, never migrates), rw by default",
}
ENV_URL = "CLEW_URL"
_OBJECT_OPTIONS = {"seal_key"}  # keyword-only: objects, never in a URL


def _parse(url: str | None) -> tuple[str, str, dict[str, str]]:
    if url is None:
        url = os.environ.get(ENV_URL) or None
        if url is None:
            raise ConfigError(f"no store URL: pass one to clew.open(url) or set ${ENV_URL}; use {_SCHEMES}")
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"not a store URL: {url!r}; use {_SCHEMES}")
    parts = urlsplit(url)
    return parts.scheme.lower(), url, dict(parse_qsl(parts.query, keep_blank_values=True))


def _sqlite_path(url: str) -> str:
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return rest[1:]


def _sqlite_options(url: str, query: dict[str, str], kwargs: dict[str, Any], *, memory: bool) -> dict[str, Any]:
    opts = {**query, **kwargs}
    unknown = sorted((set(query) - set(SQLITE_OPTIONS)) | (set(kwargs) - set(SQLITE_OPTIONS) - _OBJECT_OPTIONS))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in SQLITE_OPTIONS.items())
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for {url!r}; SQLite stores take {known}")
    out = dict(opts)
    if "busy_timeout" in out:
        try:
            out["busy_timeout"] = float(out["busy_timeout"])
        except (TypeError, ValueError):
            raise ConfigError(
                f"busy_timeout={out['busy_timeout']!r} in {url!r} must be a number of seconds, e.g. busy_timeout=30"
            ) from None
        if not out["busy_timeout"] >= 0:
            raise ConfigError(f"busy_timeout={out['busy_timeout']!r} in {url!r} must be 0 or more seconds")
    if "mode" in out:
        mode = str(out["mode"]).lower()
        if mode not in ("ro", "rw"):
            raise ConfigError(f"mode={out['mode']!r} in {url!r} must be ro (read-only) or rw")
        if memory and mode == "ro":
            raise ConfigError("memory:// cannot be opened read-only: it starts empty")
        out["mode"] = mode
    return out


def open(url: str | None = None, *, codec: Codec | None = None, **options: Any) -> Store:  # noqa: A001 - the public verb
    """Open (and migrate) a store.

    Args:
        url: ``memory://``; ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``
            (query options: ``synchronous=normal|full``, ``busy_timeout=seconds``,
            ``mode=ro``); ``postgresql://user@host:port/dbname`` with libpq's options
            (``sslmode``, ``application_name``, ``connect_timeout``...) and clew's
            (``schema``, ``pool_min``, ``pool_max``, ``pool_timeout``, ``pooler``,
            ``statement_timeout``, ``lock_timeout``, ``replica``, ``mode``; see
            docs/postgres.md; needs ``clew[postgres]``). Without a URL, ``$CLEW_URL``.
        codec: the codec for values; the default refuses pickle.
        **options: clew's options, overriding those in the URL.

    Raises:
        ConfigError: a malformed URL, an unknown scheme or option, a bad option value.
        MissingExtraError: the backend's driver is not installed.
        StoreUnavailableError: the file or server cannot be reached.
    """
    backend, target, opts = _plan(url, options)
    if backend == "sqlite":
        return SQLiteStore(target, codec=codec, **opts)
    from clew.store._postgres import PostgresStore

    return PostgresStore(target, codec=codec, **opts)


async def open_async(url: str | None = None, *, codec: Codec | None = None, **options: Any) -> AsyncStore:
    """The async twin of :func:`open`, returning an :class:`~clew.store.AsyncStore`."""
    backend, target, opts = _plan(url, options)
    if backend == "sqlite":
        return AsyncSQLiteStore(target, codec=codec, **opts)
    from clew.store._postgres import AsyncPostgresStore

    return await AsyncPostgresStore.open(target, codec=codec, **opts)


def _plan(url: str | None, options: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(backend, path or connection URL, options) for a store URL; options override the query."""
    scheme, url, query = _parse(url)
    if scheme == "memory":
        return "sqlite", ":memory:", _sqlite_options(url, query, options, memory=True)
    if scheme == "sqlite":
        return "sqlite", _sqlite_path(url), _sqlite_options(url, query, options, memory=False)
    if scheme in ("postgresql", "postgres"):
        return "postgres", url, options  # the PostgreSQL store takes its URL apart itself
    raise ConfigError(f"unknown store scheme {scheme!r} in {url!r}; use {_SCHEMES}")

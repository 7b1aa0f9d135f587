"""``clew.open(url)``: one entry point for every backend."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from clew.codec import Codec
from clew.errors import ConfigError
from clew.store import AsyncStore, Store
from clew.store._sqlite import AsyncSQLiteStore, SQLiteStore

_SCHEMES = "memory://, sqlite:///path/to/file.db or postgresql://user@host/dbname"


def _parse(url: str) -> tuple[str, str, dict[str, str]]:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"not a store URL: {url!r}; use {_SCHEMES}")
    parts = urlsplit(url)
    return parts.scheme.lower(), url, dict(parse_qsl(parts.query))


def _sqlite_path(url: str) -> str:
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return rest[1:]


def open(url: str, *, codec: Codec | None = None, **options: Any) -> Store:  # noqa: A001 - the public verb
    """Open (and migrate) a store.

    Args:
        url: ``memory://``; ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``
            (query options: ``synchronous=normal|full``, ``busy_timeout=seconds``);
            ``postgresql://user@host:port/dbname`` (query options: ``schema``,
            ``pool_min``, ``pool_max``; needs ``clew[postgres]``).
        codec: the codec for values; the default refuses pickle.
        **options: backend options, overriding those in the URL.

    Raises:
        ConfigError: a malformed URL or unknown scheme.
        MissingExtraError: the backend's driver is not installed.
        StoreUnavailableError: the file or server cannot be reached.
    """
    backend, target, opts = _plan(url, options)
    if backend == "sqlite":
        return SQLiteStore(target, codec=codec, **opts)
    from clew.store._postgres import PostgresStore

    return PostgresStore(target, codec=codec, **opts)


async def open_async(url: str, *, codec: Codec | None = None, **options: Any) -> AsyncStore:
    """The async twin of :func:`open`, returning an :class:`~clew.store.AsyncStore`."""
    backend, target, opts = _plan(url, options)
    if backend == "sqlite":
        return AsyncSQLiteStore(target, codec=codec, **opts)
    from clew.store._postgres import AsyncPostgresStore

    return await AsyncPostgresStore.open(target, codec=codec, **opts)


def _plan(url: str, options: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(backend, path or connection URL, options) for a store URL; options override the query."""
    scheme, url, query = _parse(url)
    opts: dict[str, Any] = {**query, **options}
    if "busy_timeout" in opts:
        opts["busy_timeout"] = float(opts["busy_timeout"])
    if scheme == "memory":
        return "sqlite", ":memory:", opts
    if scheme == "sqlite":
        return "sqlite", _sqlite_path(url), opts
    if scheme in ("postgresql", "postgres"):
        return "postgres", url.split("?", 1)[0], opts
    raise ConfigError(f"unknown store scheme {scheme!r} in {url!r}; use {_SCHEMES}")

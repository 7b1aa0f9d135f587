"""``clew.open(url)``: one entry point for every backend."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from clew.codec import Codec
from clew.errors import ConfigError
from clew.store import AsyncStore, Store

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
    scheme, url, query = _parse(url)
    opts: dict[str, Any] = {**query, **options}
    if "busy_timeout" in opts:
        opts["busy_timeout"] = float(opts["busy_timeout"])
    if scheme == "memory":
        return cast(Store, _sqlite().SQLiteStore(":memory:", codec=codec, **opts))
    if scheme == "sqlite":
        return cast(Store, _sqlite().SQLiteStore(_sqlite_path(url), codec=codec, **opts))
    if scheme in ("postgresql", "postgres"):
        from clew.store._postgres import PostgresStore

        return PostgresStore(url.split("?", 1)[0], codec=codec, **opts)
    raise ConfigError(f"unknown store scheme {scheme!r} in {url!r}; use {_SCHEMES}")


async def open_async(url: str, *, codec: Codec | None = None, **options: Any) -> AsyncStore:
    """The async twin of :func:`open`, returning an :class:`~clew.store.AsyncStore`."""
    scheme, url, query = _parse(url)
    opts: dict[str, Any] = {**query, **options}
    if "busy_timeout" in opts:
        opts["busy_timeout"] = float(opts["busy_timeout"])
    if scheme == "memory":
        return cast(AsyncStore, _sqlite().AsyncSQLiteStore(":memory:", codec=codec, **opts))
    if scheme == "sqlite":
        return cast(AsyncStore, _sqlite().AsyncSQLiteStore(_sqlite_path(url), codec=codec, **opts))
    if scheme in ("postgresql", "postgres"):
        from clew.store._postgres import AsyncPostgresStore

        return await AsyncPostgresStore.open(url.split("?", 1)[0], codec=codec, **opts)
    raise ConfigError(f"unknown store scheme {scheme!r} in {url!r}; use {_SCHEMES}")


def _sqlite() -> Any:
    from clew.store import _sqlite

    return _sqlite

"""What a ``postgresql://`` URL asks for: libpq's options and clew's own, taken apart.

Standard libpq options (``sslmode``, ``application_name``, ``options``,
``connect_timeout``, ``keepalives``...) pass through to libpq untouched. clew's own
options (:data:`CLEW_OPTIONS`) are taken out; a query key that neither knows is a
:class:`~clew.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from clew.errors import ConfigError

#: clew's own URL options for PostgreSQL, with what each one takes.
CLEW_OPTIONS = {
    "schema": "a schema for clew's tables (letters, digits, underscores)",
    "pool_min": "connections kept open (default 1)",
    "pool_max": "connections at most (default 10)",
    "pool_timeout": "seconds to wait for a free connection before StoreUnavailableError (default 30)",
    "pooler": "'transaction' or 'session' behind pgbouncer/Supavisor/RDS Proxy, 'none' for a direct server, "
    "'auto' (the default) to find out when connecting",
    "statement_timeout": "PostgreSQL's statement_timeout for clew's transactions, e.g. 5s or 500ms",
    "lock_timeout": "PostgreSQL's lock_timeout for clew's transactions, e.g. 2s",
    "replica": "a postgresql:// URL of a read replica, used by stores opened read-only",
    "mode": "'ro' to open read-only (never migrates, never creates the schema); 'rw' by default",
}
#: TCP keepalives are on unless the URL says otherwise: a dead peer is noticed in about a minute.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}
DEFAULT_CONNECT_TIMEOUT = "10"
POOLERS = ("auto", "none", "session", "transaction")
_DURATION = re.compile(r"^\s*\d+\s*(us|ms|s|min|h|d)?\s*$")


def where(url: str) -> str:
    """``host:port/dbname`` of a URL, for messages (never the password)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"
    except ValueError:
        return "the PostgreSQL server"


@dataclasses.dataclass(frozen=True, slots=True)
class PgOptions:
    """A PostgreSQL store's settings, from its URL and keyword arguments.

    Attributes:
        conninfo: the libpq connection string (clew's options taken out, keepalives added).
        url: the URL that opens this store again, clew's options included.
    """

    conninfo: str
    url: str
    schema: str | None = None
    pool_min: int = 1
    pool_max: int = 10
    pool_timeout: float = 30.0
    connect_timeout: float = 10.0
    pooler: str = "auto"
    statement_timeout: str | None = None
    lock_timeout: str | None = None
    replica: str | None = None
    read_only: bool = False

    @property
    def direct(self) -> bool:
        """Whether connections go straight to the server (so far as is known: ``auto``
        becomes ``transaction`` when connecting finds a pooler)."""
        return self.pooler in ("none", "auto")

    @property
    def settings(self) -> dict[str, str]:
        """Server settings clew applies to each of its transactions."""
        out: dict[str, str] = {}
        if self.schema:
            out["search_path"] = self.schema
        if self.statement_timeout:
            out["statement_timeout"] = self.statement_timeout
        if self.lock_timeout:
            out["lock_timeout"] = self.lock_timeout
        return out

    def connect_kwargs(self) -> dict[str, Any]:
        """psycopg connection arguments.

        Direct to the server, settings travel once in the startup packet (``options``).
        Behind a pooler they cannot (poolers refuse or drop startup options), so the
        runner sets them with ``set_config(..., true)`` at the start of each transaction;
        in transaction mode psycopg's server-side prepared statements are switched off,
        since the next transaction may run on another server connection.
        """
        kwargs: dict[str, Any] = {"autocommit": True}
        if self.pooler == "transaction":
            kwargs["prepare_threshold"] = None
        if self.direct and self.settings:
            from psycopg.conninfo import conninfo_to_dict

            given = str(conninfo_to_dict(self.conninfo).get("options") or "")
            ours = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
            kwargs["options"] = f"{given} {ours}".strip()
        return kwargs

    def for_replica(self) -> PgOptions:
        """These options pointed at the replica (when one is given)."""
        if not self.replica:
            return self
        replica = parse(self.replica, {})
        return dataclasses.replace(self, conninfo=replica.conninfo)


def _int(name: str, value: Any, *, minimum: int) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"PostgreSQL option {name}={value!r} must be a whole number") from None
    if out < minimum:
        raise ConfigError(f"PostgreSQL option {name}={value!r} must be at least {minimum}")
    return out


def _seconds(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"PostgreSQL option {name}={value!r} must be a number of seconds") from None
    if not out > 0:
        raise ConfigError(f"PostgreSQL option {name}={value!r} must be more than 0 seconds")
    return out


def _duration(name: str, value: Any) -> str:
    text = str(value).strip()
    if not _DURATION.match(text):
        raise ConfigError(
            f"PostgreSQL option {name}={value!r} must be a duration such as 5s, 500ms or 2min (a bare number is ms)"
        )
    return text.replace(" ", "")


def parse(url: str, options: dict[str, Any]) -> PgOptions:
    """Take a ``postgresql://`` URL apart; keyword ``options`` override the URL's.

    Raises:
        ConfigError: an option neither clew nor libpq knows, or a bad value.
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in CLEW_OPTIONS}
    theirs = [(k, v) for k, v in query if k not in CLEW_OPTIONS]
    unknown_kwargs = sorted(set(options) - set(CLEW_OPTIONS) - {"connect_timeout"})
    if unknown_kwargs:
        raise ConfigError(
            f"unknown PostgreSQL store option(s) {', '.join(unknown_kwargs)}; clew's options are "
            f"{', '.join(CLEW_OPTIONS)} (libpq options go in the URL)"
        )
    libpq_url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(theirs, quote_via=quote), parts.fragment))
    try:
        params = conninfo_to_dict(libpq_url)
    except ProgrammingError as exc:
        raise ConfigError(
            f"bad PostgreSQL URL for {where(url)}: {exc}; clew's own options are {', '.join(CLEW_OPTIONS)}, "
            "the rest must be libpq's (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS)"
        ) from None
    merged: dict[str, Any] = {**ours, **{k: v for k, v in options.items() if v is not None}}
    if "connect_timeout" in merged:
        params["connect_timeout"] = str(merged.pop("connect_timeout"))
    params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    for key, value in KEEPALIVES.items():
        params.setdefault(key, value)
    pooler = str(merged.get("pooler", "auto")).lower()
    if pooler not in POOLERS:
        raise ConfigError(f"PostgreSQL option pooler={pooler!r} must be one of {', '.join(POOLERS)}")
    mode = str(merged.get("mode", "rw")).lower()
    if mode not in ("ro", "rw"):
        raise ConfigError(f"PostgreSQL option mode={mode!r} must be 'ro' (read-only) or 'rw'")
    schema = merged.get("schema") or None
    if schema is not None and not str(schema).replace("_", "").isalnum():
        raise ConfigError(f"schema name {schema!r} must be letters, digits and underscores")
    pool_min = _int("pool_min", merged.get("pool_min", 1), minimum=0)
    pool_max = _int("pool_max", merged.get("pool_max", 10), minimum=1)
    if pool_min > pool_max:
        raise ConfigError(f"PostgreSQL option pool_min={pool_min} is more than pool_max={pool_max}")
    replica = merged.get("replica") or None
    if replica is not None and not str(replica).startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"PostgreSQL option replica={replica!r} must be a postgresql:// URL (URL-encoded)")
    kept = [(k, str(v)) for k, v in merged.items() if k in CLEW_OPTIONS]
    reopen = urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(theirs + kept, quote_via=quote), parts.fragment)
    )
    return PgOptions(
        conninfo=make_conninfo("", **params),
        url=reopen,
        schema=str(schema) if schema else None,
        pool_min=pool_min,
        pool_max=pool_max,
        pool_timeout=_seconds("pool_timeout", merged.get("pool_timeout", 30)),
        connect_timeout=_seconds("connect_timeout", params["connect_timeout"]),
        pooler=pooler,
        statement_timeout=_duration("statement_timeout", merged["statement_timeout"])
        if merged.get("statement_timeout")
        else None,
        lock_timeout=_duration("lock_timeout", merged["lock_timeout"]) if merged.get("lock_timeout") else None,
        replica=str(replica) if replica else None,
        read_only=mode == "ro",
    )

"""Read-only stores (``?mode=ro``): opened without migrating, refusing every write.

A read-only store fits a reader whose database role may only SELECT (an inspector, an
auditor, a CI check): it never creates or alters a table, so its schema must already
be this clew's.
"""

from __future__ import annotations

from clew.errors import ConfigError, ReadOnlyError, SchemaVersionError
from clew.store._query import Context, Op, Q
from clew.store._schema import SCHEMA_VERSION

MODES = ("rw", "ro")


def read_only(mode: str) -> bool:
    """Whether ``mode`` (from ``?mode=``) asks for a read-only store."""
    if mode not in MODES:
        raise ConfigError(f"mode must be 'rw' or 'ro' (read-only), not {mode!r}")
    return mode == "ro"


def check_version(ctx: Context, url: str) -> Op[int]:
    """The schema version, which must be this clew's: a read-only store cannot migrate."""
    present = yield Q("SELECT to_regclass('clew_schema') IS NOT NULL", (), "one")
    version = 0
    if present is not None and present[0]:
        row = yield Q("SELECT max(version) FROM clew_schema", (), "one")
        version = int(row[0] or 0)
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{url} has schema version {version or 'none'} and this clew needs {SCHEMA_VERSION}; "
            "a store opened read-only is never migrated: open it read-write once (or upgrade clew)"
        )
    return version


def refuse(url: str) -> ReadOnlyError:
    return ReadOnlyError(f"{url} was opened read-only (mode=ro): open it without mode=ro to write")

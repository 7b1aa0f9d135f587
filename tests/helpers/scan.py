"""Read the bytes a database keeps on disk and count copies of a marker in them.

What counts as a copy: the marker's bytes as they are; the marker inside any zstd frame
found in the bytes (clew compresses blobs with zstd); and the marker with one stray byte
allowed after every character, which is how PostgreSQL's pglz writes a literal run (a
control byte before every eight literals) in a compressed TOAST value.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import zstandard

import clew

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def disk_bytes(stores: Any, store: clew.Store) -> dict[str, bytes]:
    """Every file's bytes (name -> bytes) holding the test database, as on disk now."""
    if stores.backend == "memory":
        return {"memory": bytes(store._conn.serialize())}  # type: ignore[attr-defined]  # the private database
    if stores.backend == "sqlite":
        out = {}
        for suffix in ("", "-wal", "-journal"):
            try:
                out[f"clew.db{suffix}"] = (stores.path.parent / f"clew.db{suffix}").read_bytes()
            except FileNotFoundError:
                pass
        return out
    import psycopg

    with psycopg.connect(stores.pg, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # dirty pages to the relation files
        rels = conn.execute(
            """
            SELECT c.oid::regclass::text, pg_relation_filepath(c.oid) FROM pg_class c
            WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'i')
            UNION ALL
            SELECT t.oid::regclass::text, pg_relation_filepath(t.oid) FROM pg_class c
            JOIN pg_class t ON t.oid = c.reltoastrelid
            WHERE c.relnamespace = %s::regnamespace
            UNION ALL
            SELECT i.indexrelid::regclass::text, pg_relation_filepath(i.indexrelid) FROM pg_class c
            JOIN pg_index i ON i.indrelid = c.reltoastrelid
            WHERE c.relnamespace = %s::regnamespace
            """,
            (stores.schema, stores.schema, stores.schema),
        ).fetchall()
        out = {}
        for name, path in rels:
            if path is None:
                continue
            try:
                out[name] = bytes(conn.execute("SELECT pg_read_binary_file(%s)", (path,)).fetchone()[0])
            except psycopg.errors.UndefinedFile:
                out[name] = b""  # an empty relation has no file yet
        return out


def _loose(marker: bytes) -> re.Pattern[bytes]:
    return re.compile(b"".join(re.escape(bytes((c,))) + b".?" for c in marker[:-1]) + re.escape(marker[-1:]), re.S)


def copies(data: bytes, marker: bytes) -> dict[str, int]:
    """Copies of ``marker`` in ``data``: ``plain``, inside ``zstd`` frames, ``pglz``-style."""
    plain = data.count(marker)
    in_zstd = 0
    for m in re.finditer(re.escape(ZSTD_MAGIC), data):
        try:
            out = zstandard.ZstdDecompressor().decompressobj().decompress(data[m.start() : m.start() + (1 << 22)])
        except zstandard.ZstdError:
            continue
        in_zstd += out.count(marker)
    loose = len(_loose(marker).findall(data)) - plain
    return {"plain": plain, "zstd": in_zstd, "pglz": loose}


def total_copies(stores: Any, store: clew.Store, marker: str) -> dict[str, dict[str, int]]:
    """Per file, the copies of ``marker`` found (files with none left out)."""
    found = {}
    for name, data in disk_bytes(stores, store).items():
        c = copies(data, marker.encode())
        if any(c.values()):
            found[name] = c
    return found


@contextlib.contextmanager
def pg_wal_kept(stores: Any) -> Iterator[Callable[[str], dict[str, int]]]:
    """Keep the PostgreSQL write-ahead log from here on (a replication slot holds it, so no
    checkpoint recycles it), and give a function counting a marker's copies in it."""
    import psycopg

    slot = f"clew_scan_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(stores.pg, autocommit=True) as conn:
        since = conn.execute("SELECT lsn FROM pg_create_physical_replication_slot(%s, true)", (slot,)).fetchone()[0]

        def count(marker: str) -> dict[str, int]:
            first, last = conn.execute(
                "SELECT pg_walfile_name(%s::pg_lsn), pg_walfile_name(pg_current_wal_lsn())", (str(since),)
            ).fetchone()
            names = conn.execute(
                "SELECT name FROM pg_ls_waldir() WHERE name >= %s AND name <= %s ORDER BY name", (first, last)
            ).fetchall()
            data = b"".join(
                bytes(conn.execute("SELECT pg_read_binary_file(%s)", (f"pg_wal/{n}",)).fetchone()[0]) for (n,) in names
            )
            return copies(data, marker.encode())

        try:
            yield count
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))

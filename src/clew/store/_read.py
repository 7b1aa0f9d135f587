"""Reading building blocks shared by the operations: row mapping, blobs checked against
their addresses, manifests checked against their checkpoint's seal, whole states.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Sequence
from typing import Any

from clew.errors import (
    DecodeError,
    IntegrityError,
    NotFoundError,
    PickleRefusedError,
)
from clew.store import _state
from clew.store._query import Context, Q
from clew.store._records import (
    BranchRecord,
    CheckpointRecord,
    JournalEntry,
    RunRecord,
)
from clew.store._seal import checkpoint_hash, journal_hash

_BATCH = 500


# -- row mapping ---------------------------------------------------------------


def labels_of(raw: Any) -> dict[str, str]:
    return dict(json.loads(raw) if isinstance(raw, str | bytes) else raw)


def run_record(ctx: Context, row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        agent=row[1],
        status=row[2],
        labels={k: ctx.codec.open_label(v) for k, v in labels_of(row[3]).items()},
        metadata=ctx.codec.decode(bytes(row[4])),
        created_at=row[5],
        updated_at=row[6],
        lease_owner=row[7],
        lease_expires_at=row[8],
    )


def checkpoint_record(ctx: Context, run_id: str, row: Sequence[Any]) -> CheckpointRecord:
    return CheckpointRecord(
        run_id=run_id,
        checkpoint_id=row[0],
        seq=row[1],
        branch=row[2],
        parent_id=row[3],
        kind=row[4],
        metadata=ctx.codec.decode(bytes(row[5])),
        hash=bytes(row[6]).hex(),
        created_at=row[7],
    )


def journal_entry(ctx: Context, run_id: str, row: Sequence[Any]) -> JournalEntry:
    return JournalEntry(
        run_id=run_id,
        seq=row[0],
        branch=row[1],
        checkpoint_id=row[2],
        kind=row[3],
        data=ctx.codec.decode(bytes(row[4])),
        hash=bytes(row[5]).hex(),
        created_at=row[6],
    )


def branch_record(run_id: str, row: Sequence[Any]) -> BranchRecord:
    return BranchRecord(run_id=run_id, name=row[0], head=row[1], base=row[2], created_at=row[3])


# -- building blocks -----------------------------------------------------------


def sealed_meta(ctx: Context, stored: bytes) -> bytes:
    """What a checkpoint's seal covers of its stored metadata (see ``Codec.sealable``)."""
    return ctx.codec.sealable(ctx.codec.unwrap(stored), encrypted=ctx.codec.key_id(stored) is not None)


def manifest_to_store(ctx: Context, plain: bytes) -> bytes:
    """A checkpoint's manifest as stored: plain msgpack, or an encrypted envelope with a keyring
    (a dict state's field names are user data)."""
    return ctx.codec.wrap(plain) if ctx.codec.encrypts else plain


def manifest_from_store(ctx: Context, stored: bytes) -> bytes:
    """The manifest's plain msgpack. A manifest is a msgpack map, which never starts with
    the envelope's magic byte 0xC7, so an encrypted one is told apart by its first byte."""
    return ctx.codec.unwrap(stored) if stored[:1] == b"\xc7" else stored


def run_key(ctx: Context, run_id: str) -> Generator[Q | list[Q], Any, int]:
    row = yield ctx.q("run_key", (run_id,))
    if row is None:
        ctx.run_keys.pop(run_id, None)
        raise NotFoundError(f"run {run_id!r} not found")
    ctx.run_keys[run_id] = int(row[0])
    return int(row[0])


def branch_row(ctx: Context, rk: int, run_id: str, name: str) -> Generator[Q | list[Q], Any, BranchRecord]:
    row = yield ctx.q("get_branch", (rk, name))
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no branch {name!r}")
    return branch_record(run_id, row)


def fetch_blobs(ctx: Context, rk: int, addrs: Iterable[bytes]) -> Generator[Q | list[Q], Any, dict[bytes, bytes]]:
    """Plaintext of the given blobs, each checked against its address."""
    wanted = list(dict.fromkeys(addrs))
    found: dict[bytes, bytes] = {}
    queries = []
    for i in range(0, len(wanted), _BATCH):
        part = wanted[i : i + _BATCH]
        if ctx.d.expands_in_lists:
            queries.append(ctx.q("blobs_by_addr", (rk, *part), "all", marks=ctx.marks(len(part))))
        else:
            queries.append(ctx.q("blobs_by_addr", (rk, part), "all"))
    results = (yield queries) if queries else []  # one batch: one round trip on PostgreSQL
    for rows in results:
        for addr, data in rows:
            addr, data = bytes(addr), bytes(data)
            try:
                plain = ctx.codec.unwrap(data)
            except PickleRefusedError:
                raise  # intact bytes; the reader lacks the opt-in
            except DecodeError as exc:
                raise IntegrityError(f"blob {addr.hex()} cannot be read, its stored bytes were changed: {exc}") from exc
            if not ctx.codec.addressed(plain, addr, data):
                raise IntegrityError(
                    f"blob {addr.hex()} does not match its address: stored bytes were changed"
                    + ctx.codec.address_hint(plain, addr)
                )
            found[addr] = plain
    missing = [a for a in wanted if a not in found]
    if missing:
        raise IntegrityError(f"blob {missing[0].hex()} is referenced but missing ({len(missing)} missing)")
    return found


def sealed_manifest(
    ctx: Context, rk: int, run_id: str, checkpoint_id: str
) -> Generator[Q | list[Q], Any, tuple[dict[str, Any], str, bytes]]:
    """A checkpoint's manifest, checked against its seal; with its branch and hash."""
    row, journal = yield [
        ctx.q("get_sealed", (rk, checkpoint_id)),
        ctx.q("journal_hashes", (rk, checkpoint_id), "all"),
    ]
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no checkpoint {checkpoint_id!r}")
    manifest_bytes, meta, stored, parent, branch, kind, created, parent_hash = row
    if not bytes(manifest_bytes):
        raise NotFoundError(
            f"checkpoint {checkpoint_id} of run {run_id!r} was pruned by a retention policy: "
            "its history entry remains, its state does not"
        )
    try:
        if parent is not None and parent_hash is None:
            raise IntegrityError(f"checkpoint {checkpoint_id}: its parent {parent!r} is missing")
        manifest_plain = manifest_from_store(ctx, bytes(manifest_bytes))
        expect = checkpoint_hash(
            bytes(parent_hash or b""),
            checkpoint_id,
            branch,
            kind,
            manifest_plain,
            sealed_meta(ctx, bytes(meta)),
            created,
            [bytes(h) for (h,) in journal],
        )
        if expect != bytes(stored):
            raise IntegrityError(
                f"checkpoint {checkpoint_id} of run {run_id!r} does not match its seal: its manifest, "
                "metadata or journal was changed; run verify() to see what" + ctx.codec.mac_hint()
            )
        manifest = ctx.codec.loads(manifest_plain)
    except DecodeError as exc:
        raise IntegrityError(f"checkpoint {checkpoint_id} of run {run_id!r} cannot be read: {exc}") from exc
    return dict(manifest), branch, bytes(stored)


def load_fields(
    ctx: Context, rk: int, run_id: str, checkpoint_id: str
) -> Generator[Q | list[Q], Any, tuple[dict[str, Any], _state.StateCache, str]]:
    """The state of a checkpoint, the writer cache that matches it, and its branch."""
    manifest, branch, sealed = yield from sealed_manifest(ctx, rk, run_id, checkpoint_id)
    # Expand list index nodes level by level down to the leaves.
    lists: dict[str, list[tuple[bytes, int, int]]] = {
        name: _state.manifest_roots(entry) for name, entry in manifest.items() if entry[0] == "l"
    }
    while True:
        nodes = [a for roots in lists.values() for a, _, h in roots if h > 0]
        if not nodes:
            break
        plains = yield from fetch_blobs(ctx, rk, nodes)
        for name, roots in lists.items():
            expanded: list[tuple[bytes, int, int]] = []
            for a, c, h in roots:
                if h == 0:
                    expanded.append((a, c, h))
                else:
                    expanded.extend((ca, cc, h - 1) for ca, cc in _state.node_children(plains[a]))
            lists[name] = expanded
    value_addrs = [bytes(entry[1]) for entry in manifest.values() if entry[0] == "v"]
    leaf_addrs = [a for leaves in lists.values() for a, _, _ in leaves]
    plains = yield from fetch_blobs(ctx, rk, [*value_addrs, *leaf_addrs])
    state: dict[str, Any] = {}
    fields: dict[str, _state.FieldCache] = {}
    for name, entry in manifest.items():
        if entry[0] == "v":
            addr = bytes(entry[1])
            state[name] = ctx.codec.loads(plains[addr])
            fields[name] = _state.ValueCache(addr, None, plains[addr], ctx.codec)
        else:
            leaves = lists[name]
            try:
                joined = _state.join_arrays([plains[a] for a, _, _ in leaves], sum(c for _, c, _ in leaves))
            except ValueError:
                raise IntegrityError(
                    f"checkpoint {checkpoint_id}: list {name!r} has a leaf that is not a list"
                ) from None
            items = ctx.codec.loads(joined)
            if len(items) != entry[1]:
                raise IntegrityError(
                    f"checkpoint {checkpoint_id}: list {name!r} holds {len(items)} items, manifest says {entry[1]}"
                )
            state[name] = items
            fields[name] = _state.ListCache(
                [(a, c) for a, c, _ in leaves], _state.manifest_roots(entry), None, joined, ctx.codec
            )
    return state, _state.StateCache(checkpoint_id, fields, sealed), branch


def journal_rows(
    ctx: Context,
    rk: int,
    branch: str,
    entries: Sequence[tuple[str, Any]],
    checkpoint_id: str | None,
    now: float,
    first: int,
) -> tuple[list[tuple[Any, ...]], list[tuple[int, bytes, bytes, str, Any]]]:
    """Journal rows numbered from ``first``, and (seq, hash, plain, kind, data) of each."""
    rows = []
    out = []
    for i, (kind, data) in enumerate(entries):
        plain, pickled = ctx.codec.dumps(data, f"journal[{kind}]")
        seq = first + i
        h = journal_hash(seq, branch, kind, ctx.codec.sealable(plain, encrypted=ctx.codec.encrypts), now)
        rows.append((rk, seq, branch, checkpoint_id, kind, ctx.codec.wrap(plain, pickled=pickled), h, now))
        out.append((seq, h, plain, kind, data))
    return rows, out


def append_journal_rows(
    ctx: Context,
    rk: int,
    run_id: str,
    branch: str,
    entries: Sequence[tuple[str, Any]],
    checkpoint_id: str | None,
    now: float,
) -> Generator[Q | list[Q], Any, list[tuple[int, bytes, bytes, str, Any]]]:
    row = yield ctx.q("bump_journal_seq", (len(entries), rk, run_id))
    if row is None:
        ctx.run_keys.pop(run_id, None)
        raise NotFoundError(f"run {run_id!r} not found")
    rows, out = journal_rows(ctx, rk, branch, entries, checkpoint_id, now, int(row[0]) - len(entries) + 1)
    yield ctx.q("insert_journal", rows, "many")
    return out

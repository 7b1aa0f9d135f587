"""Reading building blocks shared by the operations: row mapping, blobs checked against
their addresses, manifests checked against their checkpoint's seal, whole states.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Sequence
from typing import Any

from clew.codec._envelope import Framed, Plain
from clew.errors import (
    DecodeError,
    IntegrityError,
    LeaseLostError,
    NotFoundError,
    PickleRefusedError,
)
from clew.store import _manifests, _splice, _state, _subjects, _tree
from clew.store._query import Context, Op, Q
from clew.store._records import (
    BranchRecord,
    CheckpointRecord,
    JournalEntry,
    Lease,
    RunRecord,
)
from clew.store._seal import checkpoint_hash, head_seal, journal_hash

_BATCH = 500


# -- row mapping ---------------------------------------------------------------


def labels_of(raw: Any, run_id: str = "?") -> dict[str, str]:
    try:
        labels = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except ValueError as exc:
        raise IntegrityError(f"run {run_id!r}: its labels are not valid JSON ({exc}); the row was changed") from None
    if not isinstance(labels, dict):
        raise IntegrityError(f"run {run_id!r}: its labels are not a JSON object; the row was changed")
    return labels


def mapping_of(ctx: Context, data: Any, what: str) -> dict[str, Any]:
    """A stored map (metadata, an error record), or IntegrityError naming ``what``."""
    try:
        value = ctx.codec.decode(bytes(data))
    except PickleRefusedError:
        raise
    except DecodeError as exc:
        raise IntegrityError(f"{what} cannot be read, its stored bytes were changed: {exc}") from exc
    if not isinstance(value, dict):
        raise IntegrityError(f"{what} is a {type(value).__name__}, not a map: its stored bytes were changed")
    return value


def run_record(ctx: Context, row: Sequence[Any]) -> RunRecord:
    """A run's record from its row (``_RUN_COLS``); the run's data key, if any, is noted
    first: its metadata is encrypted under it."""
    if len(row) > 7 and row[7] and ctx.codec.encrypts:
        ctx.codec.add_data_key(bytes(row[7]))
    return RunRecord(
        run_id=row[0],
        agent=row[1],
        status=row[2],
        labels={k: ctx.codec.open_label(v) for k, v in labels_of(row[3], row[0]).items()},
        metadata=mapping_of(ctx, row[4], f"run {row[0]!r} metadata"),
        created_at=row[5],
        updated_at=row[6],
    )


def checkpoint_record(ctx: Context, run_id: str, row: Sequence[Any]) -> CheckpointRecord:
    return CheckpointRecord(
        run_id=run_id,
        checkpoint_id=row[0],
        seq=row[1],
        branch=row[2],
        parent_id=row[3],
        kind=row[4],
        metadata=mapping_of(ctx, row[5], f"checkpoint {row[0]} of run {run_id!r}: its metadata"),
        hash=bytes(row[6]).hex(),
        created_at=row[7],
    )


def journal_entries(
    ctx: Context, rk: int, run_id: str, rows: Sequence[Sequence[Any]]
) -> Generator[Q | list[Q], Any, list[JournalEntry]]:
    """Journal rows as entries, values kept in blobs put back (one fetch for all)."""
    bodies = [ctx.codec.unwrap(bytes(row[4])) for row in rows]
    spliced = [ctx.codec.spliced(bytes(row[4])) for row in rows]
    wanted = [a for body, s in zip(bodies, spliced, strict=True) if s for a in _splice.refs(body)]
    plains = (yield from fetch_blobs(ctx, rk, wanted)) if wanted else {}
    return [
        JournalEntry(
            run_id=run_id,
            seq=row[0],
            branch=row[1],
            checkpoint_id=row[2],
            kind=row[3],
            data=_splice.load(ctx.codec, body, plains) if s else ctx.codec.loads(body),
            hash=bytes(row[5]).hex(),
            created_at=row[6],
        )
        for row, body, s in zip(rows, bodies, spliced, strict=True)
    ]


def branch_record(ctx: Context, run_id: str, row: Sequence[Any]) -> BranchRecord:
    name, head, base, created, status, error, owner, expires, epoch, _seal, updated, _mac, priority = row
    return BranchRecord(
        run_id=run_id,
        name=name,
        head=head,
        base=base,
        created_at=created,
        status=status,
        error=mapping_of(ctx, error, f"run {run_id!r} branch {name!r}: its error") if error is not None else None,
        lease_owner=owner,
        lease_expires_at=expires,
        epoch=int(epoch),
        updated_at=updated,
        priority=int(priority),
    )


def head_row_seal(
    ctx: Context, run_id: str, branch: str, head: str | None, head_hash: bytes | None
) -> tuple[bytes, bytes | None]:
    """The seal of a branch row pointing at ``head``, and its MAC if a seal key is set."""
    seal = head_seal(run_id, branch, head, head_hash)
    return seal, ctx.seal_key.mac(seal) if ctx.seal_key is not None else None


# -- building blocks -----------------------------------------------------------


def sealed_meta(ctx: Context, stored: bytes) -> bytes:
    """What a checkpoint's seal covers of its stored metadata (see ``Codec.sealable``)."""
    return ctx.codec.sealable(ctx.codec.unwrap(stored), encrypted=ctx.codec.keyed(stored))


def manifest_to_store(ctx: Context, plain: bytes) -> bytes:
    """A checkpoint's manifest as stored: plain msgpack, or an encrypted envelope with a keyring
    (a dict state's field names are user data)."""
    return ctx.codec.wrap(plain) if ctx.codec.encrypts else plain


def manifest_from_store(ctx: Context, stored: bytes) -> bytes:
    """The manifest's plain msgpack. A manifest is a msgpack map, which never starts with
    the envelope's magic byte 0xC7, so an encrypted one is told apart by its first byte."""
    return ctx.codec.unwrap(stored) if stored[:1] == b"\xc7" else stored


def run_key(ctx: Context, run_id: str) -> Generator[Q | list[Q], Any, int]:
    keyed = ctx.codec.encrypts
    row = yield (_subjects.run_key_query(ctx, run_id) if keyed else ctx.q("run_key", (run_id,)))
    if row is None:
        ctx.run_keys.pop(run_id, None)
        raise NotFoundError(f"run {run_id!r} not found")
    if keyed:
        _subjects.remember(ctx, run_id, row[1], row[2])
    ctx.run_keys[run_id] = int(row[0])
    return int(row[0])


def branch_row(ctx: Context, rk: int, run_id: str, name: str) -> Generator[Q | list[Q], Any, BranchRecord]:
    row = yield ctx.q("get_branch", (rk, name))
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no branch {name!r}")
    return branch_record(ctx, run_id, row)


def check_fence(run_id: str, branch: str, locked: Any, lease: Lease | None, *, writing: str) -> tuple[str | None, str]:
    """The branch's (head, status) from its locked row, after checking ``lease`` holds it.

    Raises:
        NotFoundError: no such branch.
        LeaseLostError: ``lease`` was taken over or released.
    """
    if locked is None:
        raise NotFoundError(f"run {run_id!r} has no branch {branch!r}")
    head, status, owner, epoch = locked
    if lease is not None and (owner != lease.owner or int(epoch) != lease.epoch):
        holder = f"now held by {owner!r} (epoch {epoch})" if owner is not None else f"released (epoch {epoch})"
        raise LeaseLostError(
            f"run {run_id!r} branch {branch!r}: the lease of {lease.owner!r} (epoch {lease.epoch}) was lost, "
            f"{holder}; {writing} was not written. This worker must stop: another one owns the branch"
        )
    return head, status


def fetch_blobs(ctx: Context, rk: int, addrs: Iterable[bytes]) -> Generator[Q | list[Q], Any, dict[bytes, Plain]]:
    """Plaintext of the given blobs, each checked against its address."""
    wanted = list(dict.fromkeys(addrs))
    found = ctx.blobs.get_many(rk, wanted)
    fetch = [a for a in wanted if a not in found] if found else wanted
    queries = []
    for i in range(0, len(fetch), _BATCH):
        part = fetch[i : i + _BATCH]
        if ctx.d.expands_in_lists:
            queries.append(ctx.q("blobs_by_addr", (rk, *part), "all", marks=ctx.marks(len(part))))
        else:
            queries.append(ctx.q("blobs_by_addr", (rk, part), "all"))
    results = (yield queries) if queries else []  # one batch: one round trip on PostgreSQL
    read: dict[bytes, Plain] = {}
    for rows in results:
        for addr, data in rows:
            addr, data = bytes(addr), bytes(data)
            try:
                plain = ctx.codec.unwrap_view(data)
            except PickleRefusedError:
                raise  # intact bytes; the reader lacks the opt-in
            except DecodeError as exc:
                raise IntegrityError(f"blob {addr.hex()} cannot be read, its stored bytes were changed: {exc}") from exc
            if not ctx.codec.addressed(plain, addr, data):
                raise IntegrityError(
                    f"blob {addr.hex()} does not match its address: stored bytes were changed"
                    + ctx.codec.address_hint(plain, addr)
                )
            read[addr] = plain
    ctx.blobs.put_many(rk, read)
    found.update(read)
    missing = [a for a in wanted if a not in found]
    if missing:
        raise IntegrityError(f"blob {missing[0].hex()} is referenced but missing ({len(missing)} missing)")
    return found


def _sealed_row(
    ctx: Context, rk: int, run_id: str, checkpoint_id: str
) -> Generator[Q | list[Q], Any, tuple[Any, bytes, Any, _manifests.Known | None]]:
    """A checkpoint's row checked against its seal, with its whole manifest's bytes and
    its metadata as stored: nothing of it is decoded before the seal holds (but a
    manifest stored as a change, which is decoded to rebuild the whole one the seal
    covers; that one comes back decoded too)."""
    row, journal = yield [
        ctx.q("get_sealed", (rk, checkpoint_id)),
        ctx.q("journal_hashes", (rk, checkpoint_id), "all"),
    ]
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no checkpoint {checkpoint_id!r}")
    manifest_bytes, meta, stored, parent, branch, kind, created, parent_hash, _seq = row
    if not bytes(manifest_bytes):  # pruned by retention: its content is gone, its hash stays in the chain
        return row, b"", meta, None
    known: _manifests.Known | None = None
    journal_hashes = [bytes(h) for (h,) in journal]
    try:
        if parent is not None and parent_hash is None:
            raise IntegrityError(f"checkpoint {checkpoint_id}: its parent {parent!r} is missing")
        meta_plain = sealed_meta(ctx, bytes(meta))

        def seal(manifest: bytes) -> bytes:
            return checkpoint_hash(
                bytes(parent_hash or b""), checkpoint_id, branch, kind, manifest, meta_plain, created, journal_hashes
            )

        manifest_plain = as_stored = manifest_from_store(ctx, bytes(manifest_bytes))
        if _manifests.is_delta(as_stored):
            known, remembered = yield from _whole(ctx, rk, checkpoint_id, parent, as_stored, memo=True)
            manifest_plain = _whole_bytes(ctx, known, checkpoint_id)
            if remembered and seal(manifest_plain) != bytes(stored):
                # The parent's remembered manifest may be stale (a commit of this store
                # that did not land): rebuild it from the database before judging the row.
                known, _ = yield from _whole(ctx, rk, checkpoint_id, parent, as_stored, memo=False)
                manifest_plain = _whole_bytes(ctx, known, checkpoint_id)
        expect = seal(manifest_plain)
    except DecodeError as exc:
        raise IntegrityError(f"checkpoint {checkpoint_id} of run {run_id!r} cannot be read: {exc}") from exc
    if expect != bytes(stored):
        raise IntegrityError(
            f"checkpoint {checkpoint_id} of run {run_id!r} does not match its seal: its manifest, "
            "metadata or journal was changed; run verify() to see what" + ctx.codec.mac_hint()
        )
    if known is not None:
        ctx.manifests.put(rk, checkpoint_id, known)
    return row, manifest_plain, meta, known


def _whole_bytes(ctx: Context, known: _manifests.Known, checkpoint_id: str) -> bytes:
    """The canonical bytes of a rebuilt whole manifest (what the seal covers)."""
    try:
        return ctx.codec.dumps(known.manifest, "manifest")[0]
    except (ValueError, TypeError):
        raise IntegrityError(f"checkpoint {checkpoint_id}: its rebuilt manifest cannot be encoded") from None


def _whole(
    ctx: Context, rk: int, checkpoint_id: str, parent: str | None, plain: bytes, *, memo: bool
) -> Op[tuple[_manifests.Known, bool]]:
    """The whole manifest of a checkpoint whose stored one is a change against its
    parent's, and whether the parent's came from the memo. From the memo: the change
    applied to it; else the chain read from the checkpoint's own row down, in one
    statement (so a row that retention made whole meanwhile is read as it is now)."""
    depth, changed, dropped = _manifests.parse(plain, checkpoint_id)
    if parent is None:
        raise IntegrityError(f"checkpoint {checkpoint_id}: its manifest is a change, but it has no parent")
    base = ctx.manifests.get(rk, parent) if memo else None
    if base is not None:
        try:
            return _manifests.Known(_manifests.apply(base.manifest, changed, dropped, checkpoint_id), depth), True
        except IntegrityError:
            pass  # the change does not fit what was remembered: read the chain itself
    rows = yield ctx.q("manifest_chain", (rk, checkpoint_id, rk, depth + 1), "all")
    rebuilt: dict[str, _manifests.Known] = {}
    known = _manifests.resolve_rows(lambda data: manifest_from_store(ctx, data), checkpoint_id, rows, rebuilt)
    for cid, whole in rebuilt.items():
        if cid != checkpoint_id:  # its own goes in once its seal holds
            ctx.manifests.put(rk, cid, whole)
    return known, False


def sealed_checkpoint(
    ctx: Context, rk: int, run_id: str, checkpoint_id: str
) -> Generator[Q | list[Q], Any, CheckpointRecord]:
    """A checkpoint's record, its seal checked before its metadata is decoded."""
    row, _, meta, _ = yield from _sealed_row(ctx, rk, run_id, checkpoint_id)
    _, _, stored, parent, branch, kind, created, _, seq = row
    return checkpoint_record(ctx, run_id, (checkpoint_id, seq, branch, parent, kind, meta, stored, created))


def sealed_manifest(
    ctx: Context, rk: int, run_id: str, checkpoint_id: str
) -> Generator[Q | list[Q], Any, tuple[dict[str, Any], str, bytes, int]]:
    """A checkpoint's whole manifest, checked against its seal; with its branch, its hash
    and its depth as stored (see _manifests)."""
    row, manifest_bytes, _, known = yield from _sealed_row(ctx, rk, run_id, checkpoint_id)
    if not manifest_bytes:
        raise NotFoundError(
            f"checkpoint {checkpoint_id} of run {run_id!r} was pruned by a retention policy: "
            "its history entry remains, its state does not"
        )
    if known is not None:
        return dict(known.manifest), row[4], bytes(row[2]), known.depth
    try:
        manifest = ctx.codec.loads(manifest_bytes)
    except DecodeError as exc:
        raise IntegrityError(f"checkpoint {checkpoint_id} of run {run_id!r} cannot be read: {exc}") from exc
    if not isinstance(manifest, dict):
        raise IntegrityError(f"checkpoint {checkpoint_id} of run {run_id!r}: its manifest is not a map")
    ctx.manifests.put(rk, checkpoint_id, _manifests.Known(manifest, 0))
    return manifest, row[4], bytes(row[2]), 0


def load_fields(
    ctx: Context, rk: int, run_id: str, checkpoint_id: str
) -> Generator[Q | list[Q], Any, tuple[dict[str, Any], _state.StateCache, str]]:
    """The state of a checkpoint, the writer cache that matches it, and its branch."""
    manifest, branch, sealed, depth = yield from sealed_manifest(ctx, rk, run_id, checkpoint_id)
    try:
        lists: dict[str, list[tuple[bytes, int, int]]] = {
            name: _state.manifest_roots(entry) for name, entry in manifest.items() if entry[0] in ("l", "m")
        }
        trees: dict[str, _tree.Ref] = {
            name: _tree.parse_ref(*entry[1:6]) for name, entry in manifest.items() if entry[0] == "t"
        }
    except (TypeError, ValueError, IndexError):
        raise IntegrityError(f"checkpoint {checkpoint_id} of run {run_id!r} has a malformed manifest") from None
    # Fetch level by level: values, list nodes and tree nodes together, one batch a level.
    plains: dict[bytes, Plain] = {}
    values = [bytes(entry[1]) for entry in manifest.values() if entry[0] == "v"]
    frontier = _tree.pending(trees.values())
    present: list[bytes] = []
    while True:
        need = [a for a in values if a not in plains]
        need += [a for roots in lists.values() for a, _, _ in roots if a not in plains]
        if frontier:
            found, frontier = _tree.walk(frontier, plains)
            present += found
            need += [a for a, _, _ in frontier]
        if not need:
            break
        plains.update((yield from fetch_blobs(ctx, rk, need)))
        for name, roots in lists.items():
            if any(h > 0 for _, _, h in roots):
                expanded: list[tuple[bytes, int, int]] = []
                for a, c, h in roots:
                    if h == 0:
                        expanded.append((a, c, h))
                    else:
                        expanded.extend((ca, cc, h - 1) for ca, cc in _state.node_children(plains[a]))
                lists[name] = expanded
    state: dict[str, Any] = {}
    fields: dict[str, _state.FieldCache] = {}
    for name, entry in manifest.items():
        if entry[0] == "v":
            addr = bytes(entry[1])
            state[name] = ctx.codec.loads(plains[addr])
            fields[name] = _state.ValueCache(addr, None, plains[addr], ctx.codec)
        elif entry[0] == "t":
            state[name] = _tree.build(trees[name], plains, ctx.codec)
        elif entry[0] == "m":
            leaves = lists[name]
            where = f"checkpoint {checkpoint_id}: map {name!r}"
            decoded = decode_leaves(ctx, [plains[a] for a, _, _ in leaves], where)
            state[name] = _state.map_of_log(decoded, [c for _, c, _ in leaves], entry[1], where)
            fields[name] = _state.MapCache(
                [(a, c) for a, c, _ in leaves],
                _state.manifest_roots(entry),
                None,
                [plains[a] for a, _, _ in leaves],
                ctx.codec,
                changes=sum(c for _, c, _ in leaves),
            )
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
                [(a, c) for a, c, _ in leaves], _state.manifest_roots(entry), None, joined, ctx.codec, decoded=True
            )
    cache = _state.StateCache(checkpoint_id, fields, sealed, frozenset(present), _manifests.Known(manifest, depth))
    return state, cache, branch


def decode_leaves(ctx: Context, leaves: Sequence[Plain], where: str) -> list[Any]:
    """Leaves decoded in one call: a leaf is one msgpack item, so the leaves joined under
    an array header are one array."""
    try:
        out = ctx.codec.loads(_state.array_header(len(leaves)) + b"".join(leaves))
    except DecodeError:  # a leaf that is not one whole item: find it, to say which
        out = [ctx.codec.loads(plain) for plain in leaves]
    if type(out) is not list or len(out) != len(leaves):
        raise IntegrityError(f"{where} has a leaf that is not one value")
    return out


def journal_rows(
    ctx: Context,
    rk: int,
    run_id: str,
    branch: str,
    entries: Sequence[tuple[str, Any]],
    checkpoint_id: str | None,
    now: float,
    first: int,
) -> tuple[JournalRows, list[tuple[int, bytes, bytes, str, Any]]]:
    """Journal rows numbered from ``first``, and (seq, hash, plain, kind, data) of each.

    The rows' large values go to blobs (:mod:`clew.store._splice`): insert
    ``rows.blobs`` with the rows, in the same transaction.
    """
    rows = JournalRows()
    out = []
    for i, (kind, data) in enumerate(entries):
        plain, pickled = ctx.codec.dumps(data, f"journal[{kind}]")
        seq = first + i
        h = journal_hash(seq, branch, kind, ctx.codec.sealable(plain, encrypted=ctx.codec.encrypts), now, run_id)
        stored, blobs = _splice.split(ctx.codec, data, plain, pickled)
        rows.blobs.extend((rk, a, d) for a, d in blobs.items())
        rows.append((rk, seq, branch, checkpoint_id, kind, stored, h, now))
        out.append((seq, h, plain, kind, data))
    return rows, out


class JournalRows(list[tuple[Any, ...]]):
    """Journal rows to insert, and the value blobs ``(rk, addr, data)`` they refer to."""

    def __init__(self) -> None:
        super().__init__()
        self.blobs: list[tuple[int, bytes, bytes | Framed]] = []


def insert_blobs(ctx: Context, rows: Sequence[tuple[int, bytes, bytes | Framed]]) -> list[Q]:
    """The writes of blob rows ``(rk, addr, envelope)``: small ones in one batch, and a big
    one (:class:`~clew.codec._envelope.Framed`) alone, its two parts bound apart so that
    no whole copy of it is made here (SQLite writes it into the row piece by piece)."""
    small = [row for row in rows if not isinstance(row[2], Framed)]
    out = [ctx.q("insert_blob", small, "many")] if small else []
    for rk, addr, data in rows:
        if isinstance(data, Framed):
            out.append(ctx.q("insert_framed_blob", (rk, addr, data.head, data.body), "blob"))
    return out


def insert_journal(ctx: Context, rows: JournalRows) -> list[Q]:
    """The writes of :func:`journal_rows`' rows: their value blobs first, then the rows."""
    return [*insert_blobs(ctx, rows.blobs), ctx.q("insert_journal", rows, "many")]


def note_pending(ctx: Context, run_id: str, branch: str, hashes: list[bytes]) -> None:
    """Entries now pending on a branch: a fast commit on it must find exactly these.
    (Should this transaction fail, the next fast commit finds other pending entries than
    it expects, and is undone; see ``cas_head_pending``.)"""
    tip = ctx.tips.get((run_id, branch))
    if tip is not None:
        tip.pending.extend(hashes)


def append_journal_rows(
    ctx: Context,
    rk: int,
    run_id: str,
    branch: str,
    entries: Sequence[tuple[str, Any]],
    checkpoint_id: str | None,
    now: float,
    lease: Lease | None = None,
) -> Generator[Q | list[Q], Any, list[tuple[int, bytes, bytes, str, Any]]]:
    # The run row first (it orders writers to one run), then the branch row, locked.
    row, locked = yield [
        ctx.q("bump_journal_seq", (len(entries), rk, run_id)),
        ctx.q("lock_branch", (rk, branch)),
    ]
    if row is None:
        ctx.run_keys.pop(run_id, None)
        raise NotFoundError(f"run {run_id!r} not found")
    _subjects.check_same_run(ctx, run_id, row[1])
    check_fence(run_id, branch, locked, lease, writing="the journal entry")
    ctx.journal_seqs[run_id] = int(row[0])
    rows, out = journal_rows(ctx, rk, run_id, branch, entries, checkpoint_id, now, int(row[0]) - len(entries) + 1)
    if checkpoint_id is None:
        note_pending(ctx, run_id, branch, [h for _, h, _, _, _ in out])
    yield insert_journal(ctx, rows)
    return out

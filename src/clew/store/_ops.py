"""Every store operation, written once as a generator of SQL queries (sans I/O).

An operation yields :class:`Q` objects and receives each query's result; the sync
and async runners of each backend execute them inside one transaction. This is the
single source of truth behind both :class:`~clew.store.Store` and
:class:`~clew.store.AsyncStore`: the runners hold no logic of their own.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import ormsgpack

from clew.codec import Codec
from clew.errors import (
    ConfigError,
    ConflictError,
    DecodeError,
    IntegrityError,
    LeaseError,
    NotFoundError,
    PickleRefusedError,
    RunLockedError,
)
from clew.store import _state
from clew.store._records import (
    BranchRecord,
    CheckpointRecord,
    DeleteReport,
    JournalEntry,
    Page,
    Problem,
    RunRecord,
    VerifyReport,
)
from clew.store._sql import Dialect

Mode = Literal["one", "all", "rowcount", "many", "exec"]
"""What a query returns: a row, all rows, the row count, or nothing (``many`` runs the
statement once per parameter tuple; ``exec`` needs no answer, so a pipelining runner
may send it with the next queries instead of waiting)."""
HASH_SIZE = 32
_BATCH = 500


@dataclass(frozen=True, slots=True)
class Q:
    """One query for a runner to execute."""

    sql: str
    params: Sequence[Any]
    mode: Mode


T = TypeVar("T")
Op = Generator[Q | list[Q], Any, T]
"""An operation: yields queries, receives their results, returns a ``T``."""


class Context:
    """What operations share: dialect, codec and the writer's cache."""

    def __init__(self, dialect: Dialect, codec: Codec, *, cache_size: int = 256) -> None:
        self.d = dialect
        self.codec = codec
        self.encoder = _state.StateEncoder(codec)
        self._cache: dict[tuple[str, str], _state.StateCache] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.fault: str | None = None  # tests: raise before running the named query
        # run id -> internal key; only trusted by commit, whose first write re-checks it
        self.run_keys: dict[str, int] = {}
        self.known_branches: set[tuple[str, str]] = set()

    def q(self, name: str, params: Sequence[Any], mode: Mode = "one", **fmt: str) -> Q:
        if self.fault == name:
            raise RuntimeError(f"injected fault before {name}")
        text = self.d.sql[name]
        return Q(text.format(**fmt) if fmt else text, params, mode)

    def marks(self, n: int) -> str:
        return ", ".join(["?" if self.d.name == "sqlite" else "%s"] * n)

    def cached(self, run_id: str, branch: str, checkpoint_id: str) -> _state.StateCache | None:
        with self._lock:
            entry = self._cache.get((run_id, branch))
        return entry if entry is not None and entry.checkpoint_id == checkpoint_id else None

    def remember(self, run_id: str, branch: str, entry: _state.StateCache) -> None:
        with self._lock:
            self._cache.pop((run_id, branch), None)
            self._cache[(run_id, branch)] = entry
            while len(self._cache) > self._cache_size:
                self._cache.pop(next(iter(self._cache)))

    def forget(self, run_id: str) -> None:
        with self._lock:
            for key in [k for k in self._cache if k[0] == run_id]:
                del self._cache[key]


def new_id() -> str:
    """A time-ordered unique id (UUID version 7 layout)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(uuid.uuid4().bytes[6:], "big") & ((1 << 74) - 1)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def _pack(value: Any) -> bytes:
    return ormsgpack.packb(value, option=ormsgpack.OPT_SORT_KEYS)


def checkpoint_hash(
    parent_hash: bytes,
    checkpoint_id: str,
    branch: str,
    kind: str,
    manifest: bytes,
    meta: bytes,
    created_at: float,
    journal_hashes: Sequence[bytes],
) -> bytes:
    """The hash sealing a checkpoint: its parent's hash, content and journal."""
    body = _pack(
        ["clew/ckpt/1", parent_hash, checkpoint_id, branch, kind, manifest, meta, created_at, list(journal_hashes)]
    )
    return hashlib.blake2b(body, digest_size=HASH_SIZE).digest()


def journal_hash(seq: int, branch: str, kind: str, plain: bytes, created_at: float) -> bytes:
    body = _pack(["clew/journal/1", seq, branch, kind, plain, created_at])
    return hashlib.blake2b(body, digest_size=HASH_SIZE).digest()


# -- row mapping ---------------------------------------------------------------


def _labels(raw: Any) -> dict[str, str]:
    return dict(json.loads(raw) if isinstance(raw, str | bytes) else raw)


def _run(ctx: Context, row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        agent=row[1],
        status=row[2],
        labels=_labels(row[3]),
        metadata=ctx.codec.decode(bytes(row[4])),
        created_at=row[5],
        updated_at=row[6],
        lease_owner=row[7],
        lease_expires_at=row[8],
    )


def _checkpoint(ctx: Context, run_id: str, row: Sequence[Any]) -> CheckpointRecord:
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


def _journal(ctx: Context, run_id: str, row: Sequence[Any]) -> JournalEntry:
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


def _branch(run_id: str, row: Sequence[Any]) -> BranchRecord:
    return BranchRecord(run_id=run_id, name=row[0], head=row[1], base=row[2], created_at=row[3])


# -- building blocks -----------------------------------------------------------


def run_key(ctx: Context, run_id: str) -> Generator[Q | list[Q], Any, int]:
    row = yield ctx.q("run_key", (run_id,))
    if row is None:
        ctx.run_keys.pop(run_id, None)
        raise NotFoundError(f"run {run_id!r} not found")
    ctx.run_keys[run_id] = int(row[0])
    return int(row[0])


def _get_branch(ctx: Context, rk: int, run_id: str, name: str) -> Generator[Q | list[Q], Any, BranchRecord]:
    row = yield ctx.q("get_branch", (rk, name))
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no branch {name!r}")
    return _branch(run_id, row)


def _fetch_blobs(ctx: Context, rk: int, addrs: Iterable[bytes]) -> Generator[Q | list[Q], Any, dict[bytes, bytes]]:
    """Plaintext of the given blobs, each checked against its address."""
    wanted = list(dict.fromkeys(addrs))
    found: dict[bytes, bytes] = {}
    for i in range(0, len(wanted), _BATCH):
        part = wanted[i : i + _BATCH]
        if ctx.d.expands_in_lists:
            rows = yield ctx.q("blobs_by_addr", (rk, *part), "all", marks=ctx.marks(len(part)))
        else:
            rows = yield ctx.q("blobs_by_addr", (rk, part), "all")
        for addr, data in rows:
            addr = bytes(addr)
            try:
                plain = ctx.codec.unwrap(bytes(data))
            except PickleRefusedError:
                raise  # intact bytes; the reader lacks the opt-in
            except DecodeError as exc:
                raise IntegrityError(f"blob {addr.hex()} cannot be read, its stored bytes were changed: {exc}") from exc
            if ctx.codec.address(plain) != addr:
                raise IntegrityError(f"blob {addr.hex()} does not match its address: stored bytes were changed")
            found[addr] = plain
    missing = [a for a in wanted if a not in found]
    if missing:
        raise IntegrityError(f"blob {missing[0].hex()} is referenced but missing ({len(missing)} missing)")
    return found


def _manifest(ctx: Context, rk: int, run_id: str, checkpoint_id: str) -> Generator[Q | list[Q], Any, dict[str, Any]]:
    """A checkpoint's manifest, checked against the checkpoint's seal (its hash)."""
    row, journal = yield [
        ctx.q("get_sealed", (rk, checkpoint_id)),
        ctx.q("journal_hashes", (rk, checkpoint_id), "all"),
    ]
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no checkpoint {checkpoint_id!r}")
    manifest_bytes, meta, stored, parent, branch, kind, created, parent_hash = row
    try:
        if parent is not None and parent_hash is None:
            raise IntegrityError(f"checkpoint {checkpoint_id}: its parent {parent!r} is missing")
        expect = checkpoint_hash(
            bytes(parent_hash or b""),
            checkpoint_id,
            branch,
            kind,
            bytes(manifest_bytes),
            ctx.codec.unwrap(bytes(meta)),
            created,
            [bytes(h) for (h,) in journal],
        )
        if expect != bytes(stored):
            raise IntegrityError(
                f"checkpoint {checkpoint_id} of run {run_id!r} does not match its seal: its manifest, "
                "metadata or journal was changed; run verify() to see what"
            )
        manifest = ctx.codec.loads(bytes(manifest_bytes))
    except DecodeError as exc:
        raise IntegrityError(f"checkpoint {checkpoint_id} of run {run_id!r} cannot be read: {exc}") from exc
    return dict(manifest)


def _load(
    ctx: Context, rk: int, run_id: str, checkpoint_id: str
) -> Generator[Q | list[Q], Any, tuple[dict[str, Any], _state.StateCache]]:
    """The state of a checkpoint, and the writer cache that matches it."""
    manifest = yield from _manifest(ctx, rk, run_id, checkpoint_id)
    # Expand list index nodes level by level down to the leaves.
    lists: dict[str, list[tuple[bytes, int, int]]] = {
        name: _state.manifest_roots(entry) for name, entry in manifest.items() if entry[0] == "l"
    }
    while True:
        nodes = [a for roots in lists.values() for a, _, h in roots if h > 0]
        if not nodes:
            break
        plains = yield from _fetch_blobs(ctx, rk, nodes)
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
    plains = yield from _fetch_blobs(ctx, rk, [*value_addrs, *leaf_addrs])
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
    return state, _state.StateCache(checkpoint_id, fields)


def _journal_rows(
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
        h = journal_hash(seq, branch, kind, plain, now)
        rows.append((rk, seq, branch, checkpoint_id, kind, ctx.codec.wrap(plain, pickled=pickled), h, now))
        out.append((seq, h, plain, kind, data))
    return rows, out


def _append_journal_rows(
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
    rows, out = _journal_rows(ctx, rk, branch, entries, checkpoint_id, now, int(row[0]) - len(entries) + 1)
    yield ctx.q("insert_journal", rows, "many")
    return out


# -- the operations ------------------------------------------------------------


def create_run(
    ctx: Context,
    run_id: str | None,
    *,
    agent: str,
    labels: Mapping[str, str] | None,
    metadata: Mapping[str, Any] | None,
    status: str,
    lease_owner: str | None,
    lease_ttl: float | None,
) -> Op[RunRecord]:
    if lease_owner is not None and not lease_ttl:
        raise ConfigError("create_run: a lease_owner needs a lease_ttl (seconds), or the lease could never expire")
    run_id = run_id or new_id()
    now = time.time()
    existing = yield ctx.q("run_key", (run_id,))
    if existing is not None:
        raise ConflictError(f"run {run_id!r} already exists")
    expires = now + lease_ttl if lease_owner and lease_ttl else None
    row = yield ctx.q(
        "insert_run",
        (
            run_id,
            agent,
            status,
            json.dumps(dict(labels or {}), sort_keys=True),
            ctx.codec.encode(dict(metadata or {}), "metadata"),
            now,
            now,
            lease_owner,
            expires,
        ),
    )
    yield ctx.q("insert_branch", (row[0], "main", None, None, now), "rowcount")
    return RunRecord(run_id, agent, status, dict(labels or {}), dict(metadata or {}), now, now, lease_owner, expires)


def get_run(ctx: Context, run_id: str) -> Op[RunRecord]:
    row = yield ctx.q("get_run", (run_id,))
    if row is None:
        raise NotFoundError(f"run {run_id!r} not found")
    return _run(ctx, row)


def update_run(ctx: Context, run_id: str, *, status: str | None, metadata: Mapping[str, Any] | None) -> Op[RunRecord]:
    rk = yield from run_key(ctx, run_id)
    meta = ctx.codec.encode(dict(metadata), "metadata") if metadata is not None else None
    row = yield ctx.q("update_run", (status, meta, time.time(), rk))
    return _run(ctx, row)


def list_runs(
    ctx: Context,
    *,
    status: str | None,
    agent: str | None,
    labels: Mapping[str, str] | None,
    limit: int,
    cursor: str | None,
) -> Op[Page[RunRecord]]:
    ph = "?" if ctx.d.name == "sqlite" else "%s"
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        where.append(f"status = {ph}")
        params.append(status)
    if agent is not None:
        where.append(f"agent = {ph}")
        params.append(agent)
    for key, value in (labels or {}).items():
        where.append(ctx.d.sql["label_clause"])
        params.extend([ctx.d.label_path(key), value])
    if cursor is not None:
        where.append(f"rk < {ph}")
        params.append(int(cursor))
    sql = "SELECT rk, run_id, agent, status, labels, meta, created_at, updated_at, lease_owner, lease_expires FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY rk DESC LIMIT {ph}"
    params.append(limit + 1)
    rows = yield Q(sql, params, "all")
    items = [_run(ctx, r[1:]) for r in rows[:limit]]
    return Page(items, str(rows[limit - 1][0]) if len(rows) > limit else None)


def commit(
    ctx: Context,
    run_id: str,
    *,
    branch: str,
    parent: str | None,
    state: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
    kind: str,
    status: str | None,
    journal: Sequence[tuple[str, Any]],
    checkpoint_id: str | None,
) -> Op[CheckpointRecord]:
    checkpoint_id = checkpoint_id or new_id()
    previous = ctx.cached(run_id, branch, parent) if parent is not None else None
    # Encode before the first query when we can: SQLite takes its write lock there.
    encoded = ctx.encoder.encode(state, previous) if previous or parent is None else None
    rk = ctx.run_keys.get(run_id)
    if rk is None or encoded is None:
        rk = yield from run_key(ctx, run_id)
    if encoded is None:
        try:
            _, previous = yield from _load(ctx, rk, run_id, parent)  # type: ignore[arg-type]  # parent set here
        except NotFoundError:
            previous = None  # the head check below reports the conflict
        encoded = ctx.encoder.encode(state, previous)
    manifest = ctx.codec.dumps(encoded.manifest, "manifest")[0]
    meta_plain = ctx.codec.dumps(dict(metadata or {}), "metadata")[0]
    now = time.time()
    cached_hash = previous.hash if previous is not None and previous.checkpoint_id == parent else b""
    # One round trip: lock the run's row (commits to one run are serialized, other
    # runs never wait), move the head by compare-and-set, read what the hash needs.
    first = [
        ctx.q("bump_ckpt_seq", (status, now, rk, run_id)),
        ctx.q("cas_head", (checkpoint_id, rk, branch, parent), "rowcount"),
        ctx.q("pending_journal", (rk, branch), "all"),
    ]
    if parent is not None and not cached_hash:
        first.append(ctx.q("checkpoint_hash", (rk, parent)))
    if journal:
        first.append(ctx.q("bump_journal_seq", (len(journal), rk, run_id)))
    results = yield first
    row, moved, pending = results[0], results[1], results[2]
    if row is None:
        ctx.run_keys.pop(run_id, None)
        raise NotFoundError(f"run {run_id!r} not found")
    seq = int(row[0])
    if moved != 1:
        b = yield from _get_branch(ctx, rk, run_id, branch)
        raise ConflictError(
            f"run {run_id!r} branch {branch!r}: head is {b.head!r}, expected {parent!r}; "
            "another writer advanced it: reload the head and retry"
        )
    parent_hash = cached_hash
    if parent is not None and not cached_hash:
        prow = results[3]
        if prow is None:
            raise NotFoundError(f"run {run_id!r} has no checkpoint {parent!r}")
        parent_hash = bytes(prow[0])
    hashes = [bytes(h) for _, h in pending]
    second: list[Q] = []
    if journal:
        last = int(results[-1][0])
        rows, own = _journal_rows(ctx, rk, branch, journal, checkpoint_id, now, last - len(journal) + 1)
        hashes.extend(h for _, h, _, _, _ in own)
        second.append(ctx.q("insert_journal", rows, "many"))
    if encoded.blobs:
        second.append(ctx.q("insert_blob", [(rk, a, d) for a, d in encoded.blobs.items()], "many"))
    h = checkpoint_hash(parent_hash, checkpoint_id, branch, kind, manifest, meta_plain, now, hashes)
    meta_blob = ctx.codec.wrap(meta_plain)
    second.append(
        ctx.q("insert_checkpoint", (rk, checkpoint_id, seq, branch, parent, kind, manifest, meta_blob, h, now), "exec")
    )
    if pending:
        second.append(ctx.q("seal_journal", (checkpoint_id, rk, branch), "exec"))
    yield second
    ctx.remember(run_id, branch, _state.StateCache(checkpoint_id, encoded.cache, h))
    return CheckpointRecord(run_id, checkpoint_id, seq, branch, parent, kind, dict(metadata or {}), h.hex(), now)


def append_journal(
    ctx: Context, run_id: str, *, branch: str, entries: Sequence[tuple[str, Any]]
) -> Op[list[JournalEntry]]:
    # A cached run key is re-checked by the first write; a branch is checked only once.
    rk = ctx.run_keys.get(run_id)
    if rk is None or (run_id, branch) not in ctx.known_branches:
        rk = yield from run_key(ctx, run_id)
        yield from _get_branch(ctx, rk, run_id, branch)
        ctx.known_branches.add((run_id, branch))
    now = time.time()
    rows = yield from _append_journal_rows(ctx, rk, run_id, branch, entries, None, now)
    return [JournalEntry(run_id, seq, branch, kind, data, now, None, h.hex()) for seq, h, _, kind, data in rows]


def list_journal(ctx: Context, run_id: str, *, checkpoint_id: str | None, branch: str | None) -> Op[list[JournalEntry]]:
    rk = yield from run_key(ctx, run_id)
    if checkpoint_id is not None:
        rows = yield ctx.q("journal_of_checkpoint", (rk, checkpoint_id), "all")
    elif branch is not None:
        rows = yield ctx.q("journal_pending_rows", (rk, branch), "all")
    else:
        rows = yield ctx.q("all_journal", (rk,), "all")
    return [_journal(ctx, run_id, r) for r in rows]


def get_checkpoint(ctx: Context, run_id: str, checkpoint_id: str) -> Op[CheckpointRecord]:
    rk = yield from run_key(ctx, run_id)
    row = yield ctx.q("get_checkpoint", (rk, checkpoint_id))
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no checkpoint {checkpoint_id!r}")
    return _checkpoint(ctx, run_id, row)


def find_checkpoint(ctx: Context, checkpoint_id: str) -> Op[CheckpointRecord]:
    rows = yield ctx.q("find_checkpoint", (checkpoint_id,), "all")
    if not rows:
        raise NotFoundError(f"checkpoint {checkpoint_id!r} not found")
    if len(rows) > 1:
        raise NotFoundError(
            f"checkpoint id {checkpoint_id!r} exists in {len(rows)} runs ({', '.join(r[0] for r in rows[:3])}); "
            "name the run too"
        )
    return (yield from get_checkpoint(ctx, rows[0][0], checkpoint_id))


def load_state(ctx: Context, run_id: str, checkpoint_id: str) -> Op[dict[str, Any]]:
    rk = yield from run_key(ctx, run_id)
    state, cache = yield from _load(ctx, rk, run_id, checkpoint_id)
    row = yield ctx.q("get_checkpoint", (rk, checkpoint_id))
    ctx.remember(run_id, row[2], cache)
    return state


def list_checkpoints(
    ctx: Context, run_id: str, *, branch: str, limit: int, cursor: str | None
) -> Op[Page[CheckpointRecord]]:
    rk = yield from run_key(ctx, run_id)
    start = cursor
    if start is None:
        b = yield from _get_branch(ctx, rk, run_id, branch)
        start = b.head
    if start is None:
        return Page([], None)
    rows = yield ctx.q("history", (start, rk, limit, rk), "all")
    items = [_checkpoint(ctx, run_id, r) for r in rows[:limit]]
    nxt = items[-1].parent_id if len(rows) > limit and items else None
    return Page(items, nxt)


def get_branch(ctx: Context, run_id: str, name: str) -> Op[BranchRecord]:
    rk = yield from run_key(ctx, run_id)
    return (yield from _get_branch(ctx, rk, run_id, name))


def list_branches(ctx: Context, run_id: str) -> Op[list[BranchRecord]]:
    rk = yield from run_key(ctx, run_id)
    rows = yield ctx.q("list_branches", (rk,), "all")
    return [_branch(run_id, r) for r in rows]


def fork(ctx: Context, run_id: str, *, checkpoint_id: str, branch: str) -> Op[BranchRecord]:
    rk = yield from run_key(ctx, run_id)
    row = yield ctx.q("get_checkpoint", (rk, checkpoint_id))
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no checkpoint {checkpoint_id!r}")
    existing = yield ctx.q("get_branch", (rk, branch))
    if existing is not None:
        raise ConflictError(f"run {run_id!r} already has a branch {branch!r}; choose another name")
    now = time.time()
    yield ctx.q("insert_branch", (rk, branch, checkpoint_id, checkpoint_id, now), "rowcount")
    return BranchRecord(run_id, branch, checkpoint_id, checkpoint_id, now)


def delete_run(ctx: Context, run_id: str) -> Op[DeleteReport]:
    rk = yield from run_key(ctx, run_id)
    counts = []
    for name in ("delete_journal", "delete_checkpoints", "delete_blobs", "delete_branches"):
        counts.append((yield ctx.q(name, (rk,), "rowcount")))
    yield ctx.q("delete_run", (rk,), "rowcount")
    ctx.forget(run_id)
    ctx.run_keys.pop(run_id, None)
    ctx.known_branches = {k for k in ctx.known_branches if k[0] != run_id}
    return DeleteReport(run_id, checkpoints=counts[1], blobs=counts[2], journal_entries=counts[0], branches=counts[3])


def acquire_lease(ctx: Context, run_id: str, *, owner: str, ttl: float) -> Op[float]:
    rk = yield from run_key(ctx, run_id)
    now = time.time()
    n = yield ctx.q("acquire_lease", (owner, now + ttl, rk, owner, now), "rowcount")
    if n != 1:
        holder = yield ctx.q("lease_of", (rk,))
        raise RunLockedError(
            f"run {run_id!r} is leased by {holder[0]!r} for {max(0.0, holder[1] - now):.1f}s more; "
            "wait for it to finish or for the lease to expire (then recover())"
        )
    return now + ttl


def renew_lease(ctx: Context, run_id: str, *, owner: str, ttl: float) -> Op[float]:
    rk = yield from run_key(ctx, run_id)
    expires = time.time() + ttl
    n = yield ctx.q("renew_lease", (expires, rk, owner), "rowcount")
    if n != 1:
        raise LeaseError(f"run {run_id!r}: lease of {owner!r} was lost (expired and taken over)")
    return expires


def release_lease(ctx: Context, run_id: str, *, owner: str) -> Op[bool]:
    rk = yield from run_key(ctx, run_id)
    n: int = yield ctx.q("release_lease", (rk, owner), "rowcount")
    return n == 1


def claim_expired(ctx: Context, *, owner: str, ttl: float, limit: int, statuses: Sequence[str]) -> Op[list[RunRecord]]:
    now = time.time()
    rows = yield ctx.q(
        "claim_expired", (owner, now + ttl, *statuses, now, limit), "all", marks=ctx.marks(len(statuses))
    )
    return [_run(ctx, r) for r in rows]


def verify(ctx: Context, run_id: str) -> Op[VerifyReport]:
    rk = yield from run_key(ctx, run_id)
    problems: list[Problem] = []
    blob_rows = yield ctx.q("all_blobs", (rk,), "all")
    plains: dict[bytes, bytes] = {}
    for addr, data in blob_rows:
        addr = bytes(addr)
        try:
            plains[addr] = ctx.codec.unwrap(bytes(data))
            ok = ctx.codec.address(plains[addr]) == addr
        except Exception as exc:  # undecodable bytes are as bad as wrong ones
            problems.append(Problem("blob", addr.hex(), f"cannot be read: {exc}"))
            continue
        if not ok:
            problems.append(Problem("blob", addr.hex(), "content does not match its address"))
    journal_rows = yield ctx.q("all_journal", (rk,), "all")
    by_ckpt: dict[str | None, list[bytes]] = {}
    for seq, branch, ckpt, kind, data, h, created in journal_rows:
        try:
            good = journal_hash(seq, branch, kind, ctx.codec.unwrap(bytes(data)), created) == bytes(h)
        except Exception as exc:
            problems.append(Problem("journal", str(seq), f"cannot be read: {exc}"))
            good = True
        if not good:
            problems.append(Problem("journal", str(seq), "content does not match its hash"))
        by_ckpt.setdefault(ckpt, []).append(bytes(h))
    ckpt_rows = yield ctx.q("all_checkpoints", (rk,), "all")
    hashes: dict[str, bytes] = {r[0]: bytes(r[7]) for r in ckpt_rows}
    for cid, _seq, branch, parent, kind, manifest, meta, h, created in ckpt_rows:
        try:
            parent_hash = hashes[parent] if parent is not None else b""
            expect = checkpoint_hash(
                parent_hash,
                cid,
                branch,
                kind,
                bytes(manifest),
                ctx.codec.unwrap(bytes(meta)),
                created,
                by_ckpt.get(cid, []),
            )
            if expect != bytes(h):
                problems.append(Problem("checkpoint", cid, "hash does not match its content, parent or journal"))
                continue
            for addr in _manifest_addrs(ctx.codec.loads(bytes(manifest)), plains):
                if addr not in plains:
                    problems.append(Problem("manifest", cid, f"references missing blob {addr.hex()}"))
        except KeyError:
            problems.append(Problem("checkpoint", cid, f"parent {parent!r} is missing"))
        except Exception as exc:
            problems.append(Problem("checkpoint", cid, f"cannot be read: {exc}"))
    return VerifyReport(run_id, len(ckpt_rows), len(blob_rows), len(journal_rows), tuple(problems))


def _manifest_addrs(manifest: Mapping[str, Any], plains: Mapping[bytes, bytes]) -> list[bytes]:
    """Every blob a manifest reaches, index nodes expanded where they are readable."""
    out: list[bytes] = []
    todo: list[tuple[bytes, int]] = []
    for entry in manifest.values():
        if entry[0] == "v":
            out.append(bytes(entry[1]))
        else:
            todo.extend((a, h) for a, _, h in _state.manifest_roots(entry))
    while todo:
        addr, height = todo.pop()
        out.append(addr)
        if height > 0 and addr in plains:
            todo.extend((a, height - 1) for a, _ in _state.node_children(plains[addr]))
    return out

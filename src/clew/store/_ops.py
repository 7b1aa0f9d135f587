"""Every store operation, written once as a generator of SQL queries (sans I/O).

This is the single source of truth behind both :class:`~clew.store.Store` and
:class:`~clew.store.AsyncStore`: the backends' runners hold no logic of their own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from clew.codec._crypto import SUBJECT_PREFIX
from clew.codec._envelope import Framed
from clew.errors import (
    ConfigError,
    ConflictError,
    LeaseError,
    LeaseLostError,
    NotFoundError,
    RunLockedError,
)
from clew.store import _manifests, _state, _subjects
from clew.store._query import Context, Op, Q, StaleTip, Tip, new_id
from clew.store._read import (
    append_journal_rows,
    branch_record,
    branch_row,
    check_fence,
    checkpoint_record,
    head_row_seal,
    insert_blobs,
    insert_journal,
    journal_entries,
    journal_rows,
    load_fields,
    manifest_to_store,
    note_pending,
    run_key,
    run_record,
    sealed_checkpoint,
)
from clew.store._records import (
    RUN_STATUSES,
    BranchRecord,
    CheckpointRecord,
    DeleteReport,
    JournalEntry,
    Lease,
    Page,
    RunRecord,
    lease_entry,
)
from clew.store._seal import checkpoint_hash
from clew.store._verify import verify

__all__ = ["Context", "Op", "Q", "new_id", "verify"]

# -- the operations ------------------------------------------------------------


def _check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise ConfigError(f"status must be one of {', '.join(RUN_STATUSES)}, not {status!r}")


def _check_priority(priority: int) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int) or not -(2**63) <= priority < 2**63:
        raise ConfigError(f"priority must be an int (higher runs first; 0 by default), not {priority!r}")


def _check_max_running(max_running: int | None, agent: str | None) -> None:
    if max_running is None:
        return
    if isinstance(max_running, bool) or not isinstance(max_running, int) or max_running < 1:
        raise ConfigError(f"max_running must be a positive int (or None for no limit), not {max_running!r}")
    if agent is None:
        raise ConfigError("claim_expired: max_running limits the runs of one agent; give agent= too")


def _check_ttl(ttl: float | None, where: str, name: str = "ttl") -> float:
    if ttl is None or isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < float("inf"):
        raise ConfigError(
            f"{where}: {name} must be a positive, finite number of seconds, not {ttl!r}: a lease that never "
            "expires would wedge the branch, one that expires at once would be taken over at once"
        )
    return float(ttl)


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
    state: Mapping[str, Any] | None = None,
    checkpoint_metadata: Mapping[str, Any] | None = None,
    priority: int = 0,
) -> Op[RunRecord]:
    _check_status(status)
    _check_priority(priority)
    if run_id is not None and (not isinstance(run_id, str) or not run_id.strip()):
        raise ConfigError(f"run_id={run_id!r}: give a non-empty str, or None for a generated id")
    if lease_owner is not None:
        _check_ttl(lease_ttl, "create_run", "lease_ttl")
    run_id = run_id or new_id()
    now = time.time()
    existing = yield ctx.q("run_key", (run_id,))
    if existing is not None:
        raise ConflictError(f"run {run_id!r} already exists")
    dek = _subjects.remember_new(ctx, run_id, labels)  # under its own data key, or its subject's
    expires = now + lease_ttl if lease_owner and lease_ttl else None
    row = yield ctx.q(
        "insert_run",
        (
            run_id,
            agent,
            status,
            json.dumps({k: ctx.codec.seal_label(v) for k, v in (labels or {}).items()}, sort_keys=True),
            ctx.codec.encode(dict(metadata or {}), "metadata"),
            now,
            now,
            dek,
        ),
    )
    seal, mac = head_row_seal(ctx, run_id, "main", None, None)
    epoch = 1 if lease_owner else 0
    yield ctx.q(
        "insert_branch",
        (row[0], "main", None, None, now, status, lease_owner, expires, epoch, seal, now, mac, priority),
        "exec",
    )
    if state is not None:  # the first checkpoint, in the same transaction: never a run without one
        yield from commit(
            ctx,
            run_id,
            branch="main",
            parent=None,
            state=state,
            metadata=checkpoint_metadata,
            kind="start",
            status=None,
            journal=(),
            checkpoint_id=None,
            lease=None,
        )
    return RunRecord(run_id, agent, status, dict(labels or {}), dict(metadata or {}), now, now)


def get_run(ctx: Context, run_id: str) -> Op[RunRecord]:
    row = yield ctx.q("get_run", (run_id,))
    if row is None:
        raise NotFoundError(f"run {run_id!r} not found")
    return run_record(ctx, row)


def update_run(ctx: Context, run_id: str, *, metadata: Mapping[str, Any]) -> Op[RunRecord]:
    rk = yield from run_key(ctx, run_id)
    row = yield ctx.q("update_run", (ctx.codec.encode(dict(metadata), "metadata"), time.time(), rk))
    return run_record(ctx, row)


def set_branch_status(
    ctx: Context,
    run_id: str,
    *,
    branch: str,
    status: str,
    error: Mapping[str, Any] | None,
    lease: Lease | None,
    journal: Sequence[tuple[str, Any]],
    revoke: bool,
) -> Op[BranchRecord]:
    _check_status(status)
    rk = yield from run_key(ctx, run_id)
    now = time.time()
    # The run row first (it orders writers to one run), then the branch row, locked.
    seq_row, locked = yield [
        ctx.q("bump_journal_seq", (len(journal), rk, run_id)),
        ctx.q("lock_branch", (rk, branch)),
    ]
    if seq_row is None:
        raise NotFoundError(f"run {run_id!r} not found")
    _subjects.check_same_run(ctx, run_id, seq_row[1])
    _, current = check_fence(run_id, branch, locked, lease, writing=f"status {status!r}")
    if current == "cancelled" and status != "cancelled":
        raise ConflictError(
            f"run {run_id!r} branch {branch!r} was cancelled and never changes again; fork from its head to continue"
        )
    writes = [
        ctx.q(
            "set_branch_status",
            (status, ctx.codec.encode(dict(error), "error") if error is not None else None, now, rk, branch),
            "exec",
        )
    ]
    if revoke:
        writes.append(ctx.q("revoke_lease", (rk, branch), "exec"))
    ctx.journal_seqs[run_id] = int(seq_row[0])
    if journal:
        rows, own = journal_rows(ctx, rk, run_id, branch, journal, None, now, int(seq_row[0]) - len(journal) + 1)
        note_pending(ctx, run_id, branch, [h for _, h, _, _, _ in own])
        writes.extend(insert_journal(ctx, rows))
    writes.append(ctx.q("refresh_run_status", (now, rk), "exec"))
    yield writes
    return (yield from branch_row(ctx, rk, run_id, branch))


def list_runs(
    ctx: Context,
    *,
    status: str | None,
    branch_status: str | None,
    agent: str | None,
    labels: Mapping[str, str] | None,
    limit: int,
    cursor: str | None,
    prefix: str | None = None,
    created_after: float | None = None,
    created_before: float | None = None,
) -> Op[Page[RunRecord]]:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"list_runs: limit must be a positive integer, not {limit!r}")
    ph = "?" if ctx.d.name == "sqlite" else "%s"
    where: list[str] = []
    params: list[Any] = []
    if prefix:
        where.append(f"substr(run_id, 1, {len(prefix)}) = {ph}")
        params.append(prefix)
    if created_after is not None:
        where.append(f"created_at >= {ph}")
        params.append(float(created_after))
    if created_before is not None:
        where.append(f"created_at < {ph}")
        params.append(float(created_before))
    if status is not None:
        _check_status(status)
        where.append(f"status = {ph}")
        params.append(status)
    if branch_status is not None:
        _check_status(branch_status)
        where.append(f"EXISTS (SELECT 1 FROM clew_branches b WHERE b.rk = clew_runs.rk AND b.status = {ph})")
        params.append(branch_status)
    if agent is not None:
        where.append(f"agent = {ph}")
        params.append(agent)
    for key, value in (labels or {}).items():
        where.append(ctx.d.sql["label_clause"])
        params.extend([ctx.d.label_path(key), ctx.codec.seal_label(value)])
    if cursor is not None:
        where.append(f"rk < {ph}")
        if not cursor.isdigit():
            raise ConfigError(f"not a list_runs cursor: {cursor!r}; pass back a page's next_cursor")
        params.append(int(cursor))
    sql = "SELECT rk, run_id, agent, status, labels, meta, created_at, updated_at, dek FROM clew_runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY rk DESC LIMIT {ph}"
    params.append(limit + 1)
    rows = yield Q(sql, params, "all")
    items = [run_record(ctx, r[1:]) for r in rows[:limit]]
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
    lease: Lease | None,
    fast: bool = False,
) -> Op[CheckpointRecord]:
    """Write a checkpoint and move the head.

    With ``fast``, when this context wrote ``parent`` itself (so it knows the parent's
    hash, that nothing was pending on the branch and the run's journal counter), every
    statement goes in one batch: one round trip on PostgreSQL. The head moves only if
    what the writer knew still holds (``cas_head``); if not, :class:`StaleTip` is
    raised, the transaction is undone, and the caller runs the commit again without
    ``fast``: it then reads the branch first and reports what changed.
    """
    if status is not None:
        _check_status(status)
    checkpoint_id = checkpoint_id or new_id()
    previous = ctx.cached(run_id, branch, parent) if parent is not None else None
    # Encode before the first query when we can: SQLite takes its write lock there.
    _subjects.enter(ctx, run_id)
    pre = (previous or parent is None) and _subjects.ready(ctx, run_id)
    encoded = ctx.encoder.encode(state, previous) if pre else None
    remembered = rk = ctx.run_keys.get(run_id) if _subjects.ready(ctx, run_id) else None
    if (
        fast
        and rk is not None
        and encoded is not None
        and previous is not None
        and parent is not None
        and previous.hash
        and (tip := ctx.tips.get((run_id, branch))) is not None
        and tip.checkpoint_id == parent
        and (not journal or run_id in ctx.journal_seqs)
        and not any(isinstance(d, Framed) for d in encoded.blobs.values())  # see _commit_fast
    ):
        return (
            yield from _commit_fast(
                ctx, rk, run_id, branch, parent, encoded, metadata, kind, status, journal, checkpoint_id, lease, tip
            )
        )
    if rk is None or encoded is None:
        rk = yield from run_key(ctx, run_id)
    if encoded is None:
        try:
            _, previous, on = yield from load_fields(ctx, rk, run_id, parent)  # type: ignore[arg-type]  # parent set here
        except NotFoundError:
            previous = None  # the head check below reports the conflict
        else:
            if on != branch:
                # A branch's first checkpoint stores its manifest whole: until the branch row
                # exists, retention does not know the fork point is one, and may prune it.
                previous.manifest = None
        encoded = ctx.encoder.encode(state, previous)
    manifest = ctx.codec.dumps(encoded.manifest, "manifest")[0]
    meta_plain = ctx.codec.dumps(dict(metadata or {}), "metadata")[0]
    stored_manifest, known = _stored_manifest(ctx, encoded, manifest, previous)
    now = time.time()
    cached_hash = previous.hash if previous is not None and previous.checkpoint_id == parent else b""
    # One round trip: lock the run's row (commits to one run are serialized, other runs
    # never wait) and bump its counters, lock the branch's row and read its head, lease
    # and pending journal entries, and read what the hash needs.
    first = [
        ctx.q("bump_seqs", (len(journal), now, rk, run_id)),
        ctx.q("lock_branch_pending", (rk, branch), "all"),
    ]
    if parent is not None and not cached_hash:
        first.append(ctx.q("checkpoint_hash", (rk, parent)))
    results = yield first
    row, locked_rows = results[0], results[1]
    if row is None:
        ctx.run_keys.pop(run_id, None)
        if rk == remembered:
            # A stale remembered key (the run was deleted, perhaps made again). Every write
            # above checks the run id too, so none took effect: start over with a fresh key.
            return (
                yield from commit(
                    ctx,
                    run_id,
                    branch=branch,
                    parent=parent,
                    state=state,
                    metadata=metadata,
                    kind=kind,
                    status=status,
                    journal=journal,
                    checkpoint_id=checkpoint_id,
                    lease=lease,
                )
            )
        raise NotFoundError(f"run {run_id!r} not found")
    _subjects.check_same_run(ctx, run_id, row[2])
    seq = int(row[0])
    ctx.journal_seqs[run_id] = int(row[1])
    locked = locked_rows[0][:4] if locked_rows else None
    pending = [(s, h) for *_, s, h in locked_rows if s is not None]
    head, current = check_fence(run_id, branch, locked, lease, writing=f"checkpoint {checkpoint_id}")
    if head != parent:
        raise ConflictError(
            f"run {run_id!r} branch {branch!r}: head is {head!r}, expected {parent!r}; "
            "another writer advanced it: reload the head and retry"
        )
    if current == "cancelled":
        raise ConflictError(
            f"run {run_id!r} branch {branch!r} was cancelled and never advances again; fork from its head to continue"
        )
    parent_hash = cached_hash
    if parent is not None and not cached_hash:
        prow = results[2]
        if prow is None:
            raise NotFoundError(f"run {run_id!r} has no checkpoint {parent!r}")
        parent_hash = bytes(prow[0])
    hashes = [bytes(h) for _, h in pending]
    second: list[Q] = []
    blobs = dict(encoded.blobs)
    if journal:
        last = int(row[1])
        rows, own = journal_rows(ctx, rk, run_id, branch, journal, checkpoint_id, now, last - len(journal) + 1)
        hashes.extend(h for _, h, _, _, _ in own)
        blobs.update((a, d) for _, a, d in rows.blobs)
        second.append(ctx.q("insert_journal", rows, "many"))
    if blobs:
        second[0:0] = insert_blobs(ctx, [(rk, a, d) for a, d in blobs.items()])
    h, meta_blob, mac = _seal_checkpoint(
        ctx, parent_hash, checkpoint_id, branch, kind, manifest, meta_plain, now, hashes
    )
    second.append(
        ctx.q(
            "insert_checkpoint",
            (rk, checkpoint_id, seq, branch, parent, kind, stored_manifest, meta_blob, h, now, mac),
            "exec",
        )
    )
    if pending:
        second.append(ctx.q("seal_journal", (checkpoint_id, rk, branch), "exec"))
    seal, head_mac = head_row_seal(ctx, run_id, branch, checkpoint_id, h)
    second.append(ctx.q("set_head", (checkpoint_id, seal, head_mac, status, now, rk, branch), "exec"))
    if status is not None:
        second.append(ctx.q("refresh_run_status", (now, rk), "exec"))
    yield second
    ctx.remember(run_id, branch, _state.StateCache(checkpoint_id, encoded.cache, h, manifest=known))
    ctx.manifests.put(rk, checkpoint_id, known)
    ctx.note_tip(run_id, branch, Tip(checkpoint_id, []))
    return CheckpointRecord(run_id, checkpoint_id, seq, branch, parent, kind, dict(metadata or {}), h.hex(), now)


def _stored_manifest(
    ctx: Context, encoded: _state.EncodedState, plain: bytes, parent: _state.StateCache | None
) -> tuple[bytes, _manifests.Known]:
    """The manifest as the row stores it (a change against the parent's when that is
    known and pays), and the whole one with its depth, for the writer cache."""
    stored, depth = _manifests.to_store(
        ctx.codec, encoded.manifest, plain, parent.manifest if parent is not None else None
    )
    return manifest_to_store(ctx, stored), _manifests.Known(encoded.manifest, depth)


def _seal_checkpoint(
    ctx: Context,
    parent_hash: bytes,
    checkpoint_id: str,
    branch: str,
    kind: str,
    manifest: bytes,
    meta_plain: bytes,
    now: float,
    hashes: list[bytes],
) -> tuple[bytes, bytes, bytes | None]:
    """A new checkpoint's chain hash, its stored metadata and its keyed MAC (None without a seal key)."""
    sealable = ctx.codec.sealable(meta_plain, encrypted=ctx.codec.encrypts)
    h = checkpoint_hash(parent_hash, checkpoint_id, branch, kind, manifest, sealable, now, hashes)
    return h, ctx.codec.wrap(meta_plain), ctx.seal_key.mac(h) if ctx.seal_key is not None else None


def _commit_fast(
    ctx: Context,
    rk: int,
    run_id: str,
    branch: str,
    parent: str,
    encoded: _state.EncodedState,
    metadata: Mapping[str, Any] | None,
    kind: str,
    status: str | None,
    journal: Sequence[tuple[str, Any]],
    checkpoint_id: str,
    lease: Lease | None,
    tip: Tip,
) -> Op[CheckpointRecord]:
    """A commit in one batch, on what this context knows; see :func:`commit`."""
    previous = ctx.cached(run_id, branch, parent)
    assert previous is not None
    manifest = ctx.codec.dumps(encoded.manifest, "manifest")[0]
    meta_plain = ctx.codec.dumps(dict(metadata or {}), "metadata")[0]
    stored_manifest, known = _stored_manifest(ctx, encoded, manifest, previous)
    now = time.time()
    batch = [ctx.q("bump_seqs", (len(journal), now, rk, run_id))]
    pending = list(tip.pending)
    hashes: list[bytes] = list(pending)
    blobs = dict(encoded.blobs)
    expected_journal = ctx.journal_seqs.get(run_id, 0) + len(journal)
    if journal:
        # Numbered from the run's counter as this context last saw it: the bump's answer
        # says whether that still held (rows that collide with others' are skipped, and
        # the transaction is undone).
        first = ctx.journal_seqs[run_id] + 1
        rows, own = journal_rows(ctx, rk, run_id, branch, journal, checkpoint_id, now, first)
        hashes.extend(h for _, h, _, _, _ in own)
        blobs.update((a, d) for _, a, d in rows.blobs)
        batch.append(ctx.q("insert_journal_guess", rows, "many"))
    if any(isinstance(d, Framed) for d in blobs.values()):
        # A big value (here a journal entry's) goes the old way, in the commit's last
        # batch: not in one with answers awaited (see _postgres._Pipelined._awaits).
        raise StaleTip(run_id, branch)
    if blobs:
        batch.extend(insert_blobs(ctx, [(rk, a, d) for a, d in blobs.items()]))
    h, meta_blob, mac = _seal_checkpoint(
        ctx, previous.hash, checkpoint_id, branch, kind, manifest, meta_plain, now, hashes
    )
    batch.append(
        ctx.q(
            "insert_checkpoint_next",
            (checkpoint_id, branch, parent, kind, stored_manifest, meta_blob, h, now, mac, rk),
            "exec",
        )
    )
    seal, head_mac = head_row_seal(ctx, run_id, branch, checkpoint_id, h)
    fence = (1, lease.owner, lease.epoch) if lease is not None else (0, None, None)
    cas = (checkpoint_id, seal, head_mac, status, now, rk, branch, parent, *fence)
    if not pending:
        batch.append(ctx.q("cas_head", cas))
    elif ctx.d.expands_in_lists:
        marks = f"IN ({ctx.marks(len(pending))})"
        batch.append(ctx.q("cas_head_pending", (*cas, len(pending), *pending, len(pending)), in_hashes=marks))
    else:
        batch.append(ctx.q("cas_head_pending", (*cas, len(pending), pending, len(pending)), in_hashes="= ANY(%b)"))
    moved_at = len(batch) - 1
    if pending:
        batch.append(ctx.q("seal_journal", (checkpoint_id, rk, branch), "exec"))
    if status is not None:
        batch.append(ctx.q("refresh_run_status", (now, rk), "exec"))
    results = yield batch
    row, moved = results[0], results[moved_at]
    if row is None or moved is None or int(row[1]) != expected_journal or not _subjects.same_run(ctx, run_id, row[2]):
        ctx.tips.pop((run_id, branch), None)
        ctx.journal_seqs.pop(run_id, None)
        raise StaleTip(run_id, branch)
    ctx.journal_seqs[run_id] = int(row[1])
    ctx.remember(run_id, branch, _state.StateCache(checkpoint_id, encoded.cache, h, manifest=known))
    ctx.manifests.put(rk, checkpoint_id, known)
    ctx.note_tip(run_id, branch, Tip(checkpoint_id, []))
    seq = int(row[0])
    return CheckpointRecord(run_id, checkpoint_id, seq, branch, parent, kind, dict(metadata or {}), h.hex(), now)


def append_journal(
    ctx: Context, run_id: str, *, branch: str, entries: Sequence[tuple[str, Any]], lease: Lease | None
) -> Op[list[JournalEntry]]:
    # A remembered run key is re-checked by the first write, the branch by its lock.
    _subjects.enter(ctx, run_id)
    rk = ctx.run_keys.get(run_id) if _subjects.ready(ctx, run_id) else None
    remembered = rk is not None
    if rk is None:
        rk = yield from run_key(ctx, run_id)
    now = time.time()
    try:
        rows = yield from append_journal_rows(ctx, rk, run_id, branch, entries, None, now, lease)
    except NotFoundError:
        if not remembered:
            raise
        # Perhaps a stale remembered key (the run was deleted, perhaps made again): nothing was written.
        ctx.run_keys.pop(run_id, None)
        return (yield from append_journal(ctx, run_id, branch=branch, entries=entries, lease=lease))
    return [JournalEntry(run_id, seq, branch, kind, data, now, None, h.hex()) for seq, h, _, kind, data in rows]


def list_journal(ctx: Context, run_id: str, *, checkpoint_id: str | None, branch: str | None) -> Op[list[JournalEntry]]:
    rk = yield from run_key(ctx, run_id)
    if checkpoint_id is not None:
        rows = yield ctx.q("journal_of_checkpoint", (rk, checkpoint_id), "all")
    elif branch is not None:
        rows = yield ctx.q("journal_pending_rows", (rk, branch), "all")
    else:
        rows = yield ctx.q("all_journal", (rk,), "all")
    return (yield from journal_entries(ctx, rk, run_id, rows))


def get_checkpoint(ctx: Context, run_id: str, checkpoint_id: str) -> Op[CheckpointRecord]:
    rk = yield from run_key(ctx, run_id)
    return (yield from sealed_checkpoint(ctx, rk, run_id, checkpoint_id))


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
    state, cache, branch = yield from load_fields(ctx, rk, run_id, checkpoint_id)
    ctx.remember(run_id, branch, cache)
    return state


def list_checkpoints(
    ctx: Context, run_id: str, *, branch: str, limit: int, cursor: str | None
) -> Op[Page[CheckpointRecord]]:
    rk = yield from run_key(ctx, run_id)
    start = cursor
    if start is None:
        b = yield from branch_row(ctx, rk, run_id, branch)
        start = b.head
    if start is None:
        return Page([], None)
    # A branch's own checkpoints form one line (its head only moves by compare-and-set
    # from the head), so a history is that line read by seq, then the line of the branch
    # it was forked from, from the fork point down: an index range per branch.
    row = yield ctx.q("get_checkpoint", (rk, start))
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no checkpoint {start!r}")
    rows: list[Any] = []
    line, seq = row[2], row[1]
    while len(rows) <= limit:
        want = limit + 1 - len(rows)
        part = yield ctx.q("branch_line", (rk, line, seq, want), "all")
        rows.extend(part)
        if len(part) == want or not part or part[-1][3] is None:
            break
        base = yield ctx.q("get_checkpoint", (rk, part[-1][3]))
        if base is None:
            break  # a missing parent: verify() reports it
        line, seq = base[2], base[1]
    items = [checkpoint_record(ctx, run_id, r) for r in rows[:limit]]
    nxt = items[-1].parent_id if len(rows) > limit and items else None
    return Page(items, nxt)


def get_branch(ctx: Context, run_id: str, name: str) -> Op[BranchRecord]:
    rk = yield from run_key(ctx, run_id)
    return (yield from branch_row(ctx, rk, run_id, name))


def list_branches(ctx: Context, run_id: str) -> Op[list[BranchRecord]]:
    rk = yield from run_key(ctx, run_id)
    rows = yield ctx.q("list_branches", (rk,), "all")
    return [branch_record(ctx, run_id, r) for r in rows]


def fork(
    ctx: Context,
    run_id: str,
    *,
    checkpoint_id: str,
    branch: str,
    state: Mapping[str, Any] | None = None,
    kind: str = "fork",
    metadata: Mapping[str, Any] | None = None,
    journal: Sequence[tuple[str, Any]] = (),
    status: str | None = None,
    lease_owner: str | None = None,
    lease_ttl: float | None = None,
) -> Op[BranchRecord]:
    status = status or "running"
    _check_status(status)
    expires = time.time() + _check_ttl(lease_ttl, "fork", "lease_ttl") if lease_owner is not None else None
    rk = yield from run_key(ctx, run_id)
    row, existing, source = yield [
        ctx.q("get_checkpoint", (rk, checkpoint_id)),
        ctx.q("get_branch", (rk, branch)),
        ctx.q("fork_priority", (rk, checkpoint_id)),
    ]
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no checkpoint {checkpoint_id!r}")
    if existing is not None:
        raise ConflictError(f"run {run_id!r} already has a branch {branch!r}; choose another name")
    now = time.time()
    seal, mac = head_row_seal(ctx, run_id, branch, checkpoint_id, bytes(row[6]))
    epoch = 1 if lease_owner is not None else 0
    priority = int(source[0]) if source is not None else 0
    yield ctx.q(
        "insert_branch",
        (rk, branch, checkpoint_id, checkpoint_id, now, status, lease_owner, expires, epoch, seal, now, mac, priority),
        "exec",
    )
    if state is not None:  # the branch's first checkpoint, in the same transaction
        yield from commit(
            ctx,
            run_id,
            branch=branch,
            parent=checkpoint_id,
            state=state,
            metadata=metadata,
            kind=kind,
            status=status,
            journal=journal,
            checkpoint_id=None,
            lease=None,
        )
    else:
        yield ctx.q("refresh_run_status", (now, rk), "exec")
    return (yield from branch_row(ctx, rk, run_id, branch))


def delete_run(ctx: Context, run_id: str) -> Op[DeleteReport]:
    rk = yield from run_key(ctx, run_id)
    counts = []
    for name in ("delete_journal", "delete_checkpoints", "delete_blobs", "delete_branches"):
        counts.append((yield ctx.q(name, (rk,), "rowcount")))
    yield ctx.q("delete_run", (rk,), "rowcount")
    ctx.forget(run_id)
    ctx.run_keys.pop(run_id, None)
    kid = ctx.subject_kids.pop(run_id, None)
    if kid is not None and not kid.startswith(SUBJECT_PREFIX):
        ctx.codec.forget_key(kid)  # its wrapped form goes with the row: nothing can read the run now
    return DeleteReport(run_id, checkpoints=counts[1], blobs=counts[2], journal_entries=counts[0], branches=counts[3])


def acquire_lease(ctx: Context, run_id: str, *, owner: str, ttl: float, branch: str) -> Op[Lease]:
    ttl = _check_ttl(ttl, "acquire_lease")
    rk = yield from run_key(ctx, run_id)
    now = time.time()
    row = yield ctx.q("acquire_lease", (owner, now + ttl, rk, branch, owner, now))
    if row is None:
        holder = yield ctx.q("lease_of", (rk, branch))
        if holder is None:
            raise NotFoundError(f"run {run_id!r} has no branch {branch!r}")
        if holder[2] in ("completed", "cancelled"):
            raise LeaseError(f"run {run_id!r} branch {branch!r} is {holder[2]}: a finished branch takes no lease")
        raise RunLockedError(
            f"run {run_id!r} branch {branch!r} is leased by {holder[0]!r} for {max(0.0, holder[1] - now):.1f}s more; "
            "wait for it to finish or for the lease to expire (then recover())"
        )
    return Lease(run_id, branch, owner, int(row[0]), now + ttl)


def renew_lease(ctx: Context, run_id: str, *, owner: str, ttl: float, branch: str, epoch: int | None) -> Op[Lease]:
    ttl = _check_ttl(ttl, "renew_lease")
    rk = yield from run_key(ctx, run_id)
    expires = time.time() + ttl
    row = yield ctx.q("renew_lease", (expires, rk, branch, owner, epoch))
    if row is None:
        raise LeaseLostError(
            f"run {run_id!r} branch {branch!r}: the lease of {owner!r}"
            + (f" (epoch {epoch})" if epoch is not None else "")
            + " was lost (expired and taken over, or released); this worker must stop"
        )
    return Lease(run_id, branch, owner, int(row[0]), expires)


def release_lease(ctx: Context, run_id: str, *, owner: str, branch: str, epoch: int | None) -> Op[bool]:
    rk = yield from run_key(ctx, run_id)
    n: int = yield ctx.q("release_lease", (rk, branch, owner, epoch), "rowcount")
    return n == 1


def claim_expired(
    ctx: Context,
    *,
    owner: str,
    ttl: float,
    limit: int,
    statuses: Sequence[str],
    agent: str | None,
    max_running: int | None = None,
) -> Op[list[Lease]]:
    ttl = _check_ttl(ttl, "claim_expired")
    for status in statuses:
        _check_status(status)
    _check_max_running(max_running, agent)
    if not statuses or limit < 1:
        return []
    now = time.time()
    if max_running is not None:
        if ctx.d.name == "postgres":
            yield ctx.q("agent_lock", (agent,), "one")
        live = yield ctx.q("live_leases", (now, agent))
        limit = min(limit, max_running - int(live[0]))
        if limit < 1:
            return []
    rows = yield ctx.q("claim_expired", (*statuses, now, agent, limit), "all", marks=ctx.marks(len(statuses)))
    if not rows:
        return []
    # Each claim is journaled on its branch, in this transaction: the entry is sealed into
    # the next checkpoint, so the run's history says who took it over, from whom and why.
    per_run: dict[int, int] = {}
    for r in rows:
        per_run[int(r[0])] = per_run.get(int(r[0]), 0) + 1
    run_ids = {int(r[0]): r[1] for r in rows}
    expires = now + ttl
    seqs = yield [
        *[ctx.q("bump_journal_seq", (n, rk, run_ids[rk])) for rk, n in per_run.items()],
        ctx.q("take_lease", [(owner, expires, int(r[8]) + 1, int(r[0]), r[4]) for r in rows], "many"),
    ]
    next_seq = {rk: int(seq[0]) - per_run[rk] + 1 for rk, seq in zip(per_run, seqs[: len(per_run)], strict=True)}
    writes: list[Q] = []
    leases = []
    for rk, run_id, labels, dek, branch, head, previous, expired_at, epoch in rows:
        rk, epoch = int(rk), int(epoch) + 1
        _subjects.remember(ctx, run_id, labels, dek)  # the entry is written under the run's (or subject's) key
        entry = lease_entry(owner=owner, epoch=epoch, previous_owner=previous, expired_at=expired_at, head=head)
        journal, _ = journal_rows(ctx, rk, run_id, branch, [("lease", entry)], None, now, next_seq[rk])
        next_seq[rk] += 1
        writes.extend(insert_journal(ctx, journal))
        leases.append(Lease(run_id, branch, owner, epoch, expires))
    yield writes
    return leases

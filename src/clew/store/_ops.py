"""Every store operation, written once as a generator of SQL queries (sans I/O).

This is the single source of truth behind both :class:`~clew.store.Store` and
:class:`~clew.store.AsyncStore`: the backends' runners hold no logic of their own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from clew.errors import (
    ConfigError,
    ConflictError,
    LeaseError,
    NotFoundError,
    RunLockedError,
)
from clew.store import _state
from clew.store._query import Context, Op, Q, new_id
from clew.store._read import (
    append_journal_rows,
    branch_record,
    branch_row,
    checkpoint_record,
    journal_entry,
    journal_rows,
    load_fields,
    manifest_to_store,
    run_key,
    run_record,
)
from clew.store._records import (
    RUN_STATUSES,
    BranchRecord,
    CheckpointRecord,
    DeleteReport,
    JournalEntry,
    Page,
    RunRecord,
)
from clew.store._seal import checkpoint_hash
from clew.store._verify import verify

__all__ = ["Context", "Op", "Q", "new_id", "verify"]

# -- the operations ------------------------------------------------------------


def _check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise ConfigError(f"run status must be one of {', '.join(RUN_STATUSES)}, not {status!r}")


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
) -> Op[RunRecord]:
    _check_status(status)
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
            json.dumps({k: ctx.codec.seal_label(v) for k, v in (labels or {}).items()}, sort_keys=True),
            ctx.codec.encode(dict(metadata or {}), "metadata"),
            now,
            now,
            lease_owner,
            expires,
        ),
    )
    yield ctx.q("insert_branch", (row[0], "main", None, None, now), "rowcount")
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
        )
    return RunRecord(run_id, agent, status, dict(labels or {}), dict(metadata or {}), now, now, lease_owner, expires)


def get_run(ctx: Context, run_id: str) -> Op[RunRecord]:
    row = yield ctx.q("get_run", (run_id,))
    if row is None:
        raise NotFoundError(f"run {run_id!r} not found")
    return run_record(ctx, row)


def update_run(ctx: Context, run_id: str, *, status: str | None, metadata: Mapping[str, Any] | None) -> Op[RunRecord]:
    if status is not None:
        _check_status(status)
    rk = yield from run_key(ctx, run_id)
    meta = ctx.codec.encode(dict(metadata), "metadata") if metadata is not None else None
    row = yield ctx.q("update_run", (status, meta, time.time(), rk))
    return run_record(ctx, row)


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
        params.extend([ctx.d.label_path(key), ctx.codec.seal_label(value)])
    if cursor is not None:
        where.append(f"rk < {ph}")
        if not cursor.isdigit():
            raise ConfigError(f"not a list_runs cursor: {cursor!r}; pass back a page's next_cursor")
        params.append(int(cursor))
    sql = "SELECT rk, run_id, agent, status, labels, meta, created_at, updated_at, lease_owner, lease_expires FROM runs"
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
) -> Op[CheckpointRecord]:
    if status is not None:
        _check_status(status)
    checkpoint_id = checkpoint_id or new_id()
    previous = ctx.cached(run_id, branch, parent) if parent is not None else None
    # Encode before the first query when we can: SQLite takes its write lock there.
    encoded = ctx.encoder.encode(state, previous) if previous or parent is None else None
    remembered = rk = ctx.run_keys.get(run_id)
    if rk is None or encoded is None:
        rk = yield from run_key(ctx, run_id)
    if encoded is None:
        try:
            _, previous, _ = yield from load_fields(ctx, rk, run_id, parent)  # type: ignore[arg-type]  # parent set here
        except NotFoundError:
            previous = None  # the head check below reports the conflict
        encoded = ctx.encoder.encode(state, previous)
    manifest = ctx.codec.dumps(encoded.manifest, "manifest")[0]
    meta_plain = ctx.codec.dumps(dict(metadata or {}), "metadata")[0]
    stored_manifest = manifest_to_store(ctx, manifest)
    now = time.time()
    cached_hash = previous.hash if previous is not None and previous.checkpoint_id == parent else b""
    # One round trip: lock the run's row (commits to one run are serialized, other
    # runs never wait), move the head by compare-and-set, read what the hash needs.
    first = [
        ctx.q("bump_ckpt_seq", (status, now, rk, run_id)),
        ctx.q("cas_head", (checkpoint_id, rk, branch, parent, run_id), "rowcount"),
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
                )
            )
        raise NotFoundError(f"run {run_id!r} not found")
    seq = int(row[0])
    if moved != 1:
        b = yield from branch_row(ctx, rk, run_id, branch)
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
        rows, own = journal_rows(ctx, rk, branch, journal, checkpoint_id, now, last - len(journal) + 1)
        hashes.extend(h for _, h, _, _, _ in own)
        second.append(ctx.q("insert_journal", rows, "many"))
    if encoded.blobs:
        second.append(ctx.q("insert_blob", [(rk, a, d) for a, d in encoded.blobs.items()], "many"))
    h = checkpoint_hash(
        parent_hash,
        checkpoint_id,
        branch,
        kind,
        manifest,
        ctx.codec.sealable(meta_plain, encrypted=ctx.codec.encrypts),
        now,
        hashes,
    )
    meta_blob = ctx.codec.wrap(meta_plain)
    second.append(
        ctx.q(
            "insert_checkpoint",
            (rk, checkpoint_id, seq, branch, parent, kind, stored_manifest, meta_blob, h, now),
            "exec",
        )
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
    remembered = rk is not None and (run_id, branch) in ctx.known_branches
    if rk is None or not remembered:
        rk = yield from run_key(ctx, run_id)
        yield from branch_row(ctx, rk, run_id, branch)
        ctx.known_branches.add((run_id, branch))
    now = time.time()
    try:
        rows = yield from append_journal_rows(ctx, rk, run_id, branch, entries, None, now)
    except NotFoundError:
        if not remembered:
            raise
        # A stale remembered key (the run was deleted, perhaps made again): nothing was written.
        ctx.known_branches.discard((run_id, branch))
        return (yield from append_journal(ctx, run_id, branch=branch, entries=entries))
    return [JournalEntry(run_id, seq, branch, kind, data, now, None, h.hex()) for seq, h, _, kind, data in rows]


def list_journal(ctx: Context, run_id: str, *, checkpoint_id: str | None, branch: str | None) -> Op[list[JournalEntry]]:
    rk = yield from run_key(ctx, run_id)
    if checkpoint_id is not None:
        rows = yield ctx.q("journal_of_checkpoint", (rk, checkpoint_id), "all")
    elif branch is not None:
        rows = yield ctx.q("journal_pending_rows", (rk, branch), "all")
    else:
        rows = yield ctx.q("all_journal", (rk,), "all")
    return [journal_entry(ctx, run_id, r) for r in rows]


def get_checkpoint(ctx: Context, run_id: str, checkpoint_id: str) -> Op[CheckpointRecord]:
    rk = yield from run_key(ctx, run_id)
    row = yield ctx.q("get_checkpoint", (rk, checkpoint_id))
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no checkpoint {checkpoint_id!r}")
    return checkpoint_record(ctx, run_id, row)


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
    return [branch_record(run_id, r) for r in rows]


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
) -> Op[BranchRecord]:
    rk = yield from run_key(ctx, run_id)
    row = yield ctx.q("get_checkpoint", (rk, checkpoint_id))
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no checkpoint {checkpoint_id!r}")
    existing = yield ctx.q("get_branch", (rk, branch))
    if existing is not None:
        raise ConflictError(f"run {run_id!r} already has a branch {branch!r}; choose another name")
    now = time.time()
    yield ctx.q("insert_branch", (rk, branch, checkpoint_id, checkpoint_id, now), "rowcount")
    head = checkpoint_id
    if state is not None:  # the branch's first checkpoint, in the same transaction
        first = yield from commit(
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
        )
        head = first.checkpoint_id
    return BranchRecord(run_id, branch, head, checkpoint_id, now)


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


def claim_expired(
    ctx: Context, *, owner: str, ttl: float, limit: int, statuses: Sequence[str], agent: str | None
) -> Op[list[RunRecord]]:
    now = time.time()
    rows = yield ctx.q(
        "claim_expired", (owner, now + ttl, *statuses, now, agent, limit), "all", marks=ctx.marks(len(statuses))
    )
    return [run_record(ctx, r) for r in rows]

"""The saver's operations as flows of store calls (see :mod:`._core`).

Where things go (the full mapping is in ``docs/langgraph.md``):

* A checkpoint is committed on the branch its parent heads. A parent that heads no
  branch (time travel, ``update_state`` on an old checkpoint) starts a branch
  ``fork-<checkpoint id>``. A writer that expected its parent to be a head and finds
  the branch moved (two writers on one thread) gets :class:`ConflictError`, or with
  ``on_conflict="fork"`` a branch ``conflict-<checkpoint id>``.
* The writes of checkpoint C (``put_writes``) are journal entries: pending on a
  branch C heads, sealed into a child of C, committed with C itself when they came
  before C was stored, or pending on the run's ``late-writes`` branch when they came
  after C had a child. Lookups read exactly those places.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, CheckpointMetadata, CheckpointTuple, PendingWrite
from langgraph.checkpoint.base import get_checkpoint_metadata as _lg_metadata

from clew.errors import ConflictError, NotFoundError
from clew.integrations.langgraph import _mapping as m
from clew.integrations.langgraph._core import (
    Ctx,
    Emit,
    Flow,
    Stream,
    all_records,
    append,
    call,
    commit,
    ensure_run,
    find_run,
    head_branch,
    run_exists,
    thread_runs,
    verified,
)
from clew.store import BranchRecord, CheckpointRecord, JournalEntry

_LOAD_PAGE = 400
"""Checkpoints a listing loads at once, sharing the blobs they have in common."""

# -- reading -------------------------------------------------------------------


def _children(run: str, record: CheckpointRecord, branches: Sequence[BranchRecord]) -> Flow[list[str]]:
    """The checkpoints whose parent is ``record``: on its branch or on branches forked at it."""
    cid = record.checkpoint_id
    out: list[str] = []
    for b in branches:
        if b.head is None or b.head == cid or (b.name != record.branch and b.base != cid):
            continue
        cursor: str | None = b.head
        while cursor is not None:
            page = yield call("list_checkpoints", run, branch=b.name, limit=64, cursor=cursor)
            cursor = page.next_cursor
            for rec in page.items:
                if rec.parent_id == cid:
                    out.append(rec.checkpoint_id)
                if rec.parent_id == cid or rec.seq <= record.seq:
                    cursor = None
                    break
    return out


def writes_of(
    ctx: Ctx, run: str, record: CheckpointRecord, branches: Sequence[BranchRecord], children: list[str] | None = None
) -> Flow[list[PendingWrite]]:
    """The pending writes of one checkpoint, read from every place they can be (see module doc)."""
    cid = record.checkpoint_id
    entries: list[JournalEntry] = list((yield call("list_journal", run, checkpoint_id=cid)))
    for b in branches:
        if b.head == cid or b.name == m.LATE:
            entries.extend((yield call("list_journal", run, pending_on=b.name)))
    if children is None:
        children = yield from _children(run, record, branches)
    for child in children:
        entries.extend((yield call("list_journal", run, checkpoint_id=child)))
    return m.pending_writes(ctx.serde, cid, entries)


def get_tuple(ctx: Ctx, config: RunnableConfig) -> Flow[CheckpointTuple | None]:
    thread, ns, cid = m.parse_config(config)
    run = m.run_id_for(thread, ns)
    if not (yield from find_run(ctx, run, thread, ns)):
        return None
    try:
        branches: list[BranchRecord] = yield call("list_branches", run)
        if cid is None:
            heads = [b.head for b in branches if b.head and b.name != m.LATE]
            if not heads:
                return None
            cid = max(heads)
        record: CheckpointRecord = yield call("get_checkpoint", run, cid)
        state = yield call("load_state", run, cid)
        writes = yield from writes_of(ctx, run, record, branches)
        yield from verified(ctx, run)
    except NotFoundError:
        return None
    ctx.mem.saw(run, cid, head_branch(branches, cid, record.branch))
    named = config if config.get("configurable", {}).get("checkpoint_id") else None
    return m.to_tuple(ctx.serde, thread, ns, record, state, writes, named)


def _runs_to_list(ctx: Ctx, config: RunnableConfig | None) -> Flow[list[tuple[str, str, str]]]:
    conf = (config or {}).get("configurable") or {}
    if conf.get("thread_id") is not None and "checkpoint_ns" in conf:
        thread, ns, _ = m.parse_config(config)  # type: ignore[arg-type]  # not None here
        run = m.run_id_for(thread, ns)
        return [(run, thread, ns)] if (yield from find_run(ctx, run, thread, ns)) else []
    runs = yield from thread_runs(str(conf["thread_id"]) if conf.get("thread_id") is not None else None)
    # A rewrite's scratch run has no thread_id label: not part of any thread.
    return [
        (r.run_id, r.labels["thread_id"], r.labels.get("checkpoint_ns", "")) for r in runs if "thread_id" in r.labels
    ]


def list_checkpoints(
    ctx: Ctx,
    config: RunnableConfig | None,
    filter: Mapping[str, Any] | None,  # noqa: A002 - LangGraph's name
    before: RunnableConfig | None,
    limit: int | None,
) -> Stream:
    """Checkpoints newest first (by id), across every branch of the thread's runs."""
    only = ((config or {}).get("configurable") or {}).get("checkpoint_id")
    before_id = ((before or {}).get("configurable") or {}).get("checkpoint_id")
    found: list[tuple[CheckpointRecord, tuple[str, str, str], list[BranchRecord], dict[str, CheckpointRecord]]] = []
    for where in (yield from _runs_to_list(ctx, config)):
        try:
            branches = yield call("list_branches", where[0])
            records = yield from all_records(where[0], branches)
            yield from verified(ctx, where[0])
        except NotFoundError:
            continue
        for rec in records.values():
            if (only and rec.checkpoint_id != only) or (before_id and rec.checkpoint_id >= before_id):
                continue
            if m.matches(m.lg_metadata(rec), filter):
                found.append((rec, where, branches, records))
    found.sort(key=lambda f: f[0].checkpoint_id, reverse=True)
    if limit is not None:
        found = found[:limit]
    journals: dict[str, dict[str, list[JournalEntry]]] = {}
    for start in range(0, len(found), _LOAD_PAGE):
        page = found[start : start + _LOAD_PAGE]
        states: dict[tuple[str, str], dict[str, Any]] = {}
        for run in dict.fromkeys(where[0] for _, where, _, _ in page):
            cids = [rec.checkpoint_id for rec, where, _, _ in page if where[0] == run]
            try:  # each blob the page's checkpoints share is decoded once
                loaded = yield call("load_states", run, cids)
            except NotFoundError:  # deleted while we listed: load what is left one by one
                loaded = {}
                for cid in cids:
                    try:
                        loaded[cid] = yield call("load_state", run, cid)
                    except NotFoundError:
                        continue
            states.update(((run, cid), state) for cid, state in loaded.items())
        for rec, (run, thread, ns), branches, records in page:
            state = states.get((run, rec.checkpoint_id))
            if state is None:
                continue
            try:
                if len(found) > 4:  # one read of the journal beats a few reads per checkpoint
                    if run not in journals:
                        journals[run] = m.by_checkpoint((yield call("list_journal", run)))
                    entries = journals[run].get(rec.checkpoint_id, [])
                    writes = m.pending_writes(ctx.serde, rec.checkpoint_id, entries)
                else:
                    kids = [r.checkpoint_id for r in records.values() if r.parent_id == rec.checkpoint_id]
                    writes = yield from writes_of(ctx, run, rec, branches, kids)
            except NotFoundError:  # deleted while we listed
                continue
            ctx.mem.saw(run, rec.checkpoint_id, head_branch(branches, rec.checkpoint_id, rec.branch), explicit=False)
            yield Emit(m.to_tuple(ctx.serde, thread, ns, rec, state, writes))


# -- writing -------------------------------------------------------------------


def _conflict(thread: str, ns: str, parent: str, cid: str) -> ConflictError:
    return ConflictError(
        f"LangGraph thread {thread!r} (checkpoint_ns {ns!r}): another writer moved the thread past "
        f"checkpoint {parent} while this one was working from it; checkpoint {cid} was not saved. "
        "Reload the thread (graph.get_state) and run again, or make the saver with on_conflict='fork' "
        "to keep both lines as branches"
    )


def put(ctx: Ctx, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata) -> Flow[RunnableConfig]:
    thread, ns, parent = m.parse_config(config)
    run = m.run_id_for(thread, ns)
    cid = checkpoint["id"]
    lg_meta = _lg_metadata(config, metadata)
    state = dict(checkpoint["channel_values"])
    kind = m.kind_of(lg_meta)
    expect = ctx.mem.expected(run, parent) if parent else None
    journal = ctx.mem.release(run, cid)  # writes that came before their checkpoint

    def go(branch: str, clew_parent: str | None, lg_parent: Any = ...) -> Flow[str]:
        meta = m.checkpoint_meta(checkpoint, lg_meta, lg_parent)
        yield from commit(
            ctx,
            run,
            state,
            parent=clew_parent,
            branch=branch,
            kind=kind,
            metadata=meta,
            journal=journal,
            checkpoint_id=cid,
            status=m.status_after(checkpoint, journal),
        )
        ctx.mem.advanced(run, clew_parent, cid, branch)
        return branch

    def fork_and_go(name: str, at: str, lg_parent: Any = ...) -> Flow[str]:
        try:
            yield call("fork", run, checkpoint_id=at, branch=name)
        except ConflictError:  # made by an earlier attempt at this very checkpoint
            pass
        return (yield from go(name, at, lg_parent))

    def as_root(branches: Sequence[BranchRecord], lg_parent: Any) -> Flow[str]:
        heads = [b.head for b in branches if b.head and b.name != m.LATE]
        if not heads:
            return (yield from go("main", None, lg_parent))
        # A second root: kept on a branch off the latest checkpoint, so the run stays one chain.
        return (yield from fork_and_go(f"root-{cid}", max(heads), None if lg_parent is ... else lg_parent))

    def place(created: bool) -> Flow[str]:
        if created:
            return (yield from go("main", None, ... if parent is None else parent))
        if parent is not None and expect:
            return (yield from go(expect, parent))
        branches: list[BranchRecord] = yield call("list_branches", run)
        if parent is None:
            return (yield from as_root(branches, ...))
        if (at := head_branch(branches, parent)) is not None:
            return (yield from go(at, parent))
        try:
            yield call("get_checkpoint", run, parent)
        except NotFoundError:  # a parent this thread never stored: keep its id, start a root
            return (yield from as_root(branches, parent))
        return (yield from fork_and_go(f"fork-{cid}", parent))

    created = yield from ensure_run(ctx, run, thread, ns)
    try:
        try:
            yield from place(created)
        except NotFoundError:
            if (yield from run_exists(run)):
                raise
            ctx.mem.forget(run)  # deleted by someone else since we saw it: start it again
            yield from place((yield from ensure_run(ctx, run, thread, ns)))
    except ConflictError as exc:
        try:
            yield call("get_checkpoint", run, cid)
        except NotFoundError:
            pass
        else:  # stored already: a checkpoint id is written once, a repeated put changes nothing
            return m.make_config(thread, ns, cid)
        if parent is None:  # another writer made the thread's first checkpoint just now
            yield from as_root((yield call("list_branches", run)), ...)
        elif ctx.on_conflict == "fork":
            yield from fork_and_go(f"conflict-{cid}", parent)
        else:
            raise _conflict(thread, ns, parent, cid) from exc
    return m.make_config(thread, ns, cid)


def probe_writes(ctx: Ctx, config: RunnableConfig) -> Flow[bool | None]:
    """Whether the checkpoint a ``put_writes`` names is stored; None if this saver knows it is.

    Runs before the thread's lock is taken, so the round trip never delays the
    thread's checkpoint commit (LangGraph's tasks often write before it).
    """
    thread, ns, cid = m.parse_config(config)
    if cid is None:
        raise ValueError("put_writes needs a config naming its checkpoint (configurable.checkpoint_id)")
    run = m.run_id_for(thread, ns)
    if ctx.mem.stored(run, cid):
        return None
    try:
        if not (yield from find_run(ctx, run, thread, ns)):
            return False
        yield call("get_checkpoint", run, cid)
    except NotFoundError:
        return False
    return True


def put_writes(
    ctx: Ctx,
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
    stored: bool | None,
) -> Flow[None]:
    """Record writes; ``stored`` is what :func:`probe_writes` found, before the lock."""
    thread, ns, cid = m.parse_config(config)
    assert cid is not None  # checked by probe_writes
    run = m.run_id_for(thread, ns)
    entry = m.writes_entry(cid, task_id, task_path, writes)
    branch = ctx.mem.head(run, cid)
    if branch is None:
        if stored is False and not ctx.mem.stored(run, cid):  # not stored then, nor since by this saver
            ctx.mem.hold(run, cid, entry)  # committed with the checkpoint when it comes
            return
        branches: list[BranchRecord] = yield call("list_branches", run)
        branch = head_branch(branches, cid)
        if branch is not None:
            ctx.mem.saw(run, cid, branch)
        else:  # the checkpoint has a child already: its writes wait on the run's late-writes branch
            branch = m.LATE
            if all(b.name != m.LATE for b in branches):
                try:
                    yield call("fork", run, checkpoint_id=cid, branch=m.LATE, status="completed")
                except ConflictError:  # made by another writer just now
                    pass
    yield from append(ctx, run, entry, branch)
    if branch == m.LATE:  # writes of a checkpoint with a child already: the thread moved on
        return
    if m.has_interrupt(writes):
        yield call("set_branch_status", run, branch=branch, status="paused")
    elif m.has_error(writes):  # a node raised: the thread stays there until it is run again
        yield call("set_branch_status", run, branch=branch, status="failed")


def delete_thread(ctx: Ctx, thread_id: str) -> Flow[None]:
    for rec in (yield from thread_runs(thread_id)):
        try:
            yield call("delete_run", rec.run_id)
        except NotFoundError:
            pass
        ctx.mem.forget(rec.run_id)

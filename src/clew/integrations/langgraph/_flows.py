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
    Where,
    all_records,
    append,
    call,
    commit,
    ensure_run,
    find_run,
    head_branch,
    locate,
    run_exists,
    thread_runs,
    verified,
)
from clew.store import BranchRecord, CheckpointRecord, JournalEntry

_LOAD_PAGE = 400
"""Checkpoints a listing loads at once, sharing the blobs they have in common."""

# -- reading -------------------------------------------------------------------


def _children(where: Where, record: CheckpointRecord, branches: Sequence[BranchRecord]) -> Flow[list[str]]:
    """The checkpoints whose parent is ``record``: on its branch or on branches forked at it."""
    cid = record.checkpoint_id
    out: list[str] = []
    for b in where.mine(branches):
        if b.head is None or b.head == cid or (b.name != record.branch and b.base != cid):
            continue
        cursor: str | None = b.head
        while cursor is not None:
            page = yield call("list_checkpoints", where.run, branch=b.name, limit=64, cursor=cursor)
            cursor = page.next_cursor
            for rec in page.items:
                if rec.parent_id == cid:
                    out.append(rec.checkpoint_id)
                if rec.parent_id == cid or rec.seq <= record.seq:
                    cursor = None
                    break
    return out


def writes_of(
    ctx: Ctx,
    where: Where,
    record: CheckpointRecord,
    branches: Sequence[BranchRecord],
    children: list[str] | None = None,
) -> Flow[list[PendingWrite]]:
    """The pending writes of one checkpoint, read from every place they can be (see module doc)."""
    run, cid = where.run, record.checkpoint_id
    entries: list[JournalEntry] = list((yield call("list_journal", run, checkpoint_id=cid)))
    for b in where.mine(branches):
        if b.head == cid or b.name == where.branch(m.LATE):
            entries.extend((yield call("list_journal", run, pending_on=b.name)))
    if children is None:
        children = yield from _children(where, record, branches)
    for child in children:
        entries.extend((yield call("list_journal", run, checkpoint_id=child)))
    return m.pending_writes(ctx.serde, cid, entries)


def get_tuple(ctx: Ctx, config: RunnableConfig) -> Flow[CheckpointTuple | None]:
    thread, ns, cid = m.parse_config(config)
    where = yield from locate(ctx, thread, ns)
    run = where.run
    if not (yield from find_run(ctx, run, thread, where.label_ns)):
        return None
    try:
        branches: list[BranchRecord] = yield call("list_branches", run)
        if cid is None:
            heads = where.heads(branches)
            if not heads:
                return None
            cid = max(heads)
        record: CheckpointRecord = yield call("get_checkpoint", run, cid)
        if not where.holds(record):  # a checkpoint of another namespace of the thread
            return None
        state = yield call("load_state", run, cid)
        writes = yield from writes_of(ctx, where, record, branches)
        yield from verified(ctx, run)
    except NotFoundError:
        return None
    ctx.mem.saw(run, cid, head_branch(where, branches, cid, record.branch))
    named = config if config.get("configurable", {}).get("checkpoint_id") else None
    return m.to_tuple(ctx.serde, thread, ns, record, state, writes, named)


def _wheres(ctx: Ctx, config: RunnableConfig | None) -> Flow[list[Where]]:
    """The namespaces a listing covers: the config's, or every one of its thread (or of all threads)."""
    conf = (config or {}).get("configurable") or {}
    if conf.get("thread_id") is not None and "checkpoint_ns" in conf:
        thread, ns, _ = m.parse_config(config)  # type: ignore[arg-type]  # not None here
        where = yield from locate(ctx, thread, ns)
        return [where] if (yield from find_run(ctx, where.run, thread, where.label_ns)) else []
    runs = yield from thread_runs(str(conf["thread_id"]) if conf.get("thread_id") is not None else None)
    out: list[Where] = []
    for r in runs:
        if "thread_id" not in r.labels:  # a rewrite's scratch run: not part of any thread
            continue
        thread, ns = r.labels["thread_id"], r.labels.get("checkpoint_ns", "")
        if ns:  # a namespace in a run of its own (a store from before namespaces were branches)
            out.append(Where(r.run_id, thread, ns, ""))
            continue
        try:
            branches: list[BranchRecord] = yield call("list_branches", r.run_id)
        except NotFoundError:
            continue
        for prefix in dict.fromkeys(m.prefix_of(b.name) for b in branches):
            out.append(Where(r.run_id, thread, prefix[:-1], prefix))
    return out


def list_checkpoints(
    ctx: Ctx,
    config: RunnableConfig | None,
    filter: Mapping[str, Any] | None,  # noqa: A002 - LangGraph's name
    before: RunnableConfig | None,
    limit: int | None,
) -> Stream:
    """Checkpoints newest first (by id), across every branch of the thread's namespaces."""
    only = ((config or {}).get("configurable") or {}).get("checkpoint_id")
    before_id = ((before or {}).get("configurable") or {}).get("checkpoint_id")
    found: list[tuple[CheckpointRecord, Where, list[BranchRecord], dict[str, CheckpointRecord]]] = []
    for where in (yield from _wheres(ctx, config)):
        try:
            branches = yield call("list_branches", where.run)
            records = yield from all_records(where.run, branches, where)
            yield from verified(ctx, where.run)
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
        for run in dict.fromkeys(where.run for _, where, _, _ in page):
            cids = [rec.checkpoint_id for rec, where, _, _ in page if where.run == run]
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
        for rec, where, branches, records in page:
            run = where.run
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
                    writes = yield from writes_of(ctx, where, rec, branches, kids)
            except NotFoundError:  # deleted while we listed
                continue
            branch = head_branch(where, branches, rec.checkpoint_id, rec.branch)
            ctx.mem.saw(run, rec.checkpoint_id, branch, explicit=False)
            yield Emit(m.to_tuple(ctx.serde, where.thread, where.ns, rec, state, writes))


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
    where = yield from locate(ctx, thread, ns)
    run = where.run
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

    def anchor(branches: Sequence[BranchRecord]) -> Flow[str]:
        """The checkpoint a namespace's first branch forks from: the root's latest, or the run's anchor."""
        root = Where(run, thread, "", "")
        for _ in range(2):
            if heads := root.heads(branches):
                return max(heads)
            if any(b.name == "main" and b.head == m.ANCHOR for b in branches):
                return m.ANCHOR
            try:
                yield call(
                    "commit",
                    run,
                    state={},
                    parent=None,
                    branch="main",
                    kind="input",
                    metadata={m.LG: {"anchor": True}},
                    checkpoint_id=m.ANCHOR,
                    status=None,
                )
                return m.ANCHOR
            except ConflictError:  # the root namespace, or another namespace, wrote main just now
                branches = yield call("list_branches", run)
        raise AssertionError("unreachable: main has a head after a failed first commit")

    def as_root(branches: Sequence[BranchRecord], lg_parent: Any) -> Flow[str]:
        heads = where.heads(branches)
        if not heads:
            if where.prefix:  # a namespace's first checkpoint: its main forks off the thread's run
                at = yield from anchor(branches)
                return (yield from fork_and_go(where.branch("main"), at, None if lg_parent is ... else lg_parent))
            main = next((b for b in branches if b.name == "main"), None)
            if main is not None and main.head == m.ANCHOR:  # subgraphs wrote first: go on from the anchor
                return (yield from go("main", m.ANCHOR, None if lg_parent is ... else lg_parent))
            return (yield from go("main", None, lg_parent))
        # A second root: kept on a branch off the latest checkpoint, so the run stays one chain.
        name = where.branch(f"root-{cid}")
        return (yield from fork_and_go(name, max(heads), None if lg_parent is ... else lg_parent))

    def place(created: bool) -> Flow[str]:
        if created and not where.prefix:
            return (yield from go("main", None, ... if parent is None else parent))
        if parent is not None and expect:
            return (yield from go(expect, parent))
        branches: list[BranchRecord] = yield call("list_branches", run)
        if parent is None:
            return (yield from as_root(branches, ...))
        if (at := head_branch(where, branches, parent)) is not None:
            return (yield from go(at, parent))
        try:
            record: CheckpointRecord = yield call("get_checkpoint", run, parent)
        except NotFoundError:  # a parent this thread never stored: keep its id, start a root
            return (yield from as_root(branches, parent))
        if not where.holds(record):  # a parent in another namespace: as good as never stored here
            return (yield from as_root(branches, parent))
        return (yield from fork_and_go(where.branch(f"fork-{cid}"), parent))

    created = yield from ensure_run(ctx, run, thread, where.label_ns)
    try:
        try:
            yield from place(created)
        except NotFoundError:
            if (yield from run_exists(run)):
                raise
            ctx.mem.forget(run)  # deleted by someone else since we saw it: start it again
            yield from place((yield from ensure_run(ctx, run, thread, where.label_ns)))
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
            yield from fork_and_go(where.branch(f"conflict-{cid}"), parent)
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
    where = yield from locate(ctx, thread, ns)
    if ctx.mem.stored(where.run, cid):
        return None
    try:
        if not (yield from find_run(ctx, where.run, thread, where.label_ns)):
            return False
        yield call("get_checkpoint", where.run, cid)
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
    where = yield from locate(ctx, thread, ns)
    run = where.run
    entry = m.writes_entry(cid, task_id, task_path, writes)
    branch = ctx.mem.head(run, cid)
    late = where.branch(m.LATE)
    if branch is None:
        if stored is False and not ctx.mem.stored(run, cid):  # not stored then, nor since by this saver
            ctx.mem.hold(run, cid, entry)  # committed with the checkpoint when it comes
            return
        branches: list[BranchRecord] = yield call("list_branches", run)
        branch = head_branch(where, branches, cid)
        if branch is not None:
            ctx.mem.saw(run, cid, branch)
        else:  # the checkpoint has a child already: its writes wait on the namespace's late-writes branch
            branch = late
            if all(b.name != late for b in branches):
                try:
                    yield call("fork", run, checkpoint_id=cid, branch=late, status="completed")
                except ConflictError:  # made by another writer just now
                    pass
    yield from append(ctx, run, entry, branch)
    if branch == late:  # writes of a checkpoint with a child already: the thread moved on
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

"""Copying and thinning threads: ``copy_thread``, ``prune`` and ``delete_for_runs``.

clew checkpoints are immutable and hash-chained, and a store deletes whole runs
only. So removing some checkpoints of a thread rebuilds its run: the kept
checkpoints (same ids, states, metadata and writes) are replayed into a new run,
each re-parented onto its nearest kept ancestor (LangGraph's own parent id stays in
metadata ``__langgraph__.parent``), so the result is again one verifiable chain.

A rewrite replays into a scratch run labelled ``rewrite_of`` first, then replaces
the original: a crash half-way leaves the data in the scratch run, never nowhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from clew.errors import ConflictError, NotFoundError
from clew.integrations.langgraph import _mapping as m
from clew.integrations.langgraph._core import Ctx, Flow, all_records, call, commit, thread_runs
from clew.store import CheckpointRecord, JournalEntry, RunRecord

STRATEGIES = ("keep_latest", "delete")


def _is_scratch(rec: RunRecord) -> bool:
    return "rewrite_of" in rec.labels


def replay(ctx: Ctx, source: str, target: str, labels: dict[str, str], keep: set[str] | None) -> Flow[int]:
    """Write the checkpoints of ``source`` in ``keep`` (all if None) into a new run ``target``."""
    src: RunRecord = yield call("get_run", source)
    records = yield from all_records(source, (yield call("list_branches", source)))
    kept = {cid for cid in records if keep is None or cid in keep}
    entries: list[JournalEntry] = yield call("list_journal", source)
    writes: dict[str, list[tuple[str, Any]]] = {}
    for e in entries:
        if e.kind in m.WRITE_KINDS and isinstance(e.data, dict) and e.data.get("checkpoint") in kept:
            writes.setdefault(e.data["checkpoint"], []).append((e.kind, e.data))
    yield call("create_run", target, agent=src.agent, labels=labels, metadata=src.metadata, status=src.status)
    heads: dict[str, str | None] = {"main": None}
    for rec in sorted((records[c] for c in kept), key=lambda r: r.seq):
        branch, parent = yield from _place(target, rec, records, kept, heads)
        meta = m.with_parent(rec.metadata, m.lg_parent_of(rec), parent)
        state = yield call("load_state", source, rec.checkpoint_id)
        yield from commit(
            ctx,
            target,
            state,
            parent=parent,
            branch=branch,
            kind=rec.kind,
            metadata=meta,
            checkpoint_id=rec.checkpoint_id,
            status=None,
        )
        heads[branch] = rec.checkpoint_id
        if rec.checkpoint_id in writes:  # pending on the new head: its children will seal them
            yield call("append_journal", target, writes[rec.checkpoint_id], branch=branch)
    return len(kept)


def _place(
    target: str,
    rec: CheckpointRecord,
    records: dict[str, CheckpointRecord],
    kept: set[str],
    heads: dict[str, str | None],
) -> Flow[tuple[str, str | None]]:
    """The branch and parent a replayed checkpoint goes on, as ``put`` would choose."""
    prefix = m.prefix_of(rec.branch)  # a subgraph namespace's branches keep its prefix
    parent = rec.parent_id
    while parent is not None and parent not in kept:
        parent = records[parent].parent_id if parent in records else None
    if parent is None:
        root = [h for n, h in heads.items() if h and h != m.ANCHOR and not m.prefix_of(n)]
        mine = [h for n, h in heads.items() if h and h != m.ANCHOR and m.prefix_of(n) == prefix]
        if not prefix and not root:
            return "main", heads.get("main")  # the first root checkpoint, after the anchor if there is one
        if not prefix:
            name, parent = f"root-{rec.checkpoint_id}", max(root)
        elif mine:
            name, parent = f"{prefix}root-{rec.checkpoint_id}", max(mine)
        else:  # a namespace's first checkpoint: its main forks off the root's latest, or off the anchor
            if not root and heads.get("main") is None:
                yield call(
                    "commit",
                    target,
                    state={},
                    parent=None,
                    branch="main",
                    kind="input",
                    metadata={m.LG: {"anchor": True}},
                    checkpoint_id=m.ANCHOR,
                    status=None,
                )
                heads["main"] = m.ANCHOR
            name, parent = prefix + "main", max(root) if root else m.ANCHOR
    else:
        on = [n for n, h in heads.items() if h == parent and m.prefix_of(n) == prefix]
        if on:
            main = prefix + "main"
            return (rec.branch if rec.branch in on else main if main in on else on[0]), parent
        name = rec.branch if rec.branch not in heads else f"{prefix}fork-{rec.checkpoint_id}"
    yield call("fork", target, checkpoint_id=parent, branch=name)
    heads[name] = parent
    return name, parent


def rewrite(ctx: Ctx, rec: RunRecord, keep: set[str]) -> Flow[None]:
    """Replace a run by one holding only the checkpoints in ``keep``."""
    scratch = f"{rec.run_id}~rewrite-{uuid.uuid4().hex[:12]}"
    yield from replay(ctx, rec.run_id, scratch, {"rewrite_of": rec.run_id}, keep)
    yield call("delete_run", rec.run_id)
    ctx.mem.forget(rec.run_id)
    yield from replay(ctx, scratch, rec.run_id, dict(rec.labels), None)
    yield call("delete_run", scratch)


def prune(ctx: Ctx, thread_ids: Sequence[str], strategy: str) -> Flow[None]:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown prune strategy {strategy!r}; use one of {STRATEGIES}")
    for thread in thread_ids:
        for rec in (yield from thread_runs(str(thread))):
            if strategy == "delete":
                yield call("delete_run", rec.run_id)
                ctx.mem.forget(rec.run_id)
                continue
            branches = yield call("list_branches", rec.run_id)
            records = yield from all_records(rec.run_id, branches)
            latest: dict[str, str] = {}  # each namespace keeps its latest checkpoint
            for cid, r in records.items():
                ns = m.ns_of(r.branch)
                if cid != m.ANCHOR and cid > latest.get(ns, ""):
                    latest[ns] = cid
            keep = {*latest.values(), *({m.ANCHOR} & records.keys())}
            if keep != records.keys():
                yield from rewrite(ctx, rec, keep)


def delete_for_runs(ctx: Ctx, run_ids: Sequence[str]) -> Flow[None]:
    """Delete the checkpoints (and their writes) that LangGraph runs ``run_ids`` made.

    LangGraph keeps the run id in checkpoint metadata, so this reads every thread's
    checkpoint metadata: an operation for maintenance, not for the hot path.
    """
    wanted = {str(r) for r in run_ids}
    if not wanted:
        return
    for rec in (yield from thread_runs(None)):
        if _is_scratch(rec):
            continue
        try:
            records = yield from all_records(rec.run_id, (yield call("list_branches", rec.run_id)))
        except NotFoundError:
            continue
        doomed = {cid for cid, r in records.items() if _run_of(r) in wanted}
        if not doomed:
            continue
        if doomed == set(records) - {m.ANCHOR}:
            yield call("delete_run", rec.run_id)
            ctx.mem.forget(rec.run_id)
        else:
            yield from rewrite(ctx, rec, set(records) - doomed)


def _run_of(rec: CheckpointRecord) -> str | None:
    run_id = m.lg_metadata(rec).get("run_id")
    return None if run_id is None else str(run_id)


def copy_thread(ctx: Ctx, source: str, target: str) -> Flow[None]:
    """Copy every namespace of a thread, checkpoints, branches and writes, to a new thread."""
    runs = [r for r in (yield from thread_runs(source)) if not _is_scratch(r)]
    for rec in runs:
        ns = rec.labels.get("checkpoint_ns", "")
        dest = m.legacy_run_id(target, ns)  # the thread's run, or a legacy run of one namespace
        try:
            yield call("get_run", dest)
        except NotFoundError:
            pass
        else:
            raise ConflictError(
                f"cannot copy thread {source!r} to {target!r}: the target already has checkpoints "
                f"(checkpoint_ns {ns!r}); delete it first (delete_thread)"
            )
        yield from replay(ctx, rec.run_id, dest, m.labels_for(target, ns), None)

"""Retention: policies that say what history to keep, applied run by run by ``Store.gc``.

A policy matches runs by agent and labels, and says:

- ``max_age``: a finished run (completed, failed, cancelled) not updated for this many
  seconds is deleted whole (running and paused runs are never deleted);
- ``keep_last``: on each branch, only the newest N checkpoints keep their content;
  older ones are *pruned*.

Never pruned: branch heads, fork points (the checkpoints other branches start from),
and, for a paused head, the checkpoints back to where its step began (a resume needs
them). A run labelled ``clew.hold`` (legal hold) is left alone entirely.

Pruning keeps the checkpoint's row and its hash, so its children still chain to it and
``verify()`` still checks everything after it; the row's content (manifest, metadata),
its journal entries and the blobs no kept checkpoint references are removed, and its
metadata becomes ``{"pruned": True, "pruned_at": ..., "kind": ...}``: the chain
records what was pruned and when. Each run is one transaction: never half a run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clew.errors import ConfigError, IntegrityError, NotFoundError
from clew.store import _manifests, _splice
from clew.store._ops import delete_run, get_run, list_runs
from clew.store._query import Context, Op, Q
from clew.store._read import manifest_from_store, manifest_to_store, run_key
from clew.store._verify import manifest_addrs

HOLD_LABEL = "clew.hold"
"""A run label that puts a run on legal hold: retention never touches it."""
PRUNED = b""
"""The manifest of a pruned checkpoint: empty, which no real manifest is."""
_FINISHED = ("completed", "failed", "cancelled")
_PAUSES = ("interrupt", "unknown_outcome", "edit")


@dataclass(frozen=True, slots=True)
class Retention:
    """A retention policy.

    Args:
        agent: the agent whose runs it covers (all agents if None).
        labels: labels a run must all have to be covered.
        max_age: delete finished runs not updated for this many seconds.
        keep_last: keep the content of only the newest N checkpoints per branch.
        keep_forks: keep fork points (the checkpoints branches start from).
    """

    agent: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    max_age: float | None = None
    keep_last: int | None = None
    keep_forks: bool = True

    def __post_init__(self) -> None:
        if self.max_age is None and self.keep_last is None:
            raise ConfigError("a Retention needs max_age (seconds) or keep_last (checkpoints per branch), or both")
        if self.keep_last is not None and self.keep_last < 1:
            raise ConfigError("keep_last must be at least 1: a branch keeps its head")
        if self.max_age is not None and self.max_age < 0:
            raise ConfigError("max_age is a number of seconds, not negative")


@dataclass(frozen=True, slots=True)
class RunGC:
    """What retention did (or, in a dry run, would do) to one run."""

    run_id: str
    deleted: bool = False
    pruned: tuple[str, ...] = ()
    blobs: int = 0
    journal_entries: int = 0


@dataclass(frozen=True, slots=True)
class GCReport:
    """What ``Store.gc`` did, run by run; nothing was written if ``dry_run``."""

    dry_run: bool
    runs: tuple[RunGC, ...] = ()
    held: tuple[str, ...] = ()

    @property
    def runs_deleted(self) -> int:
        return sum(1 for r in self.runs if r.deleted)

    @property
    def checkpoints_pruned(self) -> int:
        return sum(len(r.pruned) for r in self.runs)

    @property
    def blobs_deleted(self) -> int:
        return sum(r.blobs for r in self.runs)


def candidates(ctx: Context, policy: Retention, limit: int, cursor: str | None) -> Op[tuple[list[Any], str | None]]:
    """One page of the runs a policy covers."""
    page = yield from list_runs(
        ctx, status=None, branch_status=None, agent=policy.agent, labels=dict(policy.labels), limit=limit, cursor=cursor
    )
    return list(page.items), page.next_cursor


def gc_run(ctx: Context, run_id: str, policy: Retention, *, dry_run: bool, now: float) -> Op[RunGC | None]:
    """Apply ``policy`` to one run, in the caller's transaction; None if it is on hold."""
    run = yield from get_run(ctx, run_id)
    if run.labels.get(HOLD_LABEL):
        return None
    if policy.max_age is not None and run.status in _FINISHED and now - run.updated_at > policy.max_age:
        if dry_run:
            rk = yield from run_key(ctx, run_id)
            n = yield ctx.q("count_blobs", (rk,))
            return RunGC(run_id, deleted=True, blobs=int(n[0]))
        d = yield from delete_run(ctx, run_id)
        return RunGC(run_id, deleted=True, blobs=d.blobs, journal_entries=d.journal_entries)
    if policy.keep_last is None:
        return RunGC(run_id)
    rk = yield from run_key(ctx, run_id)
    if ctx.d.name == "postgres" and not dry_run:
        # Commits to a run lock its row first: holding it, no commit can start using a blob
        # this pass finds unreferenced and deletes. (SQLite serializes writers anyway.)
        yield Q("SELECT rk FROM clew_runs WHERE rk = %s FOR UPDATE", (rk,), "one")
    ckpts, branches, blobs = yield [
        ctx.q("all_checkpoints", (rk,), "all"),
        ctx.q("list_branches", (rk,), "all"),
        ctx.q("all_blobs", (rk,), "all"),
    ]
    by_id = {r[0]: r for r in ckpts}
    keep: set[str] = set()
    for name, head, base, *_ in branches:
        if policy.keep_forks and base is not None:
            keep.add(base)
        if head is None:
            continue
        keep.add(head)
        # a paused head resumes from the checkpoint its step began at: keep the way back to it
        row = by_id.get(head)
        exec_id = _meta(ctx, row).get("exec") if row is not None and row[4] in _PAUSES else None
        cid = head
        while exec_id is not None and cid is not None and cid in by_id:
            keep.add(cid)
            if cid == exec_id:
                break
            cid = by_id[cid][3]
        own = sorted((r for r in ckpts if r[2] == name), key=lambda r: -r[1])
        keep.update(r[0] for r in own[: policy.keep_last])
    prune = [r for r in ckpts if r[0] not in keep and bytes(r[5]) != PRUNED]
    if not prune:
        return RunGC(run_id)
    gone = {r[0] for r in prune}
    plains = {bytes(a): ctx.codec.unwrap(bytes(d)) for a, d in blobs}
    rows = {r[0]: (r[3], r[5]) for r in ckpts}
    unwrap = lambda data: manifest_from_store(ctx, data)  # noqa: E731
    whole = _manifests.resolve_all(unwrap, rows)
    referenced: set[bytes] = set()
    rewrite: list[tuple[bytes, int, str]] = []  # kept manifests stored as changes through a pruned one
    for r in ckpts:
        if r[0] in gone or bytes(r[5]) == PRUNED:
            continue
        known = whole[r[0]]
        if isinstance(known, IntegrityError):
            raise known  # nothing is pruned from a run that does not read back whole
        referenced.update(manifest_addrs(known.manifest, plains))
        if gone.intersection(_manifests.through(rows, r[0], unwrap)):
            rewrite.append((manifest_to_store(ctx, ctx.codec.dumps(known.manifest, "manifest")[0]), rk, r[0]))
    journal = yield ctx.q("all_journal", (rk,), "all")
    dead_journal = [j[0] for j in journal if j[2] in gone]
    for j in journal:  # a kept journal entry's large values live in blobs too
        if j[2] not in gone and ctx.codec.spliced(bytes(j[4])):
            referenced.update(_splice.refs(ctx.codec.unwrap(bytes(j[4]))))
    dead = [a for a in plains if a not in referenced]
    report = RunGC(run_id, pruned=tuple(sorted(gone)), blobs=len(dead), journal_entries=len(dead_journal))
    if dry_run:
        return report
    ph = "%s" if ctx.d.name == "postgres" else "?"
    writes = [
        Q(
            f"UPDATE clew_checkpoints SET manifest = {ph}, meta = {ph} WHERE rk = {ph} AND checkpoint_id = {ph}",
            [
                (PRUNED, ctx.codec.encode({"pruned": True, "pruned_at": now, "kind": r[4]}, "metadata"), rk, r[0])
                for r in prune
            ],
            "many",
        )
    ]
    if rewrite:  # stored whole now: the rows their changes built on lose their manifests
        writes.append(
            Q(f"UPDATE clew_checkpoints SET manifest = {ph} WHERE rk = {ph} AND checkpoint_id = {ph}", rewrite, "many")
        )
    if dead:
        writes.append(Q(f"DELETE FROM clew_blobs WHERE rk = {ph} AND addr = {ph}", [(rk, a) for a in dead], "many"))
    if dead_journal:
        writes.append(
            Q(f"DELETE FROM clew_journal WHERE rk = {ph} AND seq = {ph}", [(rk, s) for s in dead_journal], "many")
        )
    yield writes
    ctx.forget(run_id)
    return report


def _meta(ctx: Context, row: Sequence[Any]) -> dict[str, Any]:
    if bytes(row[5]) == PRUNED:
        return {}
    return dict(ctx.codec.decode(bytes(row[6])))


def gc_batch(ctx: Context, run_ids: Sequence[str], policy: Retention, *, dry_run: bool) -> Op[list[RunGC | None]]:
    """Apply ``policy`` to a batch of runs in one transaction."""
    now = time.time()
    out: list[RunGC | None] = []
    for rid in run_ids:
        try:
            out.append((yield from gc_run(ctx, rid, policy, dry_run=dry_run, now=now)))
        except NotFoundError:  # deleted meanwhile (by an earlier policy, or by someone else)
            out.append(RunGC(rid))
    return out


def report(dry_run: bool, results: Sequence[tuple[str, RunGC | None]]) -> GCReport:
    """The report of a gc from each covered run's result (None: held or gone)."""
    done = [r for _, r in results if r is not None and (r.deleted or r.pruned)]
    held = dict.fromkeys(rid for rid, r in results if r is None)  # once, however many policies cover it
    return GCReport(dry_run, tuple(done), tuple(held))

"""What the inspector shows, as JSON-ready dicts: the bodies of the /api/v1 answers.

Pages and API share these functions, so a page never shows what the API cannot
give. Everything is read through the public :class:`~clew.store.Store` API and
:mod:`clew.audit`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from clew.audit import branch_history, compare_branches, diff_states, to_jsonable
from clew.errors import ConfigError, NotFoundError
from clew.store import CheckpointRecord, JournalEntry, RunRecord, Store
from clew.web._diff import MISSING, changes

PAUSE_KINDS = frozenset({"interrupt", "unknown_outcome", "edit"})


def run_summary(r: RunRecord) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "agent": r.agent,
        "status": r.status,
        "labels": dict(r.labels),
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "branch": r.metadata.get("branch"),
        "error": to_jsonable(r.metadata.get("error")),
    }


def parse_time(name: str, value: str | None) -> float | None:
    """A time filter as a timestamp: seconds since the epoch, an ISO date/time, or ``1h``/``2d``/``30m`` ago."""
    if not value:
        return None
    v = value.strip()
    units = {"m": 60, "h": 3600, "d": 86400}
    try:
        if v[-1:] in units and v[:-1].replace(".", "", 1).isdigit():
            return dt.datetime.now(dt.UTC).timestamp() - float(v[:-1]) * units[v[-1]]
        if v.replace(".", "", 1).isdigit():
            return float(v)
        when = dt.datetime.fromisoformat(v)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: use an ISO date (2026-11-30T08:00), seconds, or 30m, 2h, 1d") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def parse_labels(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        if not v:
            continue
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise ConfigError(f"label filter {v!r}: write it as key=value")
        out[key] = val
    return out


def list_runs(
    store: Store,
    *,
    agent: str | None = None,
    status: str | None = None,
    branch_status: str | None = None,
    labels: Mapping[str, str] | None = None,
    since: float | None = None,
    until: float | None = None,
    q: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """One page of runs, newest first. ``q`` is an id prefix; ``since`` and ``until`` bound the creation time.

    A ``q`` that is a whole run id gives that run alone, at once: a prefix is matched by
    reading runs newest first, which on a big store takes a while when few match.
    """
    if q and cursor is None:
        try:
            exact = store.get_run(q)
        except NotFoundError:
            exact = None
        if exact is not None:
            return {"items": [run_summary(exact)], "next_cursor": None}
    page = store.list_runs(
        status=status or None,
        branch_status=branch_status or None,
        agent=agent or None,
        labels=labels or None,
        prefix=q or None,
        created_after=since,
        created_before=until,
        limit=max(1, min(limit, 500)),
        cursor=cursor,
    )
    return {"items": [run_summary(r) for r in page.items], "next_cursor": page.next_cursor}


def ckpt_summary(c: CheckpointRecord) -> dict[str, Any]:
    m = c.metadata
    return {
        "checkpoint_id": c.checkpoint_id,
        "run_id": c.run_id,
        "seq": c.seq,
        "branch": c.branch,
        "parent_id": c.parent_id,
        "kind": c.kind,
        "step": m.get("step"),
        "next": m.get("next"),
        "duration_ms": m.get("duration_ms"),
        "attempts": m.get("attempts"),
        "actor": m.get("actor"),
        "reason": m.get("reason"),
        "forked_from": m.get("forked_from"),
        "interrupt": to_jsonable(m.get("interrupt")),
        "created_at": c.created_at,
        "hash": c.hash,
        "metadata": to_jsonable(m),
    }


def events(entries: list[JournalEntry]) -> list[dict[str, Any]]:
    """Journal entries as timeline events: each tool call's intent and outcome joined in one."""
    out: list[dict[str, Any]] = []
    calls: dict[tuple[str, Any], dict[str, Any]] = {}
    for e in entries:
        data = e.data if isinstance(e.data, Mapping) else {"value": e.data}
        if e.kind in ("call.intent", "call.outcome"):
            key = (str(data.get("key")), data.get("attempt"))
            ev = calls.get(key)
            if ev is None:
                ev = {
                    "kind": "call",
                    "name": data.get("name"),
                    "key": data.get("key"),
                    "attempt": data.get("attempt"),
                    "idempotent": data.get("idempotent"),
                    "outcome": "unknown",
                    "seq": e.seq,
                    "created_at": e.created_at,
                }
                calls[key] = ev
                out.append(ev)
            if e.kind == "call.intent":
                ev["idempotent"] = data.get("idempotent")
                ev["idempotency_key"] = data.get("idempotency_key")
            else:
                if "idempotency_key" in data:  # an idempotent call recorded as one entry
                    ev["idempotent"] = data.get("idempotent")
                    ev["idempotency_key"] = data.get("idempotency_key")
                ev["outcome"] = "ok" if data.get("ok") else "error"
                ev["result"] = to_jsonable(data.get("result"))
                ev["error"] = to_jsonable(data.get("error"))
                ev["duration_ms"] = data.get("duration_ms")
                ev["how"] = "reconciled" if data.get("reconciled") else "resolved" if data.get("resolved") else None
            continue
        out.append({"kind": e.kind, "seq": e.seq, "created_at": e.created_at, "data": to_jsonable(data)})
    return out


def run_detail(store: Store, run_id: str) -> dict[str, Any]:
    """A run, its branches with status and head, every checkpoint of every branch and the timeline."""
    run = store.get_run(run_id)
    branches = store.list_branches(run_id)
    ckpts: dict[str, CheckpointRecord] = {}
    for br in branches:
        for c in branch_history(store, run_id, br.name):
            ckpts.setdefault(c.checkpoint_id, c)
    journal: dict[str | None, list[JournalEntry]] = {}
    pending: dict[str, list[JournalEntry]] = {}
    for e in store.list_journal(run_id):
        if e.checkpoint_id is None:
            pending.setdefault(e.branch, []).append(e)
        else:
            journal.setdefault(e.checkpoint_id, []).append(e)
    ordered = sorted(ckpts.values(), key=lambda c: c.seq)
    out_branches = []
    for br in branches:
        head = ckpts.get(br.head) if br.head else None
        out_branches.append(
            {
                "name": br.name,
                "head": br.head,
                "base": br.base,
                "created_at": br.created_at,
                "status": br.status,
                "error": to_jsonable(br.error),
                "pause": to_jsonable(head.metadata.get("interrupt"))
                if head and br.status == "paused" and head.kind in PAUSE_KINDS
                else None,
                "lease_owner": br.lease_owner,
                "lease_expires_at": br.lease_expires_at,
                "epoch": br.epoch,
                "priority": br.priority,
                "updated_at": br.updated_at,
                "pending": events(pending.get(br.name, [])),
            }
        )
    return {
        "run": run_summary(run),
        "metadata": to_jsonable(run.metadata),
        "branches": out_branches,
        "checkpoints": [{**ckpt_summary(c), "events": events(journal.get(c.checkpoint_id, []))} for c in ordered],
    }


def get_checkpoint(store: Store, checkpoint_id: str, run_id: str | None = None) -> CheckpointRecord:
    if run_id:
        return store.get_checkpoint(run_id, checkpoint_id)
    return store.find_checkpoint(checkpoint_id)


def checkpoint_detail(store: Store, checkpoint_id: str, run_id: str | None = None) -> dict[str, Any]:
    """A checkpoint: metadata, state, the diff against its parent, the step's journal and verify status."""
    c = get_checkpoint(store, checkpoint_id, run_id)
    state = store.load_state(c.run_id, c.checkpoint_id)
    parent_state = store.load_state(c.run_id, c.parent_id) if c.parent_id else {}
    return {
        "checkpoint": ckpt_summary(c),
        "state": to_jsonable(state),
        "diff_parent": diff_body(parent_state, state),
        "events": events(store.list_journal(c.run_id, checkpoint_id=c.checkpoint_id)),
        "verify": verify_chain(store, c),
    }


def verify_chain(store: Store, c: CheckpointRecord) -> dict[str, Any]:
    """``store.verify`` of the run, with the problems found on this checkpoint's chain."""
    report = store.verify(c.run_id)
    chain = {x.checkpoint_id for x in branch_history(store, c.run_id, c.branch) if x.seq <= c.seq}
    problems = [{"kind": p.kind, "id": p.ident, "message": p.message} for p in report.problems]
    on_chain = [p for p in problems if p["kind"] != "checkpoint" or p["id"] in chain]
    return {
        "ok": not on_chain,
        "run_ok": report.ok,
        "checkpoints": report.checkpoints,
        "blobs": report.blobs,
        "journal_entries": report.journal_entries,
        "problems": on_chain,
    }


def diff_body(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    fields = diff_states(before, after)
    return {
        "fields": [{"field": d.field, "change": d.change} for d in fields],
        "changes": [
            ch
            for d in fields
            for ch in changes(
                d.field,
                to_jsonable(before.get(d.field, None)) if d.field in before else MISSING,
                to_jsonable(after.get(d.field, None)) if d.field in after else MISSING,
            )
        ],
    }


def diff(store: Store, checkpoint_id: str, against: str | None, run_id: str | None = None) -> dict[str, Any]:
    """What changed from ``against`` (its parent by default) to ``checkpoint_id``."""
    c = get_checkpoint(store, checkpoint_id, run_id)
    other = against or c.parent_id
    before = store.load_state(c.run_id, other) if other else {}
    if other:
        get_checkpoint(store, other, c.run_id)
    after = store.load_state(c.run_id, c.checkpoint_id)
    return {"run_id": c.run_id, "from": other, "to": c.checkpoint_id, **diff_body(before, after)}


def side(store: Store, run_id: str, branch: str) -> dict[str, Any]:
    """One side of a comparison: a branch's steps, calls, outcome and duration."""
    br = store.get_branch(run_id, branch)
    hist = list(reversed(branch_history(store, run_id, branch)))
    steps = []
    for c in hist:
        steps.append({**ckpt_summary(c), "events": events(store.list_journal(run_id, checkpoint_id=c.checkpoint_id))})
    return {
        "run_id": run_id,
        "branch": branch,
        "status": br.status,
        "head": br.head,
        "steps": steps,
        "duration_ms": round(sum(float(s["duration_ms"] or 0) for s in steps), 3),
        "elapsed_s": round(hist[-1].created_at - hist[0].created_at, 3) if hist else 0.0,
    }


def compare(store: Store, a_run: str, a: str, b_run: str, b: str) -> dict[str, Any]:
    """Two branches, of one run or of two, side by side: steps, calls, outcome and state differences."""
    if a_run == b_run:
        cmp = compare_branches(store, a_run, a, b)
        sa, sb, fork_point = cmp.a_state, cmp.b_state, cmp.fork_point
    else:
        ha, hb = store.get_branch(a_run, a).head, store.get_branch(b_run, b).head
        sa = store.load_state(a_run, ha) if ha else {}
        sb = store.load_state(b_run, hb) if hb else {}
        fork_point = None
    return {
        "a": side(store, a_run, a),
        "b": side(store, b_run, b),
        "fork_point": fork_point,
        "state_a": to_jsonable(sa),
        "state_b": to_jsonable(sb),
        **diff_body(sa, sb),
    }

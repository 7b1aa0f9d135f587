"""Audit: what changed between checkpoints, how branches differ, the whole trail as JSON Lines.

Built on the public :class:`~clew.store.Store` API only. ``store.verify(run_id)``
re-hashes a run; these helpers explain it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from clew.codec import Redacted
from clew.store import CheckpointRecord, Store

__all__ = [
    "BranchComparison",
    "FieldDiff",
    "branch_history",
    "compare_branches",
    "diff_states",
    "export_run",
    "to_jsonable",
]

_MISSING = object()


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One top-level field that differs between two states."""

    field: str
    before: Any
    after: Any

    @property
    def change(self) -> str:
        if self.before is _MISSING:
            return "added"
        if self.after is _MISSING:
            return "removed"
        if (
            isinstance(self.before, list)
            and isinstance(self.after, list)
            and self.after[: len(self.before)] == self.before
        ):
            return f"appended {len(self.after) - len(self.before)}"
        return "changed"


def diff_states(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[FieldDiff]:
    """The top-level fields that differ, in name order."""
    out = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name, _MISSING), after.get(name, _MISSING)
        if a is _MISSING or b is _MISSING or a != b:
            out.append(FieldDiff(name, a, b))
    return out


@dataclass(frozen=True, slots=True)
class BranchComparison:
    """Two branches of a run: where they part and how their heads differ."""

    run_id: str
    a: str
    b: str
    fork_point: str | None
    a_head: CheckpointRecord | None
    b_head: CheckpointRecord | None
    a_state: Mapping[str, Any]
    b_state: Mapping[str, Any]
    diffs: list[FieldDiff]


def branch_history(store: Store, run_id: str, branch: str) -> list[CheckpointRecord]:
    """Every checkpoint of a branch's line, newest first (through its fork point)."""
    out: list[CheckpointRecord] = []
    cursor = None
    while True:
        page = store.list_checkpoints(run_id, branch=branch, limit=500, cursor=cursor)
        out.extend(page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def compare_branches(store: Store, run_id: str, a: str, b: str) -> BranchComparison:
    """Compare the heads of branches ``a`` and ``b`` and find their fork point."""
    ha, hb = branch_history(store, run_id, a), branch_history(store, run_id, b)
    in_a = {c.checkpoint_id for c in ha}
    fork_point = next((c.checkpoint_id for c in hb if c.checkpoint_id in in_a), None)
    sa = store.load_state(run_id, ha[0].checkpoint_id) if ha else {}
    sb = store.load_state(run_id, hb[0].checkpoint_id) if hb else {}
    return BranchComparison(
        run_id, a, b, fork_point, ha[0] if ha else None, hb[0] if hb else None, sa, sb, diff_states(sa, sb)
    )


def to_jsonable(value: Any) -> Any:
    """A JSON-friendly rendering of a decoded value (for export and display).

    NaN and the infinities, which JSON cannot hold, become the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"``.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Redacted):  # masked at write time: say so, never show a digest as data
        return {"$redacted": value.kind, "digest": value.digest.hex()[:16]}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return to_jsonable(dump())
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is not None:
        return {name: to_jsonable(getattr(value, name)) for name in fields}
    return str(value)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def _line(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, allow_nan=False)


def export_run(store: Store, run_id: str, *, states: bool = True) -> Iterator[str]:
    """The run as JSON Lines: the run, its branches, every checkpoint (with its state
    and journal), oldest first, and the verification result last. Times are ISO 8601
    in UTC; every line is strict JSON."""
    run = store.get_run(run_id)
    yield _line(
        {
            "type": "run",
            "run_id": run.run_id,
            "agent": run.agent,
            "status": run.status,
            "labels": dict(run.labels),
            "metadata": to_jsonable(run.metadata),
            "created_at": _iso(run.created_at),
        }
    )
    seen: dict[str, CheckpointRecord] = {}
    for br in store.list_branches(run_id):
        yield _line({"type": "branch", "name": br.name, "head": br.head, "base": br.base})
        for c in branch_history(store, run_id, br.name):
            seen.setdefault(c.checkpoint_id, c)
    for c in sorted(seen.values(), key=lambda c: c.seq):
        rec: dict[str, Any] = {
            "type": "checkpoint",
            "checkpoint_id": c.checkpoint_id,
            "seq": c.seq,
            "branch": c.branch,
            "parent_id": c.parent_id,
            "kind": c.kind,
            "hash": c.hash,
            "created_at": _iso(c.created_at),
            "metadata": to_jsonable(c.metadata),
            "journal": [
                {
                    "seq": j.seq,
                    "kind": j.kind,
                    "data": to_jsonable(j.data),
                    "hash": j.hash,
                    "created_at": _iso(j.created_at),
                }
                for j in store.list_journal(run_id, checkpoint_id=c.checkpoint_id)
            ],
        }
        if states:
            rec["state"] = to_jsonable(store.load_state(run_id, c.checkpoint_id))
        yield _line(rec)
    report = store.verify(run_id)
    yield _line(
        {
            "type": "verify",
            "ok": report.ok,
            "checkpoints": report.checkpoints,
            "blobs": report.blobs,
            "journal_entries": report.journal_entries,
            "problems": [{"kind": p.kind, "id": p.ident, "message": p.message} for p in report.problems],
        }
    )

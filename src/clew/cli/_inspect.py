"""Commands that look: runs, history, show, branches, compare, verify, export."""

from __future__ import annotations

import difflib
import sys
from typing import Annotated, Any

import typer

from clew import errors
from clew.audit import compare_branches, export_run
from clew.cli._common import (
    DbOpt,
    JsonOpt,
    StoreOpt,
    WideOpt,
    dumps,
    emit,
    err,
    iso,
    local,
    open_store,
    parse_time,
    record,
    resolve_checkpoint,
    resolve_run,
    say,
    show_table,
    table,
    write,
)


def runs(
    store: StoreOpt = None,
    db: DbOpt = None,
    status: Annotated[
        str | None, typer.Option(help="Only runs in this status: running, paused, completed, failed, cancelled.")
    ] = None,
    branch_status: Annotated[
        str | None, typer.Option(help="Only runs with a branch in this status (paused: all waiting for a person).")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Only runs of the agent with this name.")] = None,
    label: Annotated[
        list[str] | None, typer.Option(help="Only runs with this label, as KEY=VALUE. Repeatable (all must match).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only runs created since: an ISO 8601 time or an age (30m, 2h, 7d).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only runs created before: an ISO 8601 time or an age.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Only runs whose id starts with this.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs (a page).")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Start after the page that printed this cursor.")] = None,
    wide: WideOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first, a page at a time."""
    labels = {}
    for item in label or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise errors.ConfigError(f"--label {item!r}: give KEY=VALUE")
        labels[key] = value
    with open_store(store, db, read_only=True) as s:
        page = s.list_runs(
            status=status,
            branch_status=branch_status,
            agent=agent,
            labels=labels or None,
            limit=limit,
            cursor=cursor,
            prefix=prefix,
            created_after=parse_time("--since", since),
            created_before=parse_time("--until", until),
        )
    if as_json:
        emit({"runs": [record(r) for r in page.items], "next_cursor": page.next_cursor})
        return
    rows = [
        (r.run_id, r.agent, r.status, local(r.updated_at), " ".join(f"{k}={v}" for k, v in r.labels.items()))
        for r in page.items
    ]
    show_table(table(("run", "agent", "status", "updated", "labels"), rows, ids=("run",)), wide)
    if page.next_cursor:
        err.print(f"more: --cursor {page.next_cursor}")


def history(
    run_id: str,
    store: StoreOpt = None,
    db: DbOpt = None,
    branch: Annotated[str, typer.Option(help="The branch to walk.")] = "main",
    limit: Annotated[int, typer.Option(help="At most this many checkpoints.")] = 1000,
    wide: WideOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """A branch's checkpoints, newest first."""
    with open_store(store, db, read_only=True) as s:
        run_id = resolve_run(s, run_id)
        page = s.list_checkpoints(run_id, branch=branch, limit=limit)
    if as_json:
        emit([record(c) for c in page.items])
        return
    rows = [
        (c.checkpoint_id, c.seq, c.branch, c.kind, c.metadata.get("step"), c.metadata.get("next"), local(c.created_at))
        for c in page.items
    ]
    columns = ("checkpoint", "seq", "branch", "kind", "step", "next", "at")
    show_table(table(columns, rows, ids=("checkpoint",), title=f"{run_id} @ {branch}"), wide)


def show(
    run_id: str,
    checkpoint_id: Annotated[
        str | None, typer.Argument(help="A checkpoint id or prefix (the branch head by default).")
    ] = None,
    store: StoreOpt = None,
    db: DbOpt = None,
    branch: Annotated[str, typer.Option(help="The branch whose head to show.")] = "main",
    as_json: JsonOpt = False,
) -> None:
    """The state at a checkpoint and its journal."""
    with open_store(store, db, read_only=True) as s:
        run_id = resolve_run(s, run_id)
        if checkpoint_id is None:
            cid = s.get_branch(run_id, branch).head
            if cid is None:
                raise errors.NotFoundError(f"branch {branch!r} of run {run_id!r} has no checkpoint")
        else:
            cid = resolve_checkpoint(s, run_id, checkpoint_id)
        c = s.get_checkpoint(run_id, cid)
        state = s.load_state(run_id, cid)
        journal = s.list_journal(run_id, checkpoint_id=cid)
    data = {
        **record(c),
        "state": state,
        "journal": [{"seq": j.seq, "kind": j.kind, "data": j.data, "created_at": iso(j.created_at)} for j in journal],
    }
    if as_json:
        emit(data)
        return
    say(f"{c.kind} checkpoint {c.checkpoint_id} (seq {c.seq}, branch {c.branch}, {local(c.created_at)})")
    write(dumps(state, indent=2))
    for j in journal:
        line = dumps(j.data)
        say(f"  journal #{j.seq} {j.kind}: {line if len(line) <= 300 else line[:300] + '...'}")


def branches(
    run_id: str, store: StoreOpt = None, db: DbOpt = None, wide: WideOpt = False, as_json: JsonOpt = False
) -> None:
    """A run's branches, oldest first: status, queue priority, head, lease and error."""
    with open_store(store, db, read_only=True) as s:
        run_id = resolve_run(s, run_id)
        found = s.list_branches(run_id)
    if as_json:
        emit([record(b) for b in found])
        return
    rows = [
        (
            b.name,
            b.status,
            b.priority,
            b.head,
            b.base,
            f"{b.lease_owner} until {local(b.lease_expires_at)}" if b.lease_owner else "",
            f"{b.error.get('type')}: {b.error.get('message')}" if b.error else "",
        )
        for b in found
    ]
    columns = ("branch", "status", "priority", "head", "from", "lease", "error")
    show_table(table(columns, rows, ids=("head", "from"), title=run_id), wide)


def list_changes(before: list[Any], after: list[Any]) -> tuple[list[Any], list[Any]]:
    """The items removed from ``before`` and added in ``after``, in order."""
    a, b = [dumps(x) for x in before], [dumps(x) for x in after]
    removed, added = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            removed.extend(before[i1:i2])
        if op in ("replace", "insert"):
            added.extend(after[j1:j2])
    return removed, added


def compare(
    run_id: str,
    a: str,
    b: str,
    store: StoreOpt = None,
    db: DbOpt = None,
    wide: WideOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Compare the heads of two branches of a run.

    Lists show the items one branch removed and the other added."""
    with open_store(store, db, read_only=True) as s:
        run_id = resolve_run(s, run_id)
        cmp = compare_branches(s, run_id, a, b)
    diffs = []
    for d in cmp.diffs:
        entry: dict[str, Any] = {"field": d.field, "change": d.change.split()[0]}
        if isinstance(d.before, list) and isinstance(d.after, list):
            removed, added = list_changes(d.before, d.after)
            entry.update(change="list", removed=removed, added=added)
        else:
            entry.update({a: None if entry["change"] == "added" else d.before})
            entry.update({b: None if entry["change"] == "removed" else d.after})
        diffs.append(entry)
    if as_json:
        emit({"run_id": run_id, "a": a, "b": b, "fork_point": cmp.fork_point, "diffs": diffs})
        return
    rows = []
    for e in diffs:
        if e["change"] == "list":
            rows.append(
                (
                    e["field"],
                    "\n".join("- " + dumps(x) for x in e["removed"]),
                    "\n".join("+ " + dumps(x) for x in e["added"]),
                )
            )
        else:
            rows.append((e["field"], dumps(e.get(a)), dumps(e.get(b))))
    title = f"{run_id}: {a} vs {b} (fork point {cmp.fork_point})"
    show_table(table(("field", a, b), rows, title=title), wide)


def verify(run_id: str, store: StoreOpt = None, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Re-hash every blob, checkpoint and journal entry of a run. Exit 5 on a problem."""
    with open_store(store, db, read_only=True) as s:
        run_id = resolve_run(s, run_id)
        report = s.verify(run_id)
    if as_json:
        emit(
            {
                "run_id": run_id,
                "ok": report.ok,
                "checkpoints": report.checkpoints,
                "blobs": report.blobs,
                "journal_entries": report.journal_entries,
                "problems": [{"kind": p.kind, "id": p.ident, "message": p.message} for p in report.problems],
            }
        )
    else:
        say(
            f"{run_id}: {'OK' if report.ok else 'FAILED'} ({report.checkpoints} checkpoints, "
            f"{report.blobs} blobs, {report.journal_entries} journal entries)"
        )
        for p in report.problems:
            say(f"  {p.kind} {p.ident}: {p.message}")
    if not report.ok:
        raise typer.Exit(5)


def export(
    run_id: str,
    store: StoreOpt = None,
    db: DbOpt = None,
    no_states: Annotated[bool, typer.Option("--no-states", help="Leave states out.")] = False,
) -> None:
    """The run's audit trail as JSON Lines on stdout."""
    with open_store(store, db, read_only=True) as s:
        run_id = resolve_run(s, run_id)
        for line in export_run(s, run_id, states=not no_states):
            sys.stdout.write(line + "\n")

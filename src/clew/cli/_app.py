"""Commands. Each is a few lines over the library."""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import clew
from clew import errors
from clew.audit import compare_branches, export_run, to_jsonable

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Inspect and operate durable agent runs.")
out = Console()
err = Console(stderr=True)

# Modules whose classes stored states often hold; imported when installed, so that
# their values decode (clew never imports a module because a blob names it).
KNOWN_MODULES = ("clew.integrations.langchain_types",)


@app.callback()
def _setup(
    imports: Annotated[
        list[str] | None,
        typer.Option(
            "--import",
            envvar="CLEW_IMPORT",
            help="Import this module first, so the classes stored states hold can be decoded. Repeatable.",
        ),
    ] = None,
) -> None:
    for name in KNOWN_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for name in imports or ():
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise errors.ConfigError(f"--import {name}: {exc}") from exc


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (errors.NotFoundError, 3),
    (errors.ConflictError, 4),
    (errors.LeaseError, 4),
    (errors.IntegrityError, 5),
    (errors.StoreUnavailableError, 6),
    (errors.ConfigError, 2),
    (errors.ClewError, 1),
]

StoreOpt = Annotated[
    str | None, typer.Option("--store", "-s", envvar="CLEW_STORE", help="Store URL (default sqlite:///clew.db).")
]
DbOpt = Annotated[str | None, typer.Option("--db", help="A SQLite file (shortcut for --store sqlite:///PATH).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _open(store: str | None, db: str | None) -> clew.Store:
    if db:
        return clew.open(f"sqlite:///{db}")
    return clew.open(store or "sqlite:///clew.db")


def _emit(data: Any) -> None:
    out.print_json(json.dumps(to_jsonable(data)))


@app.command()
def demo() -> None:
    """Run the support-agent demo: a crash, a resume, a review and a fork, on SQLite."""
    candidates = [
        Path.cwd() / "examples" / "support_agent.py",
        Path(__file__).resolve().parents[3] / "examples" / "support_agent.py",
    ]
    script = next((p for p in candidates if p.exists()), None)
    if script is None:
        raise errors.ConfigError("examples/support_agent.py not found: run `clew demo` from a clew source checkout")
    sys.argv = [str(script)]
    runpy.run_path(str(script), run_name="__main__")


@app.command()
def runs(
    store: StoreOpt = None,
    db: DbOpt = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only runs of this agent.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    with _open(store, db) as s:
        page = s.list_runs(status=status, agent=agent, limit=limit)
    if as_json:
        _emit(
            [
                {
                    "run_id": r.run_id,
                    "agent": r.agent,
                    "status": r.status,
                    "labels": r.labels,
                    "created_at": r.created_at,
                    "updated_at": r.updated_at,
                }
                for r in page.items
            ]
        )
        return
    table = Table("agent", "status", "updated", "run")
    for r in page.items:
        table.add_row(r.agent, r.status, _when(r.updated_at), r.run_id)
    out.print(table)


@app.command()
def history(
    run_id: str, store: StoreOpt = None, db: DbOpt = None, branch: str = "main", as_json: JsonOpt = False
) -> None:
    """A branch's checkpoints, newest first."""
    with _open(store, db) as s:
        page = s.list_checkpoints(run_id, branch=branch, limit=1000)
    if as_json:
        _emit(
            [
                {
                    "checkpoint_id": c.checkpoint_id,
                    "seq": c.seq,
                    "branch": c.branch,
                    "kind": c.kind,
                    "parent_id": c.parent_id,
                    "metadata": c.metadata,
                    "hash": c.hash,
                }
                for c in page.items
            ]
        )
        return
    table = Table("seq", "branch", "kind", "step", "next", "checkpoint", title=f"{run_id} @ {branch}")
    for c in page.items:
        table.add_row(
            str(c.seq),
            c.branch,
            c.kind,
            _cell(c.metadata.get("step")),
            _cell(c.metadata.get("next")),
            c.checkpoint_id,
        )
    out.print(table)


@app.command()
def show(
    run_id: str,
    checkpoint_id: Annotated[str | None, typer.Argument()] = None,
    store: StoreOpt = None,
    db: DbOpt = None,
    branch: str = "main",
    as_json: JsonOpt = False,
) -> None:
    """The state at a checkpoint (the branch head by default) and its journal."""
    with _open(store, db) as s:
        cid = checkpoint_id or s.get_branch(run_id, branch).head
        if cid is None:
            raise errors.NotFoundError(f"branch {branch!r} of run {run_id!r} has no checkpoint")
        c = s.get_checkpoint(run_id, cid)
        state = s.load_state(run_id, cid)
        journal = s.list_journal(run_id, checkpoint_id=cid)
    data = {
        "checkpoint_id": c.checkpoint_id,
        "kind": c.kind,
        "metadata": c.metadata,
        "state": state,
        "journal": [{"seq": j.seq, "kind": j.kind, "data": j.data} for j in journal],
    }
    if as_json:
        _emit(data)
        return
    out.print(f"[bold]{c.kind}[/] checkpoint {c.checkpoint_id} (seq {c.seq}, branch {c.branch})")
    out.print_json(json.dumps(to_jsonable(data["state"])))
    for j in journal:
        out.print(f"  journal #{j.seq} {j.kind}: {json.dumps(to_jsonable(j.data))[:200]}")


@app.command()
def compare(run_id: str, a: str, b: str, store: StoreOpt = None, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Compare the heads of two branches of a run."""
    with _open(store, db) as s:
        cmp = compare_branches(s, run_id, a, b)
    if as_json:
        _emit({"fork_point": cmp.fork_point, "diffs": [{"field": d.field, a: d.before, b: d.after} for d in cmp.diffs]})
        return
    table = Table("field", a, b, title=f"{run_id}: {a} vs {b} (fork point {cmp.fork_point})")
    for d in cmp.diffs:
        table.add_row(d.field, str(d.before), str(d.after))
    out.print(table)


@app.command()
def verify(run_id: str, store: StoreOpt = None, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Re-hash every blob, checkpoint and journal entry of a run. Exit 5 on a problem."""
    with _open(store, db) as s:
        report = s.verify(run_id)
    if as_json:
        _emit(
            {
                "ok": report.ok,
                "checkpoints": report.checkpoints,
                "blobs": report.blobs,
                "journal_entries": report.journal_entries,
                "problems": [{"kind": p.kind, "id": p.ident, "message": p.message} for p in report.problems],
            }
        )
    else:
        out.print(
            f"{run_id}: {'OK' if report.ok else 'FAILED'} ({report.checkpoints} checkpoints, "
            f"{report.blobs} blobs, {report.journal_entries} journal entries)"
        )
        for p in report.problems:
            out.print(f"  {p.kind} {p.ident}: {p.message}")
    if not report.ok:
        raise typer.Exit(5)


@app.command()
def export(
    run_id: str,
    store: StoreOpt = None,
    db: DbOpt = None,
    no_states: Annotated[bool, typer.Option("--no-states", help="Leave states out.")] = False,
) -> None:
    """The run's audit trail as JSON Lines on stdout."""
    with _open(store, db) as s:
        for line in export_run(s, run_id, states=not no_states):
            sys.stdout.write(line + "\n")


@app.command()
def ui(
    store: Annotated[
        str | None,
        typer.Option("--store", "-s", envvar=["CLEW_URL", "CLEW_STORE"], help="Store URL (default sqlite:///clew.db)."),
    ] = None,
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind; beyond 127.0.0.1 a token is required.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    token: Annotated[
        str | None, typer.Option(envvar="CLEW_UI_TOKEN", help="Access token (made and printed if needed).")
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(help="module:attr (or file.py:attr) of the Agent, or a function of the store making it."),
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Turn every action off.")] = False,
    run_id: Annotated[str | None, typer.Option("--run", help="Print the URL of this run's page.")] = None,
) -> None:
    """Serve the web inspector (needs the ui extra): runs, checkpoint trees, diffs, comparisons and actions."""
    from urllib.parse import quote

    from clew.web import load_agent, serve

    found = load_agent(agent) if agent else None
    with _open(store, db) as s:
        serve(
            s,
            host=host,
            port=port,
            token=token,
            read_only=read_only,
            agent=found,
            open_path=f"/runs/{quote(run_id, safe='')}" if run_id else "/",
            echo=lambda line: out.print(line, highlight=False, soft_wrap=True),
        )


def _when(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app, mapping clew errors to one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("CLEW_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    try:
        rc = app(args, standalone_mode=False)
    except errors.ClewError as exc:
        if debug:
            raise
        code = next(c for t, c in EXIT_CODES if isinstance(exc, t))
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Exception as exc:
        # Usage errors (a ClickException, whichever click Typer ships) show themselves.
        show, status = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(status, int):
            show()
            return status
        raise
    return rc if isinstance(rc, int) else 0

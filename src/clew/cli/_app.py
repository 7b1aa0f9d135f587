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
KNOWN_MODULES = ("langchain_core.messages",)


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


def _codec() -> clew.Codec | None:
    """A codec with the keyring named by ``CLEW_KEYS`` (id=base64 items) or ``CLEW_KEY_FILE``."""
    from clew.codec import Keyring

    if os.environ.get("CLEW_KEYS"):
        return clew.Codec(keyring=Keyring.from_env("CLEW_KEYS"))
    if os.environ.get("CLEW_KEY_FILE"):
        return clew.Codec(keyring=Keyring.from_file(os.environ["CLEW_KEY_FILE"]))
    return None


def _open(store: str | None, db: str | None) -> clew.Store:
    url = f"sqlite:///{db}" if db else (store or "sqlite:///clew.db")
    return clew.open(url, codec=_codec())


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


keys_app = typer.Typer(no_args_is_help=True, help="Encryption keys: make one, rotate a store onto a new one.")
app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def keys_generate(key_id: Annotated[str, typer.Option("--id", help="The new key's id.")] = "k1") -> None:
    """Print a new random AES-256 key as id=base64, for CLEW_KEYS or a key file."""
    import base64

    from clew.codec import Keyring

    Keyring({key_id: bytes(32)})  # checks the id
    sys.stdout.write(f"{key_id}={base64.b64encode(Keyring.generate()).decode()}\n")


@keys_app.command("rotate")
def keys_rotate(store: StoreOpt = None, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Re-encrypt every run under the keyring's current key, one run per transaction.

    The keyring (CLEW_KEYS or CLEW_KEY_FILE) must hold the retired keys and the new
    current one (the last listed, unless the keyring says otherwise). Interrupted, it
    is finished by running it again.
    """
    from rich.progress import Progress

    with _open(store, db) as s:
        if s.codec.keyring is None:
            raise errors.ConfigError("no keyring: set CLEW_KEYS (id=base64key,...) or CLEW_KEY_FILE")
        runs: list[str] = []
        cursor = None
        while True:
            page = s.list_runs(limit=500, cursor=cursor)
            runs.extend(r.run_id for r in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        rows = 0
        with Progress(console=err, transient=True, disable=as_json) as bar:
            task = bar.add_task(f"re-encrypting under {s.codec.keyring.current!r}", total=len(runs))
            for run_id in runs:
                rows += s.rekey(run_id)
                bar.advance(task)
    if as_json:
        _emit({"runs": len(runs), "rows": rows, "current": s.codec.keyring.current})
    else:
        out.print(f"{len(runs)} runs checked, {rows} rows re-encrypted under key {s.codec.keyring.current!r}")


@app.command()
def erase(
    run_id: Annotated[str | None, typer.Argument(help="The run to erase.")] = None,
    subject: Annotated[str | None, typer.Option(help="Erase every run of this data subject instead.")] = None,
    store: StoreOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a run, or all runs of a data subject, with everything they stored."""
    with _open(store, db) as s:
        report = s.erase(run_id, subject=subject)
    data = {
        "run_ids": list(report.run_ids),
        "checkpoints": report.checkpoints,
        "blobs": report.blobs,
        "journal_entries": report.journal_entries,
        "branches": report.branches,
        "scrubbed": report.scrubbed,
    }
    if as_json:
        _emit(data)
        return
    out.print(
        f"erased {len(report.run_ids)} runs ({report.checkpoints} checkpoints, {report.blobs} blobs, "
        f"{report.journal_entries} journal entries)"
        + ("" if report.scrubbed else "; freed space not overwritten yet: see docs/privacy.md (VACUUM)")
    )


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str) -> float:
    unit = text[-1:].lower()
    try:
        return float(text[:-1]) * _UNITS[unit] if unit in _UNITS else float(text)
    except ValueError:
        raise errors.ConfigError(f"--max-age {text!r}: use seconds, or a number with s, m, h or d (30d)") from None


@app.command()
def gc(
    store: StoreOpt = None,
    db: DbOpt = None,
    agent: Annotated[str | None, typer.Option(help="Only runs of this agent.")] = None,
    label: Annotated[list[str] | None, typer.Option(help="Only runs with this label (key=value). Repeatable.")] = None,
    max_age: Annotated[
        str | None, typer.Option(help="Delete finished runs idle this long (30d, 12h, seconds).")
    ] = None,
    keep_last: Annotated[
        int | None, typer.Option(help="Keep the content of the newest N checkpoints per branch.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be removed; remove nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply a retention policy. Heads, fork points, paused steps and runs labelled clew.hold are kept."""
    from clew.store import Retention

    labels = {}
    for item in label or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise errors.ConfigError(f"--label {item!r}: use key=value")
        labels[key] = value
    policy = Retention(agent=agent, labels=labels, max_age=_seconds(max_age) if max_age else None, keep_last=keep_last)
    with _open(store, db) as s:
        report = s.gc([policy], dry_run=dry_run)
    if as_json:
        _emit(
            {
                "dry_run": report.dry_run,
                "runs_deleted": report.runs_deleted,
                "checkpoints_pruned": report.checkpoints_pruned,
                "blobs_deleted": report.blobs_deleted,
                "held": list(report.held),
                "runs": [
                    {"run_id": r.run_id, "deleted": r.deleted, "pruned": len(r.pruned), "blobs": r.blobs}
                    for r in report.runs
                ],
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    out.print(
        f"{verb}: {report.runs_deleted} runs, {report.checkpoints_pruned} checkpoints' content, "
        f"{report.blobs_deleted} blobs; {len(report.held)} runs on hold"
    )
    for r in report.runs:
        out.print(f"  {r.run_id}: " + ("deleted" if r.deleted else f"{len(r.pruned)} pruned, {r.blobs} blobs"))


def _load_agent(spec: str) -> clew.Agent[Any]:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise errors.ConfigError(f"not an agent reference: {spec!r}; use module.path:agent_variable")
    sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise errors.ConfigError(f"cannot import {module!r} for {spec!r}: {exc}") from exc
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise errors.ConfigError(f"{module!r} has no {attr!r}; name the variable holding the clew.Agent")
    if not isinstance(obj, clew.Agent):
        raise errors.ConfigError(f"{spec} is a {type(obj).__name__}, not a clew.Agent")
    return obj


@app.command("check-compat")
def check_compat(
    agent: Annotated[str, typer.Argument(help="The agent, as module.path:variable.")],
    store: StoreOpt = None,
    db: DbOpt = None,
    runs: Annotated[int | None, typer.Option(help="Check at most this many runs, newest first.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load every stored checkpoint of an agent with the current code. Exit 1 if any would fail."""
    a = _load_agent(agent)
    if store or db:
        a.store = _open(store, db)
    report = a.check_compat(runs=runs)
    if as_json:
        _emit(
            {
                "ok": report.ok,
                "agent": report.agent,
                "runs": report.runs,
                "checkpoints": report.checkpoints,
                "problems": [
                    {
                        "run_id": p.run_id,
                        "checkpoint_id": p.checkpoint_id,
                        "schema_version": p.schema_version,
                        "error": p.error,
                        "message": p.message,
                    }
                    for p in report.problems
                ],
            }
        )
    else:
        out.print(
            f"{report.agent}: {'OK' if report.ok else f'{len(report.problems)} FAIL'} "
            f"({report.checkpoints} checkpoints in {report.runs} runs)"
        )
        for p in report.problems:
            out.print(f"  {p.run_id} {p.checkpoint_id} (schema v{p.schema_version}): {p.error}: {p.message}")
    if not report.ok:
        raise typer.Exit(1)


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

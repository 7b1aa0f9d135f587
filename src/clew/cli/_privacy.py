"""Privacy, retention and versioning commands: erase, gc, keys, check-compat."""

from __future__ import annotations

import base64
import os
import sys
from typing import Annotated

import typer
from rich.progress import Progress

import clew
from clew import errors
from clew.cli._common import AgentArg, DbOpt, JsonOpt, StoreOpt, emit, err, load_agent, open_store, out
from clew.codec import Keyring
from clew.store import Retention


def keyring_codec() -> clew.Codec | None:
    """A codec with the keyring named by ``CLEW_KEYS`` (id=base64 items) or ``CLEW_KEY_FILE``."""
    if os.environ.get("CLEW_KEYS"):
        return clew.Codec(keyring=Keyring.from_env("CLEW_KEYS"))
    if os.environ.get("CLEW_KEY_FILE"):
        return clew.Codec(keyring=Keyring.from_file(os.environ["CLEW_KEY_FILE"]))
    return None


def erase(
    run_id: Annotated[str | None, typer.Argument(help="The run to erase.")] = None,
    subject: Annotated[str | None, typer.Option(help="Erase every run of this data subject instead.")] = None,
    store: StoreOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a run, or all runs of a data subject, with everything they stored, for good."""
    with open_store(store, db) as s:
        report = s.erase(run_id, subject=subject)
    if as_json:
        emit(
            {
                "run_ids": list(report.run_ids),
                "checkpoints": report.checkpoints,
                "blobs": report.blobs,
                "journal_entries": report.journal_entries,
                "branches": report.branches,
                "scrubbed": report.scrubbed,
            }
        )
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
    labels = {}
    for item in label or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise errors.ConfigError(f"--label {item!r}: use key=value")
        labels[key] = value
    policy = Retention(agent=agent, labels=labels, max_age=_seconds(max_age) if max_age else None, keep_last=keep_last)
    with open_store(store, db) as s:
        report = s.gc([policy], dry_run=dry_run)
    if as_json:
        emit(
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


keys_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Encryption keys: make one, rotate a store onto a new one, encrypt rows stored in the clear.",
)


@keys_app.command("generate")
def keys_generate(key_id: Annotated[str, typer.Option("--id", help="The new key's id.")] = "k1") -> None:
    """Print a new random AES-256 key as id=base64, for CLEW_KEYS or a key file."""
    Keyring({key_id: bytes(32)})  # checks the id
    sys.stdout.write(f"{key_id}={base64.b64encode(Keyring.generate()).decode()}\n")


def _run_ids(s: clew.Store) -> list[str]:
    runs: list[str] = []
    cursor = None
    while True:
        page = s.list_runs(limit=500, cursor=cursor)
        runs.extend(r.run_id for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return runs


def _keyring(s: clew.Store) -> Keyring:
    if s.codec.keyring is None:
        raise errors.ConfigError("no keyring: set CLEW_KEYS (id=base64key,...) or CLEW_KEY_FILE")
    return s.codec.keyring


BatchOpt = Annotated[int, typer.Option(min=1, help="Runs per transaction.")]


@keys_app.command("rotate")
def keys_rotate(store: StoreOpt = None, db: DbOpt = None, batch: BatchOpt = 500, as_json: JsonOpt = False) -> None:
    """Re-wrap every run's data key under the keyring's current key, a batch of runs per transaction.

    The keyring (CLEW_KEYS or CLEW_KEY_FILE) must hold the retired keys and the new
    current one (the last listed). Only the wrapped keys are rewritten, no data row.
    Runs written before data keys existed are given one, their rows re-encrypted under
    it (one run per transaction). Interrupted, it is finished by running it again.
    """
    with open_store(store, db) as s:
        keyring = _keyring(s)
        total = len(_run_ids(s))
        rewrapped = converted = rows = written = 0
        cursor: str | None = None
        with Progress(console=err, transient=True, disable=as_json) as bar:
            task = bar.add_task(f"re-wrapping data keys under {keyring.current!r}", total=total)
            while True:
                report = s.rewrap_keys(after=cursor, limit=batch)
                rewrapped += report.rewrapped
                written += report.bytes_written
                for run_id in report.unkeyed:
                    done = s.rekey(run_id)
                    converted += 1
                    rows += done.rows
                    written += done.bytes_written
                bar.advance(task, report.runs)
                cursor = report.next_cursor
                if cursor is None:
                    break
        scrubbed = s.scrub() if rows else True
    if as_json:
        emit(
            {
                "runs": total,
                "rewrapped": rewrapped,
                "given_data_keys": converted,
                "rows": rows,
                "bytes_written": written,
                "current": keyring.current,
                "scrubbed": scrubbed,
            }
        )
    else:
        out.print(
            f"{total} runs: {rewrapped} data keys re-wrapped under key {keyring.current!r}; {converted} runs "
            f"given a data key ({rows} rows re-encrypted); {written:,} bytes written"
        )


@keys_app.command("encrypt")
def keys_encrypt(store: StoreOpt = None, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Encrypt every row still in the clear (written before encryption was turned on), one run
    per transaction, and rows under a keyring key directly, each under its run's data key.

    Interrupted, it is finished by running it again. Afterwards the freed space is
    overwritten where the backend can (SQLite); on PostgreSQL run VACUUM FULL.
    """
    with open_store(store, db) as s:
        keyring = _keyring(s)
        runs = _run_ids(s)
        rows = written = 0
        with Progress(console=err, transient=True, disable=as_json) as bar:
            task = bar.add_task(f"encrypting under data keys wrapped by {keyring.current!r}", total=len(runs))
            for run_id in runs:
                done = s.rekey(run_id)
                rows += done.rows
                written += done.bytes_written
                bar.advance(task)
        scrubbed = s.scrub()
    if as_json:
        emit({"runs": len(runs), "rows": rows, "bytes_written": written, "scrubbed": scrubbed})
    else:
        out.print(
            f"{len(runs)} runs checked, {rows} rows encrypted ({written:,} bytes)"
            + ("" if scrubbed else "; old copies not overwritten yet: see docs/privacy.md (VACUUM)")
        )


def migrate(
    agent: AgentArg,
    store: StoreOpt = None,
    db: DbOpt = None,
    runs: Annotated[int | None, typer.Option(help="At most this many runs, newest first.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rewrite paused runs checkpointed under an older schema version as the current one."""
    a = load_agent(agent)
    if store or db:
        a.store = open_store(store, db)
    report = a.migrate(runs=runs)
    if as_json:
        emit(
            {
                "migrated": [{"run_id": r, "branch": b, "checkpoint_id": c} for r, b, c in report.migrated],
                "skipped": [{"run_id": r, "branch": b, "why": w} for r, b, w in report.skipped],
            }
        )
        return
    out.print(f"{len(report.migrated)} paused branches migrated, {len(report.skipped)} left to upcast on load")
    for r, b, c in report.migrated:
        out.print(f"  {r} {b}: {c}")


def check_compat(
    agent: AgentArg,
    store: StoreOpt = None,
    db: DbOpt = None,
    runs: Annotated[int | None, typer.Option(help="Check at most this many runs, newest first.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load every stored checkpoint of an agent with the current code. Exit 1 if any would fail."""
    a = load_agent(agent)
    if store or db:
        a.store = open_store(store, db, read_only=True)
    report = a.check_compat(runs=runs)
    if as_json:
        emit(
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

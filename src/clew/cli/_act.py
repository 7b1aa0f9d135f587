"""Commands that act: resume, fork, edit, delete, recover, worker, demo.

Those that run steps take the agent as ``MODULE:AGENT`` and use its store.
"""

from __future__ import annotations

import logging
import shlex
import sys
from typing import Annotated, Any

import typer

import clew
from clew import errors
from clew.cli._common import (
    AgentArg,
    DbOpt,
    JsonOpt,
    StoreOpt,
    dumps,
    emit,
    err,
    load_agent,
    open_store,
    parse_json,
    record,
    resolve_checkpoint,
    resolve_run,
    say,
)

ActorOpt = Annotated[str | None, typer.Option(help="Who does this (recorded in the journal).")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why (recorded in the journal).")]


def _report(run: clew.Run[Any], as_json: bool) -> None:
    data = {
        "run_id": run.run_id,
        "status": run.status,
        "branch": run.branch,
        "checkpoint_id": run.checkpoint_id,
        "interrupt": run.interrupt,
        "error": run.error,
        "state": run.state,
    }
    if as_json:
        emit(data)
        return
    say(f"run {run.run_id} is {run.status} (branch {run.branch}, checkpoint {run.checkpoint_id})")
    if run.status == "paused":
        say(f"  waiting for an answer to: {dumps(run.interrupt)}")
    if run.error:
        say(f"  error: {run.error.get('type')}: {run.error.get('message')}")


def resume(
    agent: AgentArg,
    run_id: str,
    answer: Annotated[
        str | None, typer.Option(help="The answer to a paused run's question, as JSON (e.g. '{\"approved\": true}').")
    ] = None,
    actor: ActorOpt = None,
    branch: Annotated[str | None, typer.Option(help="The branch to resume (the run's current one by default).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue a paused run, or retry a failed one.

    A paused run needs --answer. The run executes here until it completes, pauses or fails."""
    a = load_agent(agent)
    assert isinstance(a.store, clew.Store)
    rid = resolve_run(a.store, run_id)
    if answer is None:
        run = a.resume(rid, actor=actor, branch=branch)
    else:
        run = a.resume(rid, parse_json("--answer", answer), actor=actor, branch=branch)
    _report(run, as_json)


def fork(
    agent: AgentArg,
    run_id: str,
    checkpoint_id: Annotated[str, typer.Argument(help="The checkpoint (id or unique prefix) to branch from.")],
    branch: Annotated[str, typer.Option(help="The new branch's name.")],
    update: Annotated[str | None, typer.Option(help="Fields to change, as a JSON object.")] = None,
    actor: ActorOpt = None,
    reason: ReasonOpt = None,
    run: Annotated[bool, typer.Option("--run/--no-run", help="Run the new branch now.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Start a new branch at a checkpoint, optionally with edited state."""
    a = load_agent(agent)
    assert isinstance(a.store, clew.Store)
    rid = resolve_run(a.store, run_id)
    cid = resolve_checkpoint(a.store, rid, checkpoint_id)
    changes = parse_json("--update", update, mapping=True)
    if run:
        _report(a.fork(cid, branch=branch, update=changes, actor=actor, reason=reason, run_id=rid), as_json)
        return
    a.fork(cid, branch=branch, update=changes, actor=actor, reason=reason, run_id=rid, run=False)
    head = a.store.get_branch(rid, branch)
    if as_json:
        emit(record(head))
    else:
        say(
            f"branch {branch} of run {rid} starts at {head.head}; "
            f"run it with: {shlex.join(['clew', 'resume', agent, rid, '--branch', branch])}"
        )


def edit(
    agent: AgentArg,
    run_id: str,
    update: Annotated[str, typer.Option(help="Fields to change, as a JSON object.")],
    actor: ActorOpt = None,
    reason: ReasonOpt = None,
    branch: Annotated[str | None, typer.Option(help="The branch (the run's current one by default).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a paused run's state.

    An edit checkpoint records the change with --actor and --reason."""
    a = load_agent(agent)
    assert isinstance(a.store, clew.Store)
    rid = resolve_run(a.store, run_id)
    c = a.edit(rid, update=parse_json("--update", update, mapping=True), actor=actor, reason=reason, branch=branch)
    if as_json:
        emit(record(c))
    else:
        say(f"run {rid}: edit checkpoint {c.checkpoint_id} on branch {c.branch}")


def cancel(
    run_id: str,
    branch: Annotated[str | None, typer.Option(help="The branch to cancel (every unfinished one by default).")] = None,
    actor: ActorOpt = None,
    reason: ReasonOpt = None,
    store: StoreOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a run's unfinished branches, or one branch.

    Journaled with --actor and --reason. A worker running the branch is fenced out at its
    next write; a cancelled branch never advances again (fork from it to go on)."""
    with open_store(store, db) as s:
        rid = resolve_run(s, run_id)
        # Cancelling runs no step: an agent of the run's name on this store is all it takes.
        done = clew.Agent(s.get_run(rid).agent, state=dict, store=s).cancel(rid, branch, actor=actor, reason=reason)
    if as_json:
        emit([record(b) for b in done])
    else:
        say(f"run {rid}: cancelled {', '.join(b.name for b in done) or 'nothing (every branch had finished)'}")


def delete(
    run_id: str,
    store: StoreOpt = None,
    db: DbOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a run with its branches, checkpoints, journal and blobs."""
    with open_store(store, db) as s:
        rid = resolve_run(s, run_id)
        if not yes:
            if not sys.stdin.isatty():
                raise errors.ConfigError(f"deleting run {rid!r} cannot be undone: pass --yes to confirm")
            typer.confirm(f"Delete run {rid} and its whole history?", abort=True, err=True)
        report = s.delete_run(rid)
    if as_json:
        emit(record(report))
    else:
        say(
            f"deleted run {rid}: {report.checkpoints} checkpoints, {report.branches} branches, "
            f"{report.journal_entries} journal entries, {report.blobs} blobs"
        )


def recover(
    agent: AgentArg,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Execute orphaned and queued runs once.

    Orphaned runs are those whose worker died (their lease expired). `clew worker` keeps doing this."""
    a = load_agent(agent)
    runs = a.recover(limit=limit)
    if as_json:
        emit([{"run_id": r.run_id, "status": r.status, "branch": r.branch, "error": r.error} for r in runs])
        return
    for r in runs:
        say(f"run {r.run_id}: {r.status}")
    say(f"{len(runs)} runs recovered")


def worker(
    agent: AgentArg,
    concurrency: Annotated[int, typer.Option(help="How many runs to execute at once.")] = 1,
    poll: Annotated[float, typer.Option(help="Seconds between looks for work when idle.")] = 1.0,
    max_running: Annotated[
        int | None,
        typer.Option(help="At most this many of the agent's runs executing at once, across all workers of the store."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve an agent: execute queued and orphaned runs until SIGTERM.

    Queued runs are taken highest priority first, then oldest first. On SIGTERM or Ctrl-C
    each run in progress finishes its current step, checkpoints and releases its lease,
    then the worker exits. A second signal stops it at once."""
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise errors.ConfigError(f"--log-level {log_level!r}: use debug, info, warning or error")
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("clew").setLevel(level)
    a = load_agent(agent)
    a.serve(concurrency=concurrency, poll=poll, max_running=max_running)


def demo(
    db: Annotated[str | None, typer.Option("--db", help="Keep the demo's run in this SQLite file.")] = None,
) -> None:
    """Run the support-agent demo on SQLite.

    A worker is killed mid-run, the run is recovered, reviewed by a person and forked."""
    from clew.examples import support_agent

    code = support_agent.main(db)
    if code:
        err.print("demo: the story did not end as expected")
        raise typer.Exit(code)

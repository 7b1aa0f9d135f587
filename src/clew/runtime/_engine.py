"""The run loop: load a branch head, run its next step, checkpoint, repeat.

Written once as a program of effects (see ``_effects``), carried out by the sync or
the async driver. A checkpoint's metadata holds what the loop needs to continue:

``next``      the step to run from here (None: the run is complete)
``exec``      for a pause (``interrupt``, ``unknown_outcome``, ``edit``): the
              checkpoint the paused step started from, which keys its ledger
``step``      the step that produced a ``step`` checkpoint, with ``attempts`` and
              ``duration_ms``
``code_version``, ``schema_version``, ``state_type``  who wrote it
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from clew.errors import (
    ClewError,
    CodeVersionError,
    LeaseError,
    NotFoundError,
    NoUpcasterError,
    RunLockedError,
    RunStatusError,
    StepNotFoundError,
    StoreError,
    UnknownTypeError,
)
from clew.runtime import _tracing
from clew.runtime._context import Context, Interrupted, Ledger, error_record
from clew.runtime._effects import Invoke, Program, Sleep, StoreCall
from clew.runtime._lease import LeaseKeeper
from clew.store import BranchRecord, CheckpointRecord, JournalEntry
from clew.store._records import lease_entry

if TYPE_CHECKING:
    from clew.runtime._agent import AgentBase

log = logging.getLogger("clew.runtime")
S = TypeVar("S")
PAUSE_KINDS = frozenset({"interrupt", "unknown_outcome", "edit"})


class CodeVersionWarning(UserWarning):
    """A run is resumed by a different code version than the one that checkpointed it."""


@dataclass(frozen=True, slots=True)
class Run(Generic[S]):
    """Where a run stands after the runtime handed control back.

    Attributes:
        run_id: the run.
        status: ``completed``, ``paused`` or ``failed``; ``running`` when a draining
            worker stopped it after a step (another worker continues it).
        branch: the branch that was advanced.
        checkpoint_id: its head.
        state: the state at the head.
        interrupt: the payload of the pause, if paused.
        error: the error record (type, message, traceback), if failed.
    """

    run_id: str
    status: str
    branch: str
    checkpoint_id: str
    state: S
    interrupt: Any = None
    error: Mapping[str, Any] | None = None


def store(method: str, **kwargs: Any) -> StoreCall:
    return StoreCall(method, kwargs)


def fail(
    keeper: LeaseKeeper,
    error: Mapping[str, Any],
    journal: Sequence[tuple[str, Any]] = (),
    **details: Any,
) -> StoreCall:
    """Mark a branch failed with its error: recover() then leaves it alone, resume() retries.

    ``journal``: the failed step's idempotent calls not yet written, so resume replays them."""
    lease = keeper.lease
    return store(
        "set_branch_status",
        run_id=lease.run_id,
        branch=lease.branch,
        status="failed",
        error={**error, **details},
        lease=lease,
        journal=list(journal),
    )


def step_ledger(run_id: str, branch: str, head: CheckpointRecord) -> Program:
    """The journal of the step execution that continues from ``head``."""
    exec_id = head.metadata.get("exec") if head.kind in PAUSE_KINDS else head.checkpoint_id
    entries: list[JournalEntry] = []
    if head.kind in PAUSE_KINDS:  # entries sealed into the pause checkpoints since the step began
        page = yield store("list_checkpoints", run_id=run_id, branch=branch, limit=50)
        chain = []
        for c in page.items:
            if c.checkpoint_id == exec_id:
                break
            chain.append(c.checkpoint_id)
        for cid in reversed(chain):
            entries.extend((yield store("list_journal", run_id=run_id, checkpoint_id=cid)))
    entries.extend((yield store("list_journal", run_id=run_id, pending_on=branch)))
    return Ledger.from_entries(str(exec_id), entries)


def execute(
    agent: AgentBase[S],
    keeper: LeaseKeeper,
    *,
    ephemeral: Mapping[str, Any] | None,
    runner_for: Callable[[Callable[..., Any]], Callable[[Program], Any]],
    is_async: bool,
) -> Program:
    """Run a branch from its head until it completes, pauses or fails; every write fenced
    by the branch's lease."""
    run_id, branch = keeper.lease.run_id, keeper.lease.branch
    b = yield store("get_branch", run_id=run_id, name=branch)
    if b.head is None:  # its worker died between creating the run and its first checkpoint
        err = {
            "type": "clew.errors.RunStatusError",
            "message": f"run {run_id!r} has no checkpoint: its worker died before writing the first one, "
            "so its initial state was never stored; start the run again",
        }
        yield fail(keeper, err)
        return Run(run_id, "failed", branch, "", None, error=err)
    head: CheckpointRecord = yield store("get_checkpoint", run_id=run_id, checkpoint_id=b.head)
    check_version(agent, head)
    try:
        fields = yield from agent._load_fields(head)
    except NoUpcasterError as exc:  # failed, not running: recover() must not retry it forever
        yield fail(keeper, error_record(exc))
        raise
    state = agent._adapter.from_fields(fields, ephemeral)
    fresh = False
    while True:
        nxt = head.metadata.get("next")
        if nxt is None:
            yield store("set_branch_status", run_id=run_id, branch=branch, status="completed", lease=keeper.lease)
            return Run(run_id, "completed", branch, head.checkpoint_id, state)
        step = agent._steps.get(nxt)
        if step is None:
            missing = StepNotFoundError(
                f"run {run_id!r} continues at step {nxt!r}, which agent {agent.name!r} does not define "
                f"(it has {sorted(agent._steps)}); deploy the code that has it, or fork with another step"
            )
            # Failed, not running: recover() must not pick it up again and again.
            yield fail(keeper, error_record(missing), step=nxt)
            raise missing
        if fresh:  # we committed the head ourselves, under our lease: nothing is pending
            ledger = Ledger(head.checkpoint_id)
        else:
            ledger = yield from step_ledger(run_id, branch, head)
        attempt = ledger.failed_attempts + 1
        while True:
            keeper.check()
            ctx = Context(
                run_id=run_id,
                branch=branch,
                step=nxt,
                attempt=attempt,
                ledger=ledger,
                runner=runner_for(step.fn),
                lease=keeper,
                defer_idempotent=agent.idempotent_calls == "with_checkpoint",
            )
            started = time.perf_counter()
            attrs = {"clew.run_id": run_id, "clew.branch": branch, "clew.step": nxt, "clew.attempt": attempt}
            try:
                with _tracing.span(f"step {nxt}", attrs, benign=(Interrupted, GeneratorExit)):
                    result = yield Invoke(step.fn, (state, ctx), {}, step.timeout if is_async else None)
            except Interrupted as pause:
                # The paused step starts over on resume: keep the state it started from.
                fields = yield from agent._load_fields(head)
                kind = "unknown_outcome" if pause.call else "interrupt"
                meta = {
                    **agent._meta(),
                    "next": nxt,
                    "exec": ledger.exec_id,
                    "interrupt": pause.payload,
                    "index": pause.index,
                }
                if pause.call:
                    meta["call"] = pause.call
                head = yield store(
                    "commit",
                    run_id=run_id,
                    branch=branch,
                    parent=head.checkpoint_id,
                    state=fields,
                    kind=kind,
                    status="paused",
                    metadata=meta,
                    journal=[
                        *ctx.take_deferred(),
                        (kind, {"exec": ledger.exec_id, "index": pause.index, "payload": pause.payload}),
                    ],
                    lease=keeper.lease,
                )
                return Run(
                    run_id,
                    "paused",
                    branch,
                    head.checkpoint_id,
                    agent._adapter.from_fields(fields, ephemeral),
                    interrupt=pause.payload,
                )
            except StoreError:
                raise  # the store refused (another worker won, the server is gone): not the step's fault
            except ClewError as exc:
                # Deterministic (a value clew cannot store, a bad step name): no retry, but the
                # run must not stay "running" for recover() to pick up again and again.
                yield fail(keeper, error_record(exc), ctx.take_deferred(), step=nxt, attempts=attempt)
                raise
            except Exception as exc:
                err = error_record(exc)
                yield store(
                    "append_journal",
                    run_id=run_id,
                    branch=branch,
                    lease=keeper.lease,
                    entries=[
                        *ctx.take_deferred(),  # the calls that completed are replayed by the retry
                        (
                            "step.error",
                            {
                                "exec": ledger.exec_id,
                                "step": nxt,
                                "attempt": attempt,
                                "error": err,
                                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                            },
                        ),
                    ],
                )
                fields = yield from agent._load_fields(head)
                state = agent._adapter.from_fields(fields, ephemeral)
                if step.retry.retries(exc, attempt):
                    log.info("run %s step %s failed (attempt %d: %s); retrying", run_id, nxt, attempt, err["type"])
                    yield Sleep(step.retry.delay(attempt))
                    attempt += 1
                    # the failed try's completed calls are in the journal now: replay them
                    ledger = yield from step_ledger(run_id, branch, head)
                    continue
                yield fail(keeper, err, step=nxt, attempts=attempt)
                return Run(run_id, "failed", branch, head.checkpoint_id, state, error=err)
            break
        if result is not None and (not isinstance(result, str) or result not in agent._steps):
            bad = StepNotFoundError(
                f"step {nxt!r} of run {run_id!r} returned {result!r}: return the name of a step "
                f"({sorted(agent._steps)}) or None to end the run"
            )
            yield fail(keeper, error_record(bad), ctx.take_deferred(), step=nxt)
            raise bad
        meta = {
            **agent._meta(),
            "step": nxt,
            "next": result,
            "attempts": attempt,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        fields = agent._adapter.to_fields(state)
        calls = ctx.take_deferred()  # the step's idempotent calls: journaled in its checkpoint
        try:
            head = yield store(
                "commit",
                run_id=run_id,
                branch=branch,
                parent=head.checkpoint_id,
                state=fields,
                kind="step",
                metadata=meta,
                status="completed" if result is None else None,
                journal=calls,
                lease=keeper.lease,
            )
        except UnknownTypeError as exc:  # the state holds a value clew cannot store
            yield fail(keeper, error_record(exc), calls, step=nxt)
            raise
        if agent._adapter.mask is not None:  # go on as a resume would: with redacted values masked
            state = agent._adapter.from_fields(fields, ephemeral)
        if result is None:
            return Run(run_id, "completed", branch, head.checkpoint_id, state)
        fresh = True
        if agent._should_stop():  # a worker draining: this step is checkpointed, another worker goes on
            return Run(run_id, "running", branch, head.checkpoint_id, state)


RESUMABLE = ("paused", "failed", "running")


def pick_branch(run_id: str, branches: Sequence[BranchRecord], branch: str | None, answering: bool) -> BranchRecord:
    """The branch ``resume`` continues: the one named, else the only one that can go on."""
    if branch is not None:
        for b in branches:
            if b.name == branch:
                return b
        raise NotFoundError(f"run {run_id!r} has no branch {branch!r} (it has {', '.join(b.name for b in branches)})")
    candidates = [b for b in branches if b.status in RESUMABLE]
    if answering and any(b.status == "paused" for b in candidates):
        candidates = [b for b in candidates if b.status == "paused"]
    if len(branches) == 1 or len(candidates) == 1:  # the caller's checks say what is wrong with it
        return candidates[0] if candidates else branches[0]
    listing = ", ".join(f"{b.name} ({b.status})" for b in branches)
    if not candidates:
        what = "paused" if answering else "paused, failed or interrupted"
        raise RunStatusError(f"run {run_id!r} has no {what} branch to resume: {listing}")
    raise RunStatusError(
        f"run {run_id!r} has {len(candidates)} branches that could be resumed: "
        f"{', '.join(f'{b.name} ({b.status})' for b in candidates)}; name one with branch=..."
    )


def prepare_resume(
    agent: AgentBase[Any], run_id: str, branch: str | None, answer: Any, actor: str | None, owner: str
) -> Program:
    """Check that a branch may be resumed, take its lease and record the answer; returns the lease."""
    answering = answer is not agent._NO_ANSWER

    def check(b: BranchRecord) -> None:
        if b.status == "completed":
            raise RunStatusError(
                f"run {run_id!r} branch {b.name!r} is completed; fork it to continue from a checkpoint"
            )
        if b.status == "cancelled":
            raise RunStatusError(f"run {run_id!r} branch {b.name!r} was cancelled; fork it to continue")
        if answering and b.status != "paused":
            raise RunStatusError(
                f"run {run_id!r} branch {b.name!r} is {b.status}, not paused: there is no question to answer"
            )

    branches = yield store("list_branches", run_id=run_id)
    b = before = pick_branch(run_id, branches, branch, answering)
    check(b)
    try:
        lease = yield store("acquire_lease", run_id=run_id, owner=owner, ttl=agent.lease_ttl, branch=b.name)
    except LeaseError as exc:
        if isinstance(exc, RunLockedError):
            raise
        check((yield store("get_branch", run_id=run_id, name=b.name)))  # it finished meanwhile: say how
        raise
    try:
        b = yield store("get_branch", run_id=run_id, name=b.name)  # again, under the lease
        check(b)
        head = yield store("get_checkpoint", run_id=run_id, checkpoint_id=b.head)
        if agent.on_version_mismatch == "refuse":
            check_version(agent, head)  # refuse before recording anything
        # a state this code cannot load: refuse before recording anything
        agent._upcasters.check(
            agent._upcasters.stored_version(head.metadata), f"run {run_id!r} head {head.checkpoint_id}"
        )
        entries: list[tuple[str, Any]] = []
        if b.status == "running" and before.lease_owner != owner:
            # A run whose worker died (or that was queued), resumed by hand: why it resumes here.
            expired = before.lease_expires_at if before.lease_owner is not None else None
            taken = lease_entry(
                owner=owner, epoch=lease.epoch, previous_owner=before.lease_owner, expired_at=expired, head=b.head
            )
            entries.append(("lease", {**taken, "actor": actor}))
        if b.status == "paused" and head.kind in PAUSE_KINDS:
            if not answering:
                raise RunStatusError(
                    f"run {run_id!r} branch {b.name!r} is paused at {head.metadata.get('next')!r}: "
                    "resume it with answer=..."
                )
            data = {"exec": head.metadata["exec"], "answer": answer, "actor": actor}
            if head.kind == "unknown_outcome" or head.metadata.get("call"):
                data["call"] = head.metadata["call"]
            else:
                data["index"] = head.metadata.get("index", 0)
            entries.append(("answer", data))
        if b.status == "failed":
            entries.append(
                (
                    "step.reset",
                    {
                        "exec": head.checkpoint_id if head.kind not in PAUSE_KINDS else head.metadata["exec"],
                        "actor": actor,
                    },
                )
            )
        yield store(
            "set_branch_status",
            run_id=run_id,
            branch=b.name,
            status="running",
            error=None,
            lease=lease,
            journal=entries,
        )
    except BaseException:
        yield store("release_lease", run_id=run_id, owner=owner, branch=lease.branch, epoch=lease.epoch)
        raise
    return lease


def check_version(agent: AgentBase[Any], head: CheckpointRecord) -> None:
    written = head.metadata.get("code_version")
    if written is None or written == agent.version:
        return
    msg = f"run {head.run_id!r} was checkpointed by code version {written!r}; this agent is {agent.version!r}"
    if agent.on_version_mismatch == "refuse":
        raise CodeVersionError(msg + "; deploy the matching code or set on_version_mismatch='warn'")
    warnings.warn(msg, CodeVersionWarning, stacklevel=4)

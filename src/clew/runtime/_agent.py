"""The agent API: declare steps, then start, resume, edit, fork, replay and recover runs."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, overload

from clew.errors import ConfigError, LeaseLostError, NotFoundError, RunStatusError
from clew.runtime import _engine, _tracing
from clew.runtime._adapter import StateAdapter
from clew.runtime._compat import CompatReport, MigrateReport, check_compat, old_heads
from clew.runtime._context import async_runner, sync_runner, thread_runner
from clew.runtime._effects import Program, run_async, run_sync
from clew.runtime._engine import PAUSE_KINDS, Run, store
from clew.runtime._lease import LeaseKeeper
from clew.runtime._policy import NO_RETRY, Retry
from clew.runtime._redact import Redactor, Scrubbing
from clew.runtime._upcast import Upcaster, Upcasters
from clew.store import SUBJECT_LABEL, AsyncStore, BranchRecord, CheckpointRecord, Lease, Store
from clew.store._records import FINISHED

log = logging.getLogger("clew")

S = TypeVar("S")
StepFn = Callable[..., Any]
F = TypeVar("F", bound=StepFn)


def _resume_point(head: CheckpointRecord) -> dict[str, Any]:
    """What a checkpoint written on top of ``head`` carries over so the run continues where
    ``head`` left it: the next step and, for a pause, the paused step's question and ledger key."""
    keep = {k: head.metadata[k] for k in ("next", "exec", "interrupt", "index", "call") if k in head.metadata}
    if head.kind not in PAUSE_KINDS:
        keep["exec"] = head.checkpoint_id
    return keep


def _with_subject(labels: Mapping[str, str] | None, subject: str | None) -> Mapping[str, str] | None:
    if subject is None:
        return labels
    if not isinstance(subject, str) or not subject:
        raise ConfigError(f"subject must be a non-empty str (a customer id...), not {subject!r}")
    return {**(labels or {}), SUBJECT_LABEL: subject}


@dataclass(frozen=True, slots=True)
class Step:
    """A registered step."""

    name: str
    fn: StepFn
    retry: Retry
    timeout: float | None


class AgentBase(Generic[S]):
    _NO_ANSWER: Any = object()
    _stop: threading.Event | None = None  # set by a draining worker: stop after the current step

    def _should_stop(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def __init__(
        self,
        name: str,
        *,
        state: type[S],
        store: Store | AsyncStore,
        version: str = "0",
        schema_version: int = 1,
        on_version_mismatch: Literal["warn", "refuse"] = "warn",
        ephemeral: tuple[str, ...] = (),
        redacted: tuple[str, ...] = (),
        lease_ttl: float = 30.0,
        lease_margin: float | None = None,
        worker_id: str | None = None,
        idempotent_calls: Literal["at_once", "with_checkpoint"] = "at_once",
    ) -> None:
        if on_version_mismatch not in ("warn", "refuse"):
            raise ConfigError("on_version_mismatch must be 'warn' or 'refuse'")
        if idempotent_calls not in ("at_once", "with_checkpoint"):
            raise ConfigError(f"idempotent_calls must be 'at_once' or 'with_checkpoint', not {idempotent_calls!r}")
        if isinstance(lease_ttl, bool) or not isinstance(lease_ttl, int | float) or not 0 < lease_ttl < float("inf"):
            raise ConfigError(f"lease_ttl must be a positive number of seconds, not {lease_ttl!r}")
        margin = lease_ttl / 2 if lease_margin is None else lease_margin
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < lease_ttl:
            raise ConfigError(f"lease_margin must be at least 0 and less than lease_ttl ({lease_ttl}), not {margin!r}")
        self.name = name
        self.store = store
        self.version = version
        self.schema_version = schema_version
        self.on_version_mismatch = on_version_mismatch
        self.lease_ttl = float(lease_ttl)
        self.lease_margin = float(margin)
        self.idempotent_calls = idempotent_calls
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._adapter: StateAdapter[S] = StateAdapter(state, ephemeral)
        redactor = Redactor(redacted, self._adapter.field_names(), self._adapter.type_name)
        if redactor:
            self._adapter.mask = lambda fields: redactor.apply(fields, self.store.codec.redacted)
        self._upcasters = Upcasters(self._adapter.type_name, schema_version)
        self._steps: dict[str, Step] = {}
        self._start: str | None = None

    @overload
    def step(self, fn: F, /) -> F: ...

    @overload
    def step(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        start: bool = False,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> Callable[[F], F]: ...

    def step(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        start: bool = False,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> F | Callable[[F], F]:
        """Register a step: ``fn(state, ctx) -> next step name | None``.

        Args:
            name: the step's name (the function's by default); stored in checkpoints.
            start: the step a new run begins with.
            retry: how to retry the whole step when it raises.
            timeout: seconds an ``async def`` step may take per try.
        """

        def register(f: F) -> F:
            step_name = name or f.__name__
            if step_name in self._steps:
                raise ConfigError(f"agent {self.name!r} already has a step {step_name!r}")
            self._steps[step_name] = Step(step_name, f, retry or NO_RETRY, timeout)
            if start:
                if self._start is not None:
                    raise ConfigError(f"agent {self.name!r} already starts at {self._start!r}")
                self._start = step_name
            return f

        return register(fn) if fn is not None else register

    def upcaster(self, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function that brings stored fields from ``from_version`` to the next.

        ``fn(fields: dict) -> dict`` gets the state's stored top-level fields as written
        under schema version ``from_version`` and returns them as version
        ``from_version + 1`` expects them. Upcasters run in a chain when a checkpoint is
        loaded (``v1 -> v2 -> v3``); the stored checkpoint itself is not rewritten.

        Raises:
            ConfigError: ``from_version`` is not below the agent's ``schema_version``,
                or already has an upcaster.
        """

        def register(fn: Upcaster) -> Upcaster:
            self._upcasters.register(from_version, fn)
            return fn

        return register

    def _load_fields(self, checkpoint: CheckpointRecord) -> Program:
        """A checkpoint's stored fields, upcast to this agent's schema version."""
        stored = self._upcasters.stored_version(checkpoint.metadata)
        where = f"checkpoint {checkpoint.checkpoint_id} of run {checkpoint.run_id!r}"
        self._upcasters.check(stored, where)  # before any read: a missing upcaster costs no I/O
        fields = yield store("load_state", run_id=checkpoint.run_id, checkpoint_id=checkpoint.checkpoint_id)
        if stored == self._upcasters.current:
            return fields
        return self._upcasters.apply(fields, stored, where)

    def _meta(self) -> dict[str, Any]:
        return {
            "code_version": self.version,
            "schema_version": self.schema_version,
            "state_type": self._adapter.type_name,
        }

    # -- programs shared by the sync and async APIs ----------------------------
    def _begin(self, state: S, run_id: str | None, labels: Mapping[str, str] | None) -> Program:
        if self._start is None:
            raise ConfigError(f"agent {self.name!r} has no start step: mark one with @agent.step(start=True)")
        self._adapter.check(state)
        fields = self._adapter.to_fields(state)
        now = time.time()
        run = yield store(
            "create_run",
            run_id=run_id,
            agent=self.name,
            labels=labels,
            lease_owner=self.worker_id,
            lease_ttl=self.lease_ttl,
            state=fields,
            checkpoint_metadata={**self._meta(), "next": self._start},
        )
        # A new branch's first lease has epoch 1 (see Store.create_run).
        return self._keeper(Lease(run.run_id, "main", self.worker_id, 1, now + self.lease_ttl))

    def _span(self, keeper: LeaseKeeper) -> tuple[str, dict[str, Any]]:
        lease = keeper.lease
        return f"invoke_agent {self.name}", {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self.name,
            "clew.run_id": lease.run_id,
            "clew.branch": lease.branch,
            "clew.epoch": lease.epoch,
            "clew.worker_id": self.worker_id,
        }

    def _enqueue(self, state: S, run_id: str | None, labels: Mapping[str, str] | None, priority: int) -> Program:
        """Create the run and its first checkpoint with no lease: queued for any worker."""
        if self._start is None:
            raise ConfigError(f"agent {self.name!r} has no start step: mark one with @agent.step(start=True)")
        self._adapter.check(state)
        run = yield store(
            "create_run",
            run_id=run_id,
            agent=self.name,
            labels=labels,
            state=self._adapter.to_fields(state),
            checkpoint_metadata={**self._meta(), "next": self._start},
            priority=priority,
        )
        return run.run_id

    def _keeper(self, lease: Lease) -> LeaseKeeper:
        return LeaseKeeper(lease, self.lease_ttl, self.lease_margin)

    def _cancel(self, run_id: str, branch: str | None, actor: str | None, reason: str | None) -> Program:
        branches = yield store("list_branches", run_id=run_id)
        if branch is not None and branch not in {b.name for b in branches}:
            raise NotFoundError(f"run {run_id!r} has no branch {branch!r}")
        targets = [b for b in branches if (branch is None or b.name == branch) and b.status not in FINISHED]
        if branch is not None and not targets:
            status = next(b.status for b in branches if b.name == branch)
            raise RunStatusError(f"run {run_id!r} branch {branch!r} is already {status}")
        done = []
        for b in targets:
            done.append(
                (
                    yield store(
                        "set_branch_status",
                        run_id=run_id,
                        branch=b.name,
                        status="cancelled",
                        error={"type": "cancelled", "message": reason or "cancelled", "actor": actor},
                        journal=[("cancel", {"actor": actor, "reason": reason, "was": b.status})],
                        revoke=True,  # the worker running it, if any, is fenced out
                    )
                )
            )
        return done

    def _edit(
        self, run_id: str, update: Mapping[str, Any], actor: str | None, reason: str | None, branch: str | None
    ) -> Program:
        branches = yield store("list_branches", run_id=run_id)
        b = _engine.pick_branch(run_id, branches, branch, answering=True)
        if b.status != "paused":
            raise RunStatusError(
                f"run {run_id!r} branch {b.name!r} is {b.status}; only a paused branch can be edited (fork instead)"
            )
        branch = b.name
        lease = yield store("acquire_lease", run_id=run_id, owner=self.worker_id, ttl=self.lease_ttl, branch=branch)
        try:
            b = yield store("get_branch", run_id=run_id, name=branch)
            if b.status != "paused":
                raise RunStatusError(f"run {run_id!r} branch {branch!r} is {b.status}: it is no longer paused")
            head = yield store("get_checkpoint", run_id=run_id, checkpoint_id=b.head)
            fields = yield from self._load_fields(head)
            new = self._adapter.apply_update(self._adapter.from_fields(fields), update)
            keep = _resume_point(head)
            ckpt = yield store(
                "commit",
                run_id=run_id,
                branch=branch,
                parent=head.checkpoint_id,
                state=self._adapter.to_fields(new),
                kind="edit",
                metadata={**self._meta(), **keep, "actor": actor, "reason": reason},
                journal=[("edit", {"actor": actor, "reason": reason, "fields": sorted(update)})],
                lease=lease,
            )
        finally:
            yield store("release_lease", run_id=run_id, owner=self.worker_id, branch=branch, epoch=lease.epoch)
        return ckpt

    def _fork(
        self,
        checkpoint_id: str,
        branch: str,
        update: Mapping[str, Any] | None,
        actor: str | None,
        reason: str | None,
        run_id: str | None,
    ) -> Program:
        src: CheckpointRecord = (
            (yield store("get_checkpoint", run_id=run_id, checkpoint_id=checkpoint_id))
            if run_id
            else (yield store("find_checkpoint", checkpoint_id=checkpoint_id))
        )
        run_id = src.run_id
        fields = yield from self._load_fields(src)
        state = self._adapter.from_fields(fields)
        if update:
            state = self._adapter.apply_update(state, update)
        keep = {k: v for k, v in _resume_point(src).items() if k in src.metadata}
        kind = "fork"
        if src.kind in PAUSE_KINDS:
            kind = "edit"  # still paused at the same question, on the new branch
        now = time.time()
        yield store(
            "fork",
            run_id=run_id,
            checkpoint_id=checkpoint_id,
            branch=branch,
            lease_owner=self.worker_id,
            lease_ttl=self.lease_ttl,
            state=self._adapter.to_fields(state),
            kind=kind,
            metadata={**self._meta(), **keep, "forked_from": checkpoint_id, "actor": actor, "reason": reason},
            journal=[
                ("fork", {"from": checkpoint_id, "actor": actor, "reason": reason, "fields": sorted(update or {})})
            ],
            status="paused" if kind == "edit" else "running",  # with the fork, in its transaction
        )
        # A new branch's first lease has epoch 1 (see Store.fork).
        return self._keeper(Lease(run_id, branch, self.worker_id, 1, now + self.lease_ttl))

    def _history(self, run_id: str, branch: str) -> Program:
        out: list[CheckpointRecord] = []
        cursor = None
        while True:
            page = yield store("list_checkpoints", run_id=run_id, branch=branch, limit=500, cursor=cursor)
            out.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return out

    def _state_at(self, checkpoint_id: str, run_id: str | None, ephemeral: Mapping[str, Any] | None) -> Program:
        c = (
            (yield store("get_checkpoint", run_id=run_id, checkpoint_id=checkpoint_id))
            if run_id
            else (yield store("find_checkpoint", checkpoint_id=checkpoint_id))
        )
        fields = yield from self._load_fields(c)
        return self._adapter.from_fields(fields, ephemeral)

    def _finish(self, keeper: LeaseKeeper) -> Program:
        lease = keeper.lease
        yield store("release_lease", run_id=lease.run_id, owner=lease.owner, branch=lease.branch, epoch=lease.epoch)


def _log_result(agent: str, result: Run[Any]) -> None:
    if result.status == "failed":
        err = result.error or {}
        log.warning(
            "run %s failed (agent %s, branch %s): %s: %s",
            result.run_id,
            agent,
            result.branch,
            err.get("type"),
            err.get("message"),
        )
    else:
        log.info("run %s %s (agent %s, branch %s)", result.run_id, result.status, agent, result.branch)


class Agent(AgentBase[S]):
    """A durable agent: named steps over a typed state, on a store.

    ``async def`` steps are supported with an async store (:func:`clew.open_async`)
    and the ``a``-prefixed methods (``astart``, ``aresume``...), which never block
    the event loop; plain steps then run in worker threads.

    Args:
        name: the agent's name, recorded on its runs.
        state: the state type: a Pydantic model, a dataclass or ``dict``.
        store: where runs are kept (:func:`clew.open` or :func:`clew.open_async`).
        version: this code's version, recorded in every checkpoint.
        schema_version: the state type's schema version (an int from 1), recorded likewise;
            checkpoints of older versions are brought up to it by :meth:`upcaster` functions.
        on_version_mismatch: resuming a run checkpointed by another code version
            ``"warn"`` (a :class:`CodeVersionWarning`) or ``"refuse"``
            (:class:`~clew.errors.CodeVersionError`).
        ephemeral: state fields never written (clients, secrets); pass them again
            to ``resume``/``recover`` with ``ephemeral={...}``. Their text is also
            scrubbed from error messages and payloads written to the journal.
        redacted: state fields, or dotted paths into them (``"customer.email"``), stored
            as :class:`~clew.codec.Redacted` markers (a keyed hash) instead of their
            values. Steps see the state as stored, so with the marker: compare it with
            ``store.codec.redacted(candidate)``.
        lease_ttl: seconds a worker's lease on a branch lasts without a heartbeat
            (renewed every third of it while the branch runs).
        lease_margin: a non-idempotent tool call starts only with at least this many
            seconds of lease left, renewing first if needed (half the ttl by default).
        worker_id: this worker's name in leases (host:pid:random by default).
        idempotent_calls: when an ``idempotent=True`` call's result is journaled:
            ``"at_once"`` (after the call: a crash later in the step does not run it
            again) or ``"with_checkpoint"`` (with the step's checkpoint, or its error or
            pause: a step is then one transaction, and a crash before it runs the call
            again, with the same idempotency key).
    """

    # -- sync ------------------------------------------------------------------
    def _sync(self, program: Program, via: Any = None) -> Any:
        if not isinstance(self.store, Store):
            raise ConfigError("this agent has an async store: use the a-methods (await agent.astart(...))")
        return run_sync(program, via or self.store)

    @contextlib.contextmanager
    def _heartbeat(self, keeper: LeaseKeeper) -> Iterator[None]:
        stop = threading.Event()
        st = self.store
        assert isinstance(st, Store)
        call = keeper.renew()

        def beat() -> None:
            while not stop.wait(self.lease_ttl / 3):
                try:
                    keeper.renewed(getattr(st, call.method)(**call.kwargs))
                except LeaseLostError as exc:
                    keeper.mark_lost(exc)  # taken over: the run loop stops at its next write
                    return
                except Exception:  # noqa: S112 - a missed beat is retried at the next
                    continue

        t = threading.Thread(target=beat, name=f"clew-heartbeat-{keeper.lease.run_id}", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()

    def _run_sync(self, keeper: LeaseKeeper, ephemeral: Mapping[str, Any] | None) -> Run[S]:
        st = Scrubbing(self.store, ephemeral)  # ephemeral text never reaches the journal
        try:
            with self._heartbeat(keeper), _tracing.span(*self._span(keeper)) as span:
                result: Run[S] = self._sync(
                    _engine.execute(
                        self,
                        keeper,
                        ephemeral=ephemeral,
                        runner_for=lambda fn: sync_runner(st),
                        is_async=False,
                    ),
                    st,
                )
                _tracing.set_attribute(span, "clew.status", result.status)
                _log_result(self.name, result)
                return result
        except Exception as exc:
            lease = keeper.lease
            log.error(
                "run %s (agent %s, branch %s) stopped by %s: %s",
                lease.run_id,
                self.name,
                lease.branch,
                type(exc).__name__,
                exc,
            )
            raise
        finally:
            self._sync(self._finish(keeper))

    def start(
        self,
        state: S,
        *,
        run_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        subject: str | None = None,
    ) -> Run[S]:
        """Start a run and execute it until it completes, pauses or fails.

        ``subject`` tags the run with the data subject it holds data about (a customer
        id), so that ``store.erase(subject=...)`` removes it with the subject's other runs.

        Raises:
            InvalidStateError: ``state`` is not of the agent's state type.
            UnknownTypeError: the state holds a value clew cannot store.
        """
        keeper = self._sync(self._begin(state, run_id, _with_subject(labels, subject)))
        log.info("run %s started (agent %s)", keeper.lease.run_id, self.name)
        return self._run_sync(keeper, self._ephemeral_of(state))

    def enqueue(
        self,
        state: S,
        *,
        run_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        priority: int = 0,
    ) -> str:
        """Create a run with its first checkpoint and leave it for a worker; returns its id.

        The run is ``running`` with no lease, so the next worker that claims work
        (:meth:`serve`, ``clew worker``, :meth:`recover`) executes it: the highest
        ``priority`` first, then the oldest. Ephemeral fields are not stored: give them
        to the worker (``serve(ephemeral=...)``).
        """
        rid: str = self._sync(self._enqueue(state, run_id, labels, priority))
        log.info("run %s queued (agent %s, priority %d)", rid, self.name, priority)
        return rid

    def serve(
        self,
        *,
        concurrency: int = 1,
        poll: float = 1.0,
        ephemeral: Mapping[str, Any] | None = None,
        max_running: int | None = None,
    ) -> None:
        """Work as a long-running worker until SIGTERM/SIGINT: execute queued runs and
        recover runs whose worker died, ``concurrency`` at a time. On the signal, each
        run in progress finishes its current step, checkpoints and releases its lease.

        ``max_running`` caps how many of this agent's runs hold a live lease at once
        across every worker and process sharing the store. See ``docs/operating.md``.
        """
        from clew.runtime._worker import Worker

        Worker(self, concurrency=concurrency, poll=poll, ephemeral=ephemeral, max_running=max_running).run()

    def resume(
        self,
        run_id: str,
        answer: Any = AgentBase._NO_ANSWER,
        *,
        actor: str | None = None,
        branch: str | None = None,
        ephemeral: Mapping[str, Any] | None = None,
    ) -> Run[S]:
        """Continue a paused branch with ``answer``, or a failed or interrupted one.

        Without ``branch``, the run's only branch that can go on (the only paused one,
        when answering) is resumed; with several, :class:`RunStatusError` lists them.

        Raises:
            RunStatusError: the branch is completed or cancelled, an answer is given to a
                branch that is not paused, or no single branch can be chosen.
            RunLockedError: another worker is executing the branch.
            LeaseLostError: another worker took the branch over while this one ran it.
        """
        lease = self._sync(_engine.prepare_resume(self, run_id, branch, answer, actor, self.worker_id))
        log.info("run %s resumed (agent %s, branch %s, actor %s)", run_id, self.name, lease.branch, actor)
        return self._run_sync(self._keeper(lease), ephemeral)

    def cancel(
        self, run_id: str, branch: str | None = None, *, actor: str | None = None, reason: str | None = None
    ) -> list[BranchRecord]:
        """Cancel a branch (or, without ``branch``, every unfinished branch of the run).

        Journaled with ``actor`` and ``reason``; the branch's lease ends and its epoch
        grows, so a worker running it is fenced out at its next write. A cancelled
        branch never advances again (fork from it to go on). Returns the branches cancelled.

        Raises:
            RunStatusError: the named branch is already completed or cancelled.
        """
        return self._sync(self._cancel(run_id, branch, actor, reason))  # type: ignore[no-any-return]

    def edit(
        self,
        run_id: str,
        *,
        update: Mapping[str, Any],
        actor: str | None = None,
        reason: str | None = None,
        branch: str | None = None,
    ) -> CheckpointRecord:
        """Change a paused run's state; records an ``edit`` checkpoint with actor and reason."""
        return self._sync(self._edit(run_id, update, actor, reason, branch))  # type: ignore[no-any-return]

    @overload
    def fork(
        self,
        checkpoint_id: str,
        *,
        branch: str,
        update: Mapping[str, Any] | None = ...,
        actor: str | None = ...,
        reason: str | None = ...,
        run: Literal[True] = ...,
        run_id: str | None = ...,
        ephemeral: Mapping[str, Any] | None = ...,
    ) -> Run[S]: ...

    @overload
    def fork(
        self,
        checkpoint_id: str,
        *,
        branch: str,
        update: Mapping[str, Any] | None = ...,
        actor: str | None = ...,
        reason: str | None = ...,
        run: Literal[False],
        run_id: str | None = ...,
        ephemeral: Mapping[str, Any] | None = ...,
    ) -> str: ...

    @overload
    def fork(
        self,
        checkpoint_id: str,
        *,
        branch: str,
        update: Mapping[str, Any] | None = ...,
        actor: str | None = ...,
        reason: str | None = ...,
        run: bool = ...,
        run_id: str | None = ...,
        ephemeral: Mapping[str, Any] | None = ...,
    ) -> Run[S] | str: ...

    def fork(
        self,
        checkpoint_id: str,
        *,
        branch: str,
        update: Mapping[str, Any] | None = None,
        actor: str | None = None,
        reason: str | None = None,
        run: bool = True,
        run_id: str | None = None,
        ephemeral: Mapping[str, Any] | None = None,
    ) -> Run[S] | str:
        """Start branch ``branch`` at a checkpoint, optionally with an edited state.

        With ``run=True`` (the default) the branch is executed and its :class:`Run`
        returned; otherwise the run id.
        """
        keeper = self._sync(self._fork(checkpoint_id, branch, update, actor, reason, run_id))
        if not run:
            self._sync(self._finish(keeper))
            return str(keeper.lease.run_id)
        return self._run_sync(keeper, ephemeral)

    def replay(self, checkpoint_id: str, *, branch: str, run_id: str | None = None) -> Run[S]:
        """Run again from a checkpoint on a new branch (a fork without an update)."""
        return self.fork(checkpoint_id, branch=branch, run_id=run_id)

    def history(self, run_id: str, *, branch: str = "main") -> list[CheckpointRecord]:
        """A branch's checkpoints, newest first (metadata only)."""
        return self._sync(self._history(run_id, branch))  # type: ignore[no-any-return]

    def state_at(
        self, checkpoint_id: str, *, run_id: str | None = None, ephemeral: Mapping[str, Any] | None = None
    ) -> S:
        """The state as it was at a checkpoint."""
        return self._sync(self._state_at(checkpoint_id, run_id, ephemeral))  # type: ignore[no-any-return]

    def migrate(self, *, runs: int | None = None, actor: str = "clew migrate") -> MigrateReport:
        """Rewrite paused branches whose head has an older schema version as the current one.

        Each is an ``edit`` checkpoint on top of the old head (hash-chained, journaled with
        ``actor`` and the versions as its reason), holding the upcast state: the run
        resumes where it paused, and no longer needs the upcasters. Heads of other
        branches are left as they are (upcast when loaded) and reported as skipped.

        Raises:
            NoUpcasterError: a head with no way to the current version (nothing of its run is written).
        """
        report = MigrateReport()
        for run_id, b, head in self._sync(old_heads(self, runs=runs)):
            old = self._upcasters.stored_version(head.metadata)
            if b.status != "paused":
                report.skipped.append((run_id, b.name, f"{b.status}: upcast when loaded"))
                continue
            reason = f"schema version {old} -> {self._upcasters.current}"
            ckpt = self.edit(run_id, update={}, actor=actor, reason=reason, branch=b.name)
            report.migrated.append((run_id, b.name, ckpt.checkpoint_id))
        return report

    def check_compat(self, *, runs: int | None = None) -> CompatReport:
        """Load every stored checkpoint of this agent with this code and report what would fail.

        Each checkpoint is loaded, brought up to date by the upcasters, checked against
        the state type, and its next step looked up. Nothing is written.

        Args:
            runs: check at most this many runs (newest first); all by default.
        """
        return self._sync(check_compat(self, runs=runs))  # type: ignore[no-any-return]

    def recover(self, *, limit: int = 10, ephemeral: Mapping[str, Any] | None = None) -> list[Run[S]]:
        """Claim branches of this agent's runs whose worker died (lease expired) and finish them.

        A branch taken over by yet another worker while this one ran it is left to that
        worker (its :class:`LeaseLostError` is logged, not raised).
        """
        st = self.store
        assert isinstance(st, Store)
        results = []
        for _ in range(limit):
            # One at a time: a claimed branch's lease is renewed only while it runs.
            claimed = st.claim_expired(owner=self.worker_id, ttl=self.lease_ttl, limit=1, agent=self.name)
            if not claimed:
                break
            lease = claimed[0]
            log.info(
                "run %s (branch %s) recovered by %s (agent %s, epoch %d)",
                lease.run_id,
                lease.branch,
                self.worker_id,
                self.name,
                lease.epoch,
            )
            try:
                results.append(self._run_sync(self._keeper(lease), ephemeral))
            except LeaseLostError as exc:
                log.warning("recover: %s", exc)
        return results

    def _ephemeral_of(self, state: S) -> dict[str, Any]:
        return {
            k: (state[k] if isinstance(state, dict) else getattr(state, k))
            for k in self._adapter.ephemeral
            if (k in state if isinstance(state, dict) else hasattr(state, k))
        }

    # -- async -----------------------------------------------------------------
    async def _async(self, program: Program, via: Any = None) -> Any:
        if not isinstance(self.store, AsyncStore):
            raise ConfigError("this agent has a sync store: use start/resume, or open the store with clew.open_async")
        return await run_async(program, via or self.store)

    @contextlib.asynccontextmanager
    async def _aheartbeat(self, keeper: LeaseKeeper) -> AsyncIterator[None]:
        st = self.store
        assert isinstance(st, AsyncStore)
        call = keeper.renew()

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.lease_ttl / 3)
                try:
                    keeper.renewed(await getattr(st, call.method)(**call.kwargs))
                except LeaseLostError as exc:
                    keeper.mark_lost(exc)
                    return
                except Exception:  # noqa: S112 - a missed beat is retried at the next
                    continue

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _arun(self, keeper: LeaseKeeper, ephemeral: Mapping[str, Any] | None) -> Run[S]:
        loop = asyncio.get_running_loop()
        st = Scrubbing(self.store, ephemeral)  # ephemeral text never reaches the journal

        def runner_for(fn: Callable[..., Any]) -> Any:
            if inspect.iscoroutinefunction(fn):
                return async_runner(st)
            return thread_runner(st, loop)

        try:
            async with self._aheartbeat(keeper):
                with _tracing.span(*self._span(keeper)) as span:
                    result: Run[S] = await self._async(
                        _engine.execute(self, keeper, ephemeral=ephemeral, runner_for=runner_for, is_async=True),
                        st,
                    )
                    _tracing.set_attribute(span, "clew.status", result.status)
                _log_result(self.name, result)
                return result
        finally:
            await self._async(self._finish(keeper))

    async def aenqueue(
        self,
        state: S,
        *,
        run_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        priority: int = 0,
    ) -> str:
        """The async twin of :meth:`enqueue`."""
        rid: str = await self._async(self._enqueue(state, run_id, labels, priority))
        log.info("run %s queued (agent %s, priority %d)", rid, self.name, priority)
        return rid

    async def aserve(
        self,
        *,
        concurrency: int = 1,
        poll: float = 1.0,
        ephemeral: Mapping[str, Any] | None = None,
        max_running: int | None = None,
    ) -> None:
        """The async twin of :meth:`serve`, for an agent on an async store.

        Runs ``concurrency`` runs at once as tasks on the running event loop until the
        task is cancelled (or SIGTERM/SIGINT, when the loop runs in the main thread):
        then each run in progress finishes its current step, checkpoints and releases
        its lease before the cancellation goes on.
        """
        from clew.runtime._worker import AsyncWorker

        await AsyncWorker(self, concurrency=concurrency, poll=poll, ephemeral=ephemeral, max_running=max_running).run()

    async def astart(
        self,
        state: S,
        *,
        run_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        subject: str | None = None,
    ) -> Run[S]:
        """The async twin of :meth:`start`."""
        keeper = await self._async(self._begin(state, run_id, _with_subject(labels, subject)))
        return await self._arun(keeper, self._ephemeral_of(state))

    async def aresume(
        self,
        run_id: str,
        answer: Any = AgentBase._NO_ANSWER,
        *,
        actor: str | None = None,
        branch: str | None = None,
        ephemeral: Mapping[str, Any] | None = None,
    ) -> Run[S]:
        """The async twin of :meth:`resume`."""
        lease = await self._async(_engine.prepare_resume(self, run_id, branch, answer, actor, self.worker_id))
        return await self._arun(self._keeper(lease), ephemeral)

    async def acancel(
        self, run_id: str, branch: str | None = None, *, actor: str | None = None, reason: str | None = None
    ) -> list[BranchRecord]:
        """The async twin of :meth:`cancel`."""
        return await self._async(self._cancel(run_id, branch, actor, reason))  # type: ignore[no-any-return]

    async def aedit(
        self,
        run_id: str,
        *,
        update: Mapping[str, Any],
        actor: str | None = None,
        reason: str | None = None,
        branch: str | None = None,
    ) -> CheckpointRecord:
        """The async twin of :meth:`edit`."""
        return await self._async(self._edit(run_id, update, actor, reason, branch))  # type: ignore[no-any-return]

    @overload
    async def afork(
        self,
        checkpoint_id: str,
        *,
        branch: str,
        update: Mapping[str, Any] | None = ...,
        actor: str | None = ...,
        reason: str | None = ...,
        run: Literal[True] = ...,
        run_id: str | None = ...,
        ephemeral: Mapping[str, Any] | None = ...,
    ) -> Run[S]: ...

    @overload
    async def afork(
        self,
        checkpoint_id: str,
        *,
        branch: str,
        update: Mapping[str, Any] | None = ...,
        actor: str | None = ...,
        reason: str | None = ...,
        run: Literal[False],
        run_id: str | None = ...,
        ephemeral: Mapping[str, Any] | None = ...,
    ) -> str: ...

    @overload
    async def afork(
        self,
        checkpoint_id: str,
        *,
        branch: str,
        update: Mapping[str, Any] | None = ...,
        actor: str | None = ...,
        reason: str | None = ...,
        run: bool = ...,
        run_id: str | None = ...,
        ephemeral: Mapping[str, Any] | None = ...,
    ) -> Run[S] | str: ...

    async def afork(
        self,
        checkpoint_id: str,
        *,
        branch: str,
        update: Mapping[str, Any] | None = None,
        actor: str | None = None,
        reason: str | None = None,
        run: bool = True,
        run_id: str | None = None,
        ephemeral: Mapping[str, Any] | None = None,
    ) -> Run[S] | str:
        """The async twin of :meth:`fork`."""
        keeper = await self._async(self._fork(checkpoint_id, branch, update, actor, reason, run_id))
        if not run:
            await self._async(self._finish(keeper))
            return str(keeper.lease.run_id)
        return await self._arun(keeper, ephemeral)

    async def ahistory(self, run_id: str, *, branch: str = "main") -> list[CheckpointRecord]:
        """The async twin of :meth:`history`."""
        return await self._async(self._history(run_id, branch))  # type: ignore[no-any-return]

    async def astate_at(
        self, checkpoint_id: str, *, run_id: str | None = None, ephemeral: Mapping[str, Any] | None = None
    ) -> S:
        """The async twin of :meth:`state_at`."""
        return await self._async(self._state_at(checkpoint_id, run_id, ephemeral))  # type: ignore[no-any-return]

    async def amigrate(self, *, runs: int | None = None, actor: str = "clew migrate") -> MigrateReport:
        """The async twin of :meth:`migrate`."""
        report = MigrateReport()
        for run_id, b, head in await self._async(old_heads(self, runs=runs)):
            old = self._upcasters.stored_version(head.metadata)
            if b.status != "paused":
                report.skipped.append((run_id, b.name, f"{b.status}: upcast when loaded"))
                continue
            reason = f"schema version {old} -> {self._upcasters.current}"
            ckpt = await self.aedit(run_id, update={}, actor=actor, reason=reason, branch=b.name)
            report.migrated.append((run_id, b.name, ckpt.checkpoint_id))
        return report

    async def acheck_compat(self, *, runs: int | None = None) -> CompatReport:
        """The async twin of :meth:`check_compat`."""
        return await self._async(check_compat(self, runs=runs))  # type: ignore[no-any-return]

    async def arecover(self, *, limit: int = 10, ephemeral: Mapping[str, Any] | None = None) -> list[Run[S]]:
        """The async twin of :meth:`recover`."""
        st = self.store
        assert isinstance(st, AsyncStore)
        results = []
        for _ in range(limit):
            claimed = await st.claim_expired(owner=self.worker_id, ttl=self.lease_ttl, limit=1, agent=self.name)
            if not claimed:
                break
            try:
                results.append(await self._arun(self._keeper(claimed[0]), ephemeral))
            except LeaseLostError as exc:
                log.warning("recover: %s", exc)
        return results

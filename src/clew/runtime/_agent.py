"""The agent API: declare steps, then start, resume, edit, fork, replay and recover runs."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, overload

from clew.errors import ConfigError, LeaseError, RunStatusError
from clew.runtime import _engine
from clew.runtime._adapter import StateAdapter
from clew.runtime._compat import CompatReport, check_compat
from clew.runtime._context import async_runner, sync_runner, thread_runner
from clew.runtime._effects import Program, run_async, run_sync
from clew.runtime._engine import PAUSE_KINDS, Run, store
from clew.runtime._policy import NO_RETRY, Retry
from clew.runtime._redact import Redactor, Scrubbing
from clew.runtime._upcast import Upcaster, Upcasters
from clew.store import SUBJECT_LABEL, AsyncStore, CheckpointRecord, Store

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
        worker_id: str | None = None,
    ) -> None:
        if on_version_mismatch not in ("warn", "refuse"):
            raise ConfigError("on_version_mismatch must be 'warn' or 'refuse'")
        self.name = name
        self.store = store
        self.version = version
        self.schema_version = schema_version
        self.on_version_mismatch = on_version_mismatch
        self.lease_ttl = lease_ttl
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
        run = yield store(
            "create_run",
            run_id=run_id,
            agent=self.name,
            labels=labels,
            metadata={"branch": "main"},
            lease_owner=self.worker_id,
            lease_ttl=self.lease_ttl,
            state=fields,
            checkpoint_metadata={**self._meta(), "next": self._start},
        )
        return run.run_id

    def _edit(
        self, run_id: str, update: Mapping[str, Any], actor: str | None, reason: str | None, branch: str | None
    ) -> Program:
        run = yield store("get_run", run_id=run_id)
        if run.status != "paused":
            raise RunStatusError(f"run {run_id!r} is {run.status}; only a paused run can be edited (fork instead)")
        branch = branch or run.metadata.get("branch", "main")
        yield store("acquire_lease", run_id=run_id, owner=self.worker_id, ttl=self.lease_ttl)
        try:
            b = yield store("get_branch", run_id=run_id, name=branch)
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
            )
        finally:
            yield store("release_lease", run_id=run_id, owner=self.worker_id)
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
        yield store("acquire_lease", run_id=run_id, owner=self.worker_id, ttl=self.lease_ttl)
        try:
            return (yield from self._fork_locked(src, checkpoint_id, branch, state, update, actor, reason))
        except BaseException:
            yield store("release_lease", run_id=run_id, owner=self.worker_id)
            raise

    def _fork_locked(
        self,
        src: CheckpointRecord,
        checkpoint_id: str,
        branch: str,
        state: S,
        update: Mapping[str, Any] | None,
        actor: str | None,
        reason: str | None,
    ) -> Program:
        run_id = src.run_id
        keep = {k: v for k, v in _resume_point(src).items() if k in src.metadata}
        kind = "fork"
        if src.kind in PAUSE_KINDS:
            kind = "edit"  # still paused at the same question, on the new branch
        yield store(
            "fork",
            run_id=run_id,
            checkpoint_id=checkpoint_id,
            branch=branch,
            state=self._adapter.to_fields(state),
            kind=kind,
            metadata={**self._meta(), **keep, "forked_from": checkpoint_id, "actor": actor, "reason": reason},
            journal=[
                ("fork", {"from": checkpoint_id, "actor": actor, "reason": reason, "fields": sorted(update or {})})
            ],
            status="paused" if kind == "edit" else "running",  # with the fork, in its transaction
        )
        run = yield store("get_run", run_id=run_id)
        yield store("update_run", run_id=run_id, metadata={**run.metadata, "branch": branch})
        return run_id

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

    def _finish(self, run_id: str) -> Program:
        yield store("release_lease", run_id=run_id, owner=self.worker_id)


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
        lease_ttl: seconds a worker's lease on a run lasts without a heartbeat.
        worker_id: this worker's name in leases (host:pid:random by default).
    """

    # -- sync ------------------------------------------------------------------
    def _sync(self, program: Program, via: Any = None) -> Any:
        if not isinstance(self.store, Store):
            raise ConfigError("this agent has an async store: use the a-methods (await agent.astart(...))")
        return run_sync(program, via or self.store)

    @contextlib.contextmanager
    def _heartbeat(self, run_id: str) -> Iterator[None]:
        stop = threading.Event()
        st = self.store
        assert isinstance(st, Store)

        def beat() -> None:
            while not stop.wait(self.lease_ttl / 3):
                try:
                    st.renew_lease(run_id, owner=self.worker_id, ttl=self.lease_ttl)
                except LeaseError:
                    return  # taken over: our next commit will conflict and stop
                except Exception:  # noqa: S112 - a missed beat is retried at the next
                    continue

        t = threading.Thread(target=beat, name=f"clew-heartbeat-{run_id}", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()

    def _run_sync(self, run_id: str, branch: str, ephemeral: Mapping[str, Any] | None) -> Run[S]:
        st = Scrubbing(self.store, ephemeral)  # ephemeral text never reaches the journal
        try:
            with self._heartbeat(run_id):
                result: Run[S] = self._sync(
                    _engine.execute(
                        self,
                        run_id,
                        branch,
                        ephemeral=ephemeral,
                        runner_for=lambda fn: sync_runner(st),
                        is_async=False,
                    ),
                    st,
                )
                return result
        finally:
            self._sync(self._finish(run_id))

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
        rid = self._sync(self._begin(state, run_id, _with_subject(labels, subject)))
        return self._run_sync(rid, "main", self._ephemeral_of(state))

    def resume(
        self,
        run_id: str,
        answer: Any = AgentBase._NO_ANSWER,
        *,
        actor: str | None = None,
        branch: str | None = None,
        ephemeral: Mapping[str, Any] | None = None,
    ) -> Run[S]:
        """Continue a paused run with ``answer``, or a failed or interrupted one.

        Raises:
            RunStatusError: the run is completed, or an answer is given to a run that is not paused.
            RunLockedError: another worker is executing the run.
        """
        b = self._sync(_engine.prepare_resume(self, run_id, branch, answer, actor, self.worker_id))
        return self._run_sync(run_id, b, ephemeral)

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
        rid = self._sync(self._fork(checkpoint_id, branch, update, actor, reason, run_id))
        if not run:
            self._sync(self._finish(rid))
            return str(rid)
        return self._run_sync(rid, branch, ephemeral)

    def replay(self, checkpoint_id: str, *, branch: str, run_id: str | None = None) -> Run[S]:
        """Run again from a checkpoint on a new branch (a fork without an update)."""
        result = self.fork(checkpoint_id, branch=branch, run_id=run_id)
        assert isinstance(result, Run)
        return result

    def history(self, run_id: str, *, branch: str = "main") -> list[CheckpointRecord]:
        """A branch's checkpoints, newest first (metadata only)."""
        return self._sync(self._history(run_id, branch))  # type: ignore[no-any-return]

    def state_at(
        self, checkpoint_id: str, *, run_id: str | None = None, ephemeral: Mapping[str, Any] | None = None
    ) -> S:
        """The state as it was at a checkpoint."""
        return self._sync(self._state_at(checkpoint_id, run_id, ephemeral))  # type: ignore[no-any-return]

    def check_compat(self, *, runs: int | None = None) -> CompatReport:
        """Load every stored checkpoint of this agent with this code and report what would fail.

        Each checkpoint is loaded, brought up to date by the upcasters, checked against
        the state type, and its next step looked up. Nothing is written.

        Args:
            runs: check at most this many runs (newest first); all by default.
        """
        return self._sync(check_compat(self, runs=runs))  # type: ignore[no-any-return]

    def recover(self, *, limit: int = 10, ephemeral: Mapping[str, Any] | None = None) -> list[Run[S]]:
        """Claim runs of this agent whose worker died (lease expired) and finish them."""
        st = self.store
        assert isinstance(st, Store)
        results = []
        for _ in range(limit):
            # One at a time: a claimed run's lease is renewed only while it runs.
            claimed = st.claim_expired(owner=self.worker_id, ttl=self.lease_ttl, limit=1, agent=self.name)
            if not claimed:
                break
            r = claimed[0]
            results.append(self._run_sync(r.run_id, r.metadata.get("branch", "main"), ephemeral))
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
    async def _aheartbeat(self, run_id: str) -> AsyncIterator[None]:
        st = self.store
        assert isinstance(st, AsyncStore)

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.lease_ttl / 3)
                try:
                    await st.renew_lease(run_id, owner=self.worker_id, ttl=self.lease_ttl)
                except LeaseError:
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

    async def _arun(self, run_id: str, branch: str, ephemeral: Mapping[str, Any] | None) -> Run[S]:
        loop = asyncio.get_running_loop()
        st = Scrubbing(self.store, ephemeral)  # ephemeral text never reaches the journal

        def runner_for(fn: Callable[..., Any]) -> Any:
            if inspect.iscoroutinefunction(fn):
                return async_runner(st)
            return thread_runner(st, loop)

        try:
            async with self._aheartbeat(run_id):
                result: Run[S] = await self._async(
                    _engine.execute(self, run_id, branch, ephemeral=ephemeral, runner_for=runner_for, is_async=True),
                    st,
                )
                return result
        finally:
            await self._async(self._finish(run_id))

    async def astart(
        self,
        state: S,
        *,
        run_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        subject: str | None = None,
    ) -> Run[S]:
        """The async twin of :meth:`start`."""
        rid = await self._async(self._begin(state, run_id, _with_subject(labels, subject)))
        return await self._arun(rid, "main", self._ephemeral_of(state))

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
        b = await self._async(_engine.prepare_resume(self, run_id, branch, answer, actor, self.worker_id))
        return await self._arun(run_id, b, ephemeral)

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
        rid = await self._async(self._fork(checkpoint_id, branch, update, actor, reason, run_id))
        if not run:
            await self._async(self._finish(rid))
            return str(rid)
        return await self._arun(rid, branch, ephemeral)

    async def ahistory(self, run_id: str, *, branch: str = "main") -> list[CheckpointRecord]:
        """The async twin of :meth:`history`."""
        return await self._async(self._history(run_id, branch))  # type: ignore[no-any-return]

    async def astate_at(
        self, checkpoint_id: str, *, run_id: str | None = None, ephemeral: Mapping[str, Any] | None = None
    ) -> S:
        """The async twin of :meth:`state_at`."""
        return await self._async(self._state_at(checkpoint_id, run_id, ephemeral))  # type: ignore[no-any-return]

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
            r = claimed[0]
            results.append(await self._arun(r.run_id, r.metadata.get("branch", "main"), ephemeral))
        return results

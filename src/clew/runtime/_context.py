"""The step context: journaled tool calls (the ledger) and interrupts.

Every tool call made through :meth:`Context.call` writes its *intent* to the journal
before it runs and its *outcome* after. The entries of one step execution are keyed
by the checkpoint the step started from (``exec``) and by the tool's name and
occurrence (``billing#0``), so when the step runs again after a crash or a pause:

- a call with a recorded result returns that result without running;
- a call with a recorded error runs again (a new attempt);
- a call with an intent and no outcome has an *unknown outcome*: an idempotent tool
  runs again with the same idempotency key; any other goes to its ``reconcile`` hook,
  or the run pauses for a person, who answers ``{"result": ...}`` or
  ``{"rerun": True}``. It is never silently called twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clew.runtime import _tracing
from clew.runtime._effects import Invoke, Program, Sleep, StoreCall, run_async, run_sync
from clew.runtime._lease import LeaseKeeper
from clew.runtime._policy import NO_RETRY, Retry
from clew.store import JournalEntry

MISSING: Any = object()
log = logging.getLogger("clew.runtime")


def error_record(exc: BaseException) -> dict[str, Any]:
    """The journaled form of an exception: type, message and a short traceback."""
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-4)
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc)[:2000],
        "traceback": "".join(tb)[-4000:],
    }


@dataclass(slots=True)
class CallRecord:
    name: str
    attempts: int = 0
    last: str = ""  # "intent" or "outcome"
    ok: bool = False
    result: Any = None
    idempotent: bool = False


@dataclass(slots=True)
class Ledger:
    """What the journal says about one step execution."""

    exec_id: str
    calls: dict[str, CallRecord] = field(default_factory=dict)
    answers: dict[int, Any] = field(default_factory=dict)
    resolutions: dict[str, Any] = field(default_factory=dict)
    failed_attempts: int = 0

    @classmethod
    def from_entries(cls, exec_id: str, entries: Sequence[JournalEntry]) -> Ledger:
        ledger = cls(exec_id)
        for e in entries:
            data = e.data if isinstance(e.data, dict) else {}
            if data.get("exec") != exec_id:
                continue
            if e.kind == "call.intent":
                rec = ledger.calls.setdefault(data["key"], CallRecord(data["name"]))
                rec.attempts, rec.last, rec.idempotent = data["attempt"], "intent", data.get("idempotent", False)
            elif e.kind == "call.outcome":
                rec = ledger.calls.setdefault(data["key"], CallRecord(data["name"]))
                rec.last, rec.ok = "outcome", data["ok"]
                rec.result = data.get("result")
                if "idempotent" in data:  # an idempotent call recorded as one entry
                    rec.attempts, rec.idempotent = data.get("attempt", rec.attempts), data["idempotent"]
            elif e.kind == "answer":
                if "call" in data:
                    ledger.resolutions[data["call"]] = data["answer"]
                else:
                    ledger.answers[data["index"]] = data["answer"]
            elif e.kind == "step.error":
                ledger.failed_attempts += 1
            elif e.kind == "step.reset":
                ledger.failed_attempts = 0
        return ledger


class Interrupted(Exception):
    """Raised inside a step to pause the run; carried to the engine."""

    def __init__(self, payload: Any, index: int, call: str | None = None) -> None:
        super().__init__("run paused")
        self.payload = payload
        self.index = index
        self.call = call


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What a reconcile hook is told about a call whose outcome was lost."""

    name: str
    key: str
    idempotency_key: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


class Context:
    """What a step receives besides its state.

    Attributes:
        run_id: the run.
        branch: the branch being advanced.
        step: this step's name.
        attempt: this step's try number, from 1.
        idempotency_key: while a tool call runs, its stable key: the same on every
            retry and after a crash, so external services can deduplicate.
    """

    def __init__(
        self,
        *,
        run_id: str,
        branch: str,
        step: str,
        attempt: int,
        ledger: Ledger,
        runner: Callable[[Program], Any],
        lease: LeaseKeeper | None = None,
        defer_idempotent: bool = False,
    ) -> None:
        self.run_id = run_id
        self._defer = defer_idempotent
        self.branch = branch
        self.step = step
        self.attempt = attempt
        self.idempotency_key: str | None = None
        self._ledger = ledger
        self._runner = runner
        self._lease = lease
        self._seen: dict[str, int] = {}
        self._interrupts = 0
        self.replayed: list[str] = []  # names of calls answered from the ledger
        self._deferred: list[tuple[str, dict[str, Any]]] = []  # idempotent calls' entries, not yet written

    @property
    def fencing_token(self) -> int:
        """The epoch of this worker's lease on the branch: it grows on every takeover.

        Pass it with side effects to services that can remember the highest token they
        have seen and reject lower ones: that is the only guard against a worker that
        stalls *during* a call (a long GC pause, a frozen VM) while another takes over.
        0 when the run holds no lease.
        """
        return self._lease.epoch if self._lease is not None else 0

    def interrupt(self, payload: Any = None) -> Any:
        """Pause the run durably with ``payload``; returns the answer once resumed.

        Several interrupts in one step are matched to answers in order.
        """
        index = self._interrupts
        self._interrupts += 1
        if index in self._ledger.answers:
            return self._ledger.answers[index]
        raise Interrupted(payload, index)

    def key_for(self, name: str) -> str:
        """The idempotency key the next call of tool ``name`` will get."""
        return self._idem(f"{self._ledger.exec_id}/{name}#{self._seen.get(name, 0)}")

    def _idem(self, key: str) -> str:
        return hashlib.sha256(f"{self.run_id}\0{self.branch}\0{key}".encode()).hexdigest()[:32]

    def call(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        idempotent: bool = False,
        retry: Retry | None = None,
        timeout: float | None = None,
        reconcile: Callable[[CallInfo], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` as a journaled tool call named ``name``.

        In an ``async def`` step, ``await`` it. See the module docstring for what
        happens on resume.

        Args:
            name: the tool's name; with its occurrence in the step it keys the ledger.
            fn: the function (sync or async).
            idempotent: safe to run twice with the same ``ctx.idempotency_key``.
            retry: tries, backoff and which errors to retry.
            timeout: seconds before the call counts as failed (``CallTimeoutError``).
            reconcile: for a non-idempotent call whose outcome was lost in a crash:
                given a :class:`CallInfo`, find out what happened and return the
                result (or raise).
        """
        program = self._call(name, fn, args, kwargs, idempotent, retry or NO_RETRY, timeout, reconcile)
        return self._runner(program)

    def take_deferred(self) -> list[tuple[str, dict[str, Any]]]:
        """The journal entries of idempotent calls not written yet, to go with the step's
        next write (its checkpoint, its error, its pause); forgotten here."""
        rows, self._deferred = self._deferred, []
        return rows

    def _rows(self, entries: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
        return [(kind, {"exec": self._ledger.exec_id, **data}) for kind, data in entries]

    def _journal(self, *entries: tuple[str, dict[str, Any]]) -> StoreCall:
        rows = [*self.take_deferred(), *self._rows(entries)]  # earlier deferred entries go first
        lease = self._lease.lease if self._lease is not None else None
        return StoreCall(
            "append_journal", {"run_id": self.run_id, "branch": self.branch, "entries": rows, "lease": lease}
        )

    def _call(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotent: bool,
        retry: Retry,
        timeout: float | None,
        reconcile: Callable[[CallInfo], Any] | None,
    ) -> Program:
        n = self._seen.get(name, 0)
        self._seen[name] = n + 1
        key = f"{self._ledger.exec_id}/{name}#{n}"
        idem = self._idem(key)
        rec = self._ledger.calls.get(key)
        if rec is not None and rec.last == "outcome" and rec.ok:
            self.replayed.append(name)
            return rec.result
        if rec is not None and rec.last == "intent":  # the outcome was lost in a crash
            resolution = self._ledger.resolutions.get(key, MISSING)
            if isinstance(resolution, Mapping) and "result" in resolution:
                yield self._journal(
                    (
                        "call.outcome",
                        {"key": key, "name": name, "ok": True, "result": resolution["result"], "resolved": True},
                    )
                )
                return resolution["result"]
            if resolution is MISSING and not idempotent:
                if reconcile is None:
                    raise Interrupted(
                        {
                            "unknown_outcome": {
                                "call": name,
                                "key": key,
                                "idempotency_key": idem,
                                "attempt": rec.attempts,
                            }
                        },
                        -1,
                        call=key,
                    )
                info = CallInfo(name, key, idem, args, kwargs)
                result = yield Invoke(reconcile, (info,))
                yield self._journal(
                    ("call.outcome", {"key": key, "name": name, "ok": True, "result": result, "reconciled": True})
                )
                return result
        attempt = (rec.attempts if rec is not None else 0) + 1
        while True:
            intent = (
                "call.intent",
                {"key": key, "name": name, "attempt": attempt, "idempotent": idempotent, "idempotency_key": idem},
            )
            # A non-idempotent call's intent is durable before the call runs. An
            # idempotent call may safely run again after a crash (with the same key), so
            # its intent and outcome are written together after it: at once, or with
            # idempotent_calls="with_checkpoint" (a result only; a failure is written at
            # once, so the attempt count survives a crash) with the step's next write, its
            # checkpoint as a rule: then a step is one transaction.
            # Written with its outcome, the intent would only repeat it: with_checkpoint
            # records an idempotent call as one entry, its outcome naming the key.
            folded = idempotent and self._defer
            pending: tuple[tuple[str, dict[str, Any]], ...] = (intent,) if idempotent and not folded else ()
            marks = {"idempotent": True, "idempotency_key": idem} if folded else {}
            if self._lease is not None:
                if idempotent:
                    self._lease.check()
                else:
                    yield from self._lease.ensure()  # enough lease left, or renewed, or stop
            if not idempotent:
                yield self._journal(intent)  # fenced: a worker that lost its lease stops here
            started = time.perf_counter()
            self.idempotency_key = idem
            attrs = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": idem,
                "clew.run_id": self.run_id,
                "clew.branch": self.branch,
                "clew.attempt": attempt,
            }
            try:
                with _tracing.span(f"execute_tool {name}", attrs, benign=(GeneratorExit,)):
                    result = yield Invoke(fn, args, kwargs, timeout)
            except Exception as exc:
                took = round((time.perf_counter() - started) * 1000, 3)
                yield self._journal(
                    *pending,
                    (
                        "call.outcome",
                        {
                            "key": key,
                            "name": name,
                            "attempt": attempt,
                            "ok": False,
                            "error": error_record(exc),
                            "duration_ms": took,
                            **marks,
                        },
                    ),
                )
                if not retry.retries(exc, attempt):
                    raise
                log.info(
                    "run %s call %s failed (attempt %d: %s); retrying", self.run_id, key, attempt, type(exc).__name__
                )
                yield Sleep(retry.delay(attempt))
                attempt += 1
                continue
            finally:
                self.idempotency_key = None
            took = round((time.perf_counter() - started) * 1000, 3)
            outcome = (
                "call.outcome",
                {
                    "key": key,
                    "name": name,
                    "attempt": attempt,
                    "ok": True,
                    "result": result,
                    "duration_ms": took,
                    **marks,
                },
            )
            if folded:
                self._deferred.extend(self._rows((*pending, outcome)))
            else:
                yield self._journal(*pending, outcome)
            return result


def sync_runner(store: Any) -> Callable[[Program], Any]:
    return lambda program: run_sync(program, store)


def async_runner(store: Any) -> Callable[[Program], Awaitable[Any]]:
    return lambda program: run_async(program, store)


def thread_runner(store: Any, loop: asyncio.AbstractEventLoop) -> Callable[[Program], Any]:
    """For a plain step run in a worker thread by an async agent: effects go to the loop,
    in the step's context (so a tool call's span is the step span's child)."""

    def run(program: Program) -> Any:
        context = contextvars.copy_context()
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        async def go() -> None:
            try:
                done.set_result(await run_async(program, store))
            except BaseException as exc:  # handed to the waiting thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(lambda: loop.create_task(go(), context=context))
        return done.result()

    return run

"""The agent the crash trials run, its fake external services, and how a trial drives it.

Imported as ``tests.crash._scenario`` both by the test (the reference run and the
checks) and by the child processes (``python -m tests.crash._batch``), so the state
class has one name in every process.

Every external side effect is appended to ``<effects>/<run_id>.log`` as one
``write`` (``O_APPEND``: whole lines even under SIGKILL): ``tool key result``, keyed
by ``ctx.idempotency_key``. The checks count them; the reconcile hooks and the
"person" who answers an unknown outcome look keys up there, as one would ask a
payment provider.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import clew
from clew.errors import NotFoundError, RunLockedError

NON_IDEMPOTENT = ("card", "ledger", "ship", "notify")
IDEMPOTENT = ("catalog", "rate", "poll")
LOOPS = 4
SERVICE_TIME = float(os.environ.get("CLEW_CRASH_SERVICE_TIME", "0.002"))  # seconds each service call takes


class Job(BaseModel):
    order: str
    log: list[str] = []
    receipts: dict[str, str] = {}
    approved_by: str | None = None


# -- crash points: a child dies at the K-th one ------------------------------------

_points: dict[str, Any] = {"n": 0, "kill_at": None}


def arm(kill_at: int | None) -> None:
    _points.update(n=0, kill_at=kill_at)


def point() -> None:
    """A place a process may die: each store call (before and after), each side effect (before and after)."""
    _points["n"] += 1
    if _points["n"] == _points["kill_at"]:
        os.kill(os.getpid(), signal.SIGKILL)


def points_passed() -> int:
    return int(_points["n"])


STORE_METHODS = (
    "create_run",
    "get_run",
    "update_run",
    "set_branch_status",
    "commit",
    "get_checkpoint",
    "load_state",
    "list_checkpoints",
    "get_branch",
    "list_branches",
    "fork",
    "append_journal",
    "list_journal",
    "acquire_lease",
    "release_lease",
    "claim_expired",
)


def instrument(store: clew.Store) -> None:
    """Put a crash point before and after every store call the runtime makes (not the heartbeat's)."""
    for name in STORE_METHODS:
        method = getattr(store, name)

        def wrapped(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            point()
            result = _method(*args, **kwargs)
            point()
            return result

        setattr(store, name, wrapped)


# -- the external services -------------------------------------------------------


class StaleTokenError(ConnectionError):
    """The service refused a write: a newer holder of the run's lease has written."""


class Effects:
    """The side-effect log of one run, kept by a service that honours fencing tokens.

    A write carries the writer's fencing token (its lease epoch); one older than the
    newest the service has seen for the run is refused and logged as ``<tool>~stale``,
    as docs/runtime.md tells services to do. That covers a worker that stalls *after*
    clew let it start a call (past its lease, on a loaded machine): no lease check
    inside clew can cover that moment, only the service can.
    """

    def __init__(self, directory: Path, run_id: str) -> None:
        self.path = directory / f"{run_id}.log"

    def write(self, tool: str, key: str | None, result: str, token: int | None = None) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if token is not None:
                newest = max((t for *_, t in self._read() if t is not None), default=-1)
                if token < newest:
                    os.write(fd, f"{tool}~stale {key} {result} {token}\n".encode())
                    raise StaleTokenError(f"{tool}: fencing token {token} is older than {newest}")
            os.write(fd, f"{tool} {key} {result} {'-' if token is None else token}\n".encode())
        finally:
            os.close(fd)  # releases the lock

    def _read(self) -> list[tuple[str, str, str, int | None]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            tool, key, result, token = line.split(" ")
            out.append((tool, key, result, None if token == "-" else int(token)))
        return out

    def lines(self) -> list[tuple[str, str, str]]:
        return [(tool, key, result) for tool, key, result, _ in self._read()]

    def lookup(self, tool: str, key: str) -> str | None:
        return next((r for t, k, r in self.lines() if t == tool and k == key), None)

    def per_key(self) -> dict[str, Counter[str]]:
        """tool -> how many times each key ran (refused stale writes count under ``<tool>~stale``)."""
        out: dict[str, Counter[str]] = {}
        for tool, key, _ in self.lines():
            out.setdefault(tool, Counter())[key] += 1
        return out


def make_agent(
    store: clew.Store,
    effects_dir: Path,
    *,
    interactive: bool = True,
    worker_id: str | None = None,
    lease_ttl: float = 5,
) -> clew.Agent[Job]:
    """prepare -> charge -> flaky -> loop x4 -> [review (interrupt) -> notify] -> ship.

    Non-idempotent calls: ``card``, ``ledger`` and ``ship`` with a reconcile hook,
    ``notify`` without one (a lost outcome pauses the run for a person). With
    ``interactive=False`` there is no review and no notify: nobody has to answer.
    """
    agent = clew.Agent(
        "crashy",
        state=Job,
        store=store,
        worker_id=worker_id,
        lease_ttl=lease_ttl,
        version="1",
        # test_random_kills runs the trials in both modes (the batch processes inherit it)
        idempotent_calls=os.environ.get("CLEW_CRASH_IDEMPOTENT_CALLS", "at_once"),  # type: ignore[arg-type]
    )

    def service(ctx: clew.Context, tool: str, arg: str, *, fail_first: bool = False) -> Any:
        effects = Effects(effects_dir, ctx.run_id)
        result = f"{tool}-{arg}"

        def fn(a: str) -> str:
            key = ctx.idempotency_key  # set while the call runs
            point()
            time.sleep(SERVICE_TIME)
            if fail_first and effects.lookup(f"{tool}!", str(key)) is None:
                effects.write(f"{tool}!", key, "failed")
                raise ConnectionError(f"{tool} hiccup")
            effects.write(tool, key, result, ctx.fencing_token)
            point()
            return result

        return fn

    def reconcile(tool: str, ctx: clew.Context) -> Any:
        def hook(info: clew.CallInfo) -> str:
            found = Effects(effects_dir, ctx.run_id).lookup(tool, info.idempotency_key)
            if found is not None:
                return found
            # Never happened: do it now, under the same key (a crash here is reconciled the same way).
            return service_again(ctx, tool, info)

        return hook

    def service_again(ctx: clew.Context, tool: str, info: clew.CallInfo) -> str:
        effects = Effects(effects_dir, ctx.run_id)
        point()
        result = f"{tool}-{info.args[0]}"
        effects.write(tool, info.idempotency_key, result, ctx.fencing_token)
        point()
        return result

    @agent.step(start=True)
    def prepare(state: Job, ctx: clew.Context) -> str:
        for i in range(2):
            item = ctx.call("catalog", service(ctx, "catalog", f"{state.order}.{i}"), state.order, idempotent=True)
            state.log.append(item)
        return "charge"

    @agent.step
    def charge(state: Job, ctx: clew.Context) -> str:
        for tool in ("card", "ledger"):
            state.receipts[tool] = ctx.call(
                tool, service(ctx, tool, state.order), state.order, reconcile=reconcile(tool, ctx)
            )
        return "flaky"

    # Fails its first try before any call (a completed call in a failed try is replayed
    # by the retry, never run again: tests/runtime/test_ledger.py covers that case).
    @agent.step(retry=clew.Retry(attempts=3, backoff=0))
    def flaky(state: Job, ctx: clew.Context) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("the step's first try fails")
        rate = ctx.call(
            "rate",
            service(ctx, "rate", state.order, fail_first=True),
            state.order,
            idempotent=True,
            retry=clew.Retry(attempts=3, backoff=0),
        )
        state.log.append(rate)
        return "loop"

    @agent.step
    def loop(state: Job, ctx: clew.Context) -> str:
        n = sum(1 for line in state.log if line.startswith("poll"))
        state.log.append(ctx.call("poll", service(ctx, "poll", f"{state.order}.{n}"), n, idempotent=True))
        if n + 1 < LOOPS:
            return "loop"
        return "review" if interactive else "ship"

    @agent.step
    def review(state: Job, ctx: clew.Context) -> str:
        answer = ctx.interrupt({"approve": state.order, "receipts": dict(state.receipts)})
        state.approved_by = answer["by"]
        return "notify"

    @agent.step
    def notify(state: Job, ctx: clew.Context) -> str:
        state.receipts["notify"] = ctx.call("notify", service(ctx, "notify", state.order), state.order)
        return "ship"

    @agent.step
    def ship(state: Job, ctx: clew.Context) -> None:
        state.receipts["ship"] = ctx.call(
            "ship", service(ctx, "ship", state.order), state.order, reconcile=reconcile("ship", ctx)
        )
        state.log.append("shipped")

    return agent


def initial(run_id: str) -> Job:
    return Job(order="A1")


def answer_for(store: clew.Store, effects_dir: Path, run_id: str) -> tuple[Any, str]:
    """What the person answers a paused run: approve a review; settle an unknown outcome from the log."""
    head = store.get_checkpoint(run_id, store.get_branch(run_id).head)  # type: ignore[arg-type]
    question = head.metadata.get("interrupt") or {}
    lost = question.get("unknown_outcome") if isinstance(question, dict) else None
    if lost:
        found = Effects(effects_dir, run_id).lookup(lost["call"], lost["idempotency_key"])
        return ({"result": found} if found is not None else {"rerun": True}), "ops"
    return {"by": "alice"}, "alice"


def drive(
    store: clew.Store,
    effects_dir: Path,
    run_id: str,
    *,
    worker_id: str,
    use_recover: bool = False,
    lease_ttl: float = 5,
    interactive: bool = True,
) -> dict[str, int]:
    """Bring a run to completion from wherever a crash left it; returns what it had to do."""
    agent = make_agent(store, effects_dir, worker_id=worker_id, lease_ttl=lease_ttl, interactive=interactive)
    did: Counter[str] = Counter()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            record = store.get_run(run_id)
        except NotFoundError:
            did["start"] += 1
            agent.start(initial(run_id), run_id=run_id)
            continue
        if record.status == "completed":
            return dict(did)
        if record.status not in ("running", "paused"):
            raise AssertionError(f"run {run_id} is {record.status}: {dict(record.metadata)}")
        if store.get_branch(run_id).head is None:
            # A run and its first checkpoint are one transaction: a kill can't split them.
            raise AssertionError(f"run {run_id} exists without its first checkpoint")
        try:
            if record.status == "paused":
                answer, actor = answer_for(store, effects_dir, run_id)
                did["answer"] += 1
                agent.resume(run_id, answer=answer, actor=actor)
            elif use_recover:
                did["recover"] += 1
                if not agent.recover(limit=1):
                    time.sleep(0.02)  # the dead worker's lease has not expired yet
            else:
                did["resume"] += 1
                agent.resume(run_id)  # the same worker id as the dead process: its lease is ours
        except RunLockedError:
            did["locked"] += 1  # another worker's recover() is finishing it
            time.sleep(0.02)
    raise TimeoutError(f"run {run_id} did not complete: {store.get_run(run_id)}")

"""A worker that stalls past its lease never runs a tool call again (fencing).

Worker A (a real process) runs a step that sleeps, then makes a non-idempotent call.
A is frozen with SIGSTOP past its lease; worker B recovers the branch and finishes the
run, charging once; A is thawed with SIGCONT. A must run nothing and write nothing:
its lease's epoch is stale, so the store refuses the intent (tested with the worker's
own guards switched off), and with them on, its heartbeat or the renewal it tries
before the call fails first. The same scenario runs in one process on every backend,
with threads and an event as the stall.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import clew
from clew.errors import ConfigError, LeaseLostError
from clew.runtime import _lease
from tests.conftest import StoreFactory
from tests.runtime import _proc

TTL = 1.0


def slow_charge_agent(store: clew.Store, log: Path, entered: Path, **options: Any) -> clew.Agent[dict[str, Any]]:
    agent: clew.Agent[dict[str, Any]] = clew.Agent("fenced", state=dict, store=store, **options)

    @agent.step(start=True)
    def charge(state: dict[str, Any], ctx: clew.Context) -> None:
        entered.touch()
        time.sleep(0.6)  # frozen here, past the lease
        state["receipt"] = ctx.call(
            "charge", lambda: _proc.effects_log(log, "charge", f"{ctx.idempotency_key}:{ctx.fencing_token}")
        )

    return agent


# The worker's own guards (heartbeat, renewal before a risky call) switched off, so
# that only the store's fence stands between a zombie and a second charge.
_NO_GUARDS = """
import contextlib
from clew.runtime import _agent, _lease
_agent.Agent._heartbeat = lambda self, keeper: contextlib.nullcontext()
def _ensure(self):
    self.check()
    yield from ()
_lease.LeaseKeeper.ensure = _ensure
"""


@pytest.mark.slow
@pytest.mark.parametrize("guards", [False, True], ids=["fence-alone", "worker-guards"])
@pytest.mark.parametrize("trial", range(9))  # 18 runs per backend: under a minute each (measured 50-56 s)
def test_a_frozen_worker_never_charges_twice(
    shared_stores: StoreFactory, tmp_path: Path, guards: bool, trial: int
) -> None:
    """Processes on the backends they can share: a memory:// store lives in one process,
    so a second process could not take its branch over (see the threaded test below)."""
    log, entered = tmp_path / "effects", tmp_path / "entered"
    proc = _proc.child(
        ("" if guards else _NO_GUARDS)
        + f"""
from tests.runtime.test_fencing import slow_charge_agent
store = clew.open(URL)
agent = slow_charge_agent(store, Path({str(log)!r}), Path({str(entered)!r}), lease_ttl={TTL}, worker_id="A")
try:
    agent.start({{}}, run_id="r")
except clew.errors.LeaseLostError as exc:
    print("LOST", exc)
""",
        shared_stores.url,
    )
    try:
        deadline = time.monotonic() + 30
        while not entered.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGSTOP)
        store = shared_stores.open()
        time.sleep(TTL + 0.3)  # A's lease expires while it is frozen
        b = slow_charge_agent(store, log, tmp_path / "entered-b", lease_ttl=30, worker_id="B")
        [done] = b.recover()
        assert done.status == "completed"
        assert store.get_branch("r").epoch == 2  # B took over: the epoch moved on
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    out = _proc.finish(proc)
    assert out.startswith("LOST"), out
    charges = _proc.effects(log)
    assert len(charges) == 1, charges  # B's only: the zombie ran nothing
    assert charges[0][1].endswith(":2")  # made under B's fencing token
    intents = [e for e in store.list_journal("r") if e.kind == "call.intent"]
    assert len(intents) == 1  # the zombie's intent never reached the journal
    assert store.get_branch("r").status == "completed"
    assert store.verify("r").ok


def _no_ensure(self: _lease.LeaseKeeper) -> Iterator[Any]:
    self.check()
    yield from ()


@pytest.mark.parametrize("guards", [False, True], ids=["fence-alone", "worker-guards"])
def test_a_stalled_worker_thread_never_charges_twice(
    stores: StoreFactory, monkeypatch: pytest.MonkeyPatch, guards: bool
) -> None:
    """In one process: worker A stalls on an event in its step past its lease (its
    heartbeat off, as a stalled process's would be); worker B, another agent on its own
    store (the same store object on memory://), recovers the branch and charges once;
    then A goes on to its call. A must charge nothing and write no intent."""
    stall, stalled = threading.Event(), threading.Event()
    charges: list[tuple[str, int]] = []

    def worker(name: str, store: clew.Store, ttl: float, *, stalls: bool) -> clew.Agent[dict[str, Any]]:
        agent: clew.Agent[dict[str, Any]] = clew.Agent("fenced", state=dict, store=store, lease_ttl=ttl, worker_id=name)

        @agent.step(start=True)
        def charge(state: dict[str, Any], ctx: clew.Context) -> None:
            if stalls:
                stalled.set()
                assert stall.wait(60)

            def card() -> str:
                charges.append((name, ctx.fencing_token))
                return "receipt"

            state["receipt"] = ctx.call("charge", card)

        return agent

    a = worker("A", stores.open(), TTL, stalls=True)
    monkeypatch.setattr(a, "_heartbeat", lambda keeper: contextlib.nullcontext())
    if not guards:  # only the store's fence stands between the zombie and a second charge
        monkeypatch.setattr(_lease.LeaseKeeper, "ensure", _no_ensure)
    outcome: list[BaseException | clew.Run[dict[str, Any]]] = []

    def run_a() -> None:
        try:
            outcome.append(a.start({}, run_id="r"))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run_a, name="worker-A")
    thread.start()
    try:
        assert stalled.wait(30)
        time.sleep(TTL + 0.3)  # A's lease expires while it stalls
        store = stores.open()
        b = worker("B", store, 30, stalls=False)
        [done] = b.recover()
        assert done.status == "completed"
        assert store.get_branch("r").epoch == 2  # B took over: the epoch moved on
        assert charges == [("B", 2)]
    finally:
        stall.set()
        thread.join(60)
    assert not thread.is_alive()
    [lost] = outcome
    assert isinstance(lost, LeaseLostError), lost
    # Stopped by the renewal before the call, or (guards off) by the fence on the intent.
    assert ("expired and taken over" if guards else "was not written") in str(lost), lost
    assert charges == [("B", 2)]  # B's only: the zombie ran nothing
    intents = [e for e in store.list_journal("r") if e.kind == "call.intent"]
    assert len(intents) == 1  # the zombie's intent never reached the journal
    assert store.get_branch("r").status == "completed"
    assert store.get_branch("r").head == done.checkpoint_id
    assert store.load_state("r", done.checkpoint_id) == {"receipt": "receipt"}
    assert store.verify("r").ok


def test_a_stale_lease_writes_nothing(stores: StoreFactory) -> None:
    store = stores.open()
    store.create_run("r", agent="a", lease_owner="A", lease_ttl=0.05)
    head = store.commit("r", state={"n": 0}, parent=None)
    old = clew.Lease("r", "main", "A", 1, time.time())
    time.sleep(0.1)
    new = store.acquire_lease("r", owner="B", ttl=30)
    assert new.epoch == 2
    before = store.list_journal("r")
    with pytest.raises(LeaseLostError, match=r"'A'.*epoch 1"):
        store.append_journal("r", [("call.intent", {"k": 1})], lease=old)
    with pytest.raises(LeaseLostError):
        store.commit("r", state={"n": 1}, parent=head.checkpoint_id, lease=old)
    with pytest.raises(LeaseLostError):
        store.set_branch_status("r", status="completed", lease=old)
    with pytest.raises(LeaseLostError):
        store.renew_lease("r", owner="A", ttl=30, epoch=1)
    assert store.list_journal("r") == before
    assert store.get_branch("r").head == head.checkpoint_id
    assert store.load_state("r", head.checkpoint_id) == {"n": 0}  # the last good checkpoint is intact
    # The rightful holder goes on.
    c = store.commit("r", state={"n": 1}, parent=head.checkpoint_id, lease=new)
    assert store.get_branch("r").head == c.checkpoint_id
    assert store.verify("r").ok


def test_a_cancelled_branch_fences_its_worker_and_never_advances(stores: StoreFactory) -> None:
    store = stores.open()
    store.create_run("r", agent="a", lease_owner="A", lease_ttl=30)
    head = store.commit("r", state={"n": 0}, parent=None)
    lease = clew.Lease("r", "main", "A", 1, time.time() + 30)
    store.set_branch_status("r", status="cancelled", journal=[("cancel", {"actor": "ops"})], revoke=True)
    with pytest.raises(LeaseLostError):
        store.append_journal("r", [("call.intent", {})], lease=lease)
    with pytest.raises(clew.errors.ConflictError, match="cancelled"):
        store.commit("r", state={"n": 1}, parent=head.checkpoint_id)
    with pytest.raises(clew.errors.LeaseError, match="cancelled"):
        store.acquire_lease("r", owner="B", ttl=30)
    assert store.get_run("r").status == "cancelled"
    assert store.claim_expired(owner="C", ttl=30) == []
    assert store.verify("r").ok


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), "30"])
def test_a_lease_ttl_that_is_not_positive_is_refused(store: clew.Store, ttl: Any) -> None:
    with pytest.raises(ConfigError, match="lease_ttl"):
        clew.Agent("a", state=dict, store=store, lease_ttl=ttl)
    run = store.create_run(agent="a")
    with pytest.raises(ConfigError, match="ttl"):
        store.acquire_lease(run.run_id, owner="x", ttl=ttl)
    assert store.get_branch(run.run_id).lease_owner is None


def test_fencing_token_is_the_lease_epoch(store: clew.Store) -> None:
    agent: clew.Agent[dict[str, Any]] = clew.Agent("tok", state=dict, store=store)
    seen: list[int] = []

    @agent.step(start=True)
    def ask(state: dict[str, Any], ctx: clew.Context) -> None:
        seen.append(ctx.fencing_token)
        state["answer"] = ctx.interrupt("ok?")

    agent.start({}, run_id="r")
    agent.resume("r", answer="yes")
    assert seen == [1, 2]  # each lease of the branch a higher token

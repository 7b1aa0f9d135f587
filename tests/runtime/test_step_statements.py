"""A step of the runtime, counted in statements and transactions (complexity, not time).

With ``idempotent_calls="with_checkpoint"`` a step whose idempotent tool call is
journaled is one transaction: the call's intent and outcome go in with the checkpoint,
one batch (one round trip on PostgreSQL). By default (``"at_once"``) the outcome is
written right after the call, a transaction of its own, so that a crash later in the
step does not run the call again.
"""

from __future__ import annotations

from typing import Any

import pytest

import clew
from tests.conftest import StoreFactory
from tests.helpers.statements import Counter
from tests.runtime.conftest import SimulatedCrash, Tools, journal


def _agent(store: clew.Store, n: int, mode: str, tools: Tools) -> clew.Agent[dict[str, Any]]:
    agent = clew.Agent("steps", state=dict, store=store, idempotent_calls=mode)  # type: ignore[arg-type]

    @agent.step(start=True)
    def work(state: dict[str, Any], ctx: clew.Context) -> str | None:
        tools.ctx = ctx
        state["messages"].append({"role": "user", "content": f"step {state['i']} " * 50})
        state["results"].append(ctx.call("kb", tools.tool("kb"), "x" * 700, idempotent=True))
        state["i"] += 1
        return "work" if state["i"] < n else None

    return agent


def _run(store: clew.Store, n: int, mode: str, tools: Tools) -> tuple[Counter, clew.Run[dict[str, Any]]]:
    agent = _agent(store, n, mode, tools)
    counter = Counter(store)
    run = agent.start({"messages": [], "results": [], "i": 0})
    return counter, run


def _per_step(store: clew.Store, mode: str, tools: Tools) -> tuple[float, float, float]:
    """Statements, batches and transactions each further step adds (runs of 10 and 40 steps)."""
    counts = []
    for n in (10, 40):
        counter, run = _run(store, n, mode, tools)
        assert run.status == "completed" and run.state["i"] == n
        assert store.verify(run.run_id).ok
        counts.append((counter.statements, counter.batches, counter.transactions))
    (s1, b1, t1), (s2, b2, t2) = counts
    return (s2 - s1) / 30, (b2 - b1) / 30, (t2 - t1) / 30


def test_a_step_with_a_ledgered_call_is_one_transaction_of_five_statements(store: clew.Store, tools: Tools) -> None:
    # run counters, journal rows (the call's intent and outcome), blobs, checkpoint row, head move
    assert _per_step(store, "with_checkpoint", tools) == (5, 1, 1)
    outcomes = journal(store, store.list_runs().items[0].run_id, "call.outcome")
    assert len(outcomes) == 40 and all(e.checkpoint_id is not None for e in outcomes)
    assert tools.counts() == {"kb": 50}


def test_by_default_the_outcome_is_its_own_transaction(store: clew.Store, tools: Tools) -> None:
    # the journal write (run counter, branch fence, value blob, rows: 2 batches), then the
    # commit that seals it (run counters, blobs, checkpoint row, head move, sealing)
    assert _per_step(store, "at_once", tools) == (9, 3, 2)


def test_with_checkpoint_a_crash_before_the_checkpoint_runs_the_call_again_with_its_key(
    stores: StoreFactory, tools: Tools
) -> None:
    store = stores.open()
    agent = clew.Agent("steps", state=dict, store=store, idempotent_calls="with_checkpoint")
    crash = {"on": True}

    @agent.step(start=True)
    def work(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["kb"] = ctx.call("kb", tools.tool("kb"), "plan", idempotent=True)
        if crash["on"]:
            raise SimulatedCrash

    with pytest.raises(SimulatedCrash):
        agent.start({}, run_id="r")
    assert store.list_journal("r", pending_on="main") == []  # nothing written: the step's one write never came
    crash["on"] = False
    run = agent.resume("r")
    assert run.status == "completed" and run.state == {"kb": "kb:plan"}
    keys = [k for name, _, k in tools.log if name == "kb"]
    assert len(keys) == 2 and keys[0] == keys[1]  # ran again, with the same idempotency key
    assert store.verify("r").ok


def test_with_checkpoint_a_failed_step_keeps_its_completed_calls(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("steps", state=dict, store=store, idempotent_calls="with_checkpoint")
    fails = {"left": 1}

    @agent.step(start=True, retry=clew.Retry(attempts=2, backoff=0))
    def work(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["kb"] = ctx.call("kb", tools.tool("kb"), "plan", idempotent=True)
        if fails["left"]:
            fails["left"] -= 1
            raise RuntimeError("flaky")
        state["replayed"] = list(ctx.replayed)

    run = agent.start({}, run_id="r")
    assert run.status == "completed"
    assert run.state == {"kb": "kb:plan", "replayed": ["kb"]}  # the retry replayed it from the journal
    assert tools.counts() == {"kb": 1}


def test_idempotent_calls_must_be_a_known_mode(store: clew.Store) -> None:
    with pytest.raises(clew.errors.ConfigError, match="idempotent_calls"):
        clew.Agent("steps", state=dict, store=store, idempotent_calls="later")  # type: ignore[arg-type]


def test_with_checkpoint_an_idempotent_call_is_one_entry_naming_its_key(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("steps", state=dict, store=store, idempotent_calls="with_checkpoint")

    @agent.step(start=True)
    def work(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["kb"] = ctx.call("kb", tools.tool("kb"), "plan", idempotent=True)

    run = agent.start({}, run_id="r")
    entries = store.list_journal("r")
    assert [e.kind for e in entries] == ["call.outcome"]  # no separate intent: it would repeat the outcome
    [(_, _, key)] = tools.log
    assert entries[0].data["idempotency_key"] == key and entries[0].data["idempotent"] is True
    assert entries[0].checkpoint_id == run.checkpoint_id

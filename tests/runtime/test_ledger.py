"""The tool-call ledger: intent before, outcome after; completed calls are never run twice.

Crashes are simulated in-process by :class:`SimulatedCrash` (a ``BaseException`` that
stops the run dead, leaving the journal as a SIGKILL would), and with a real SIGKILL of
a child process at the end. ``tests/crash/`` kills real processes at random points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import clew
from clew.errors import RunStatusError
from tests.conftest import StoreFactory
from tests.runtime import _proc
from tests.runtime.conftest import SimulatedCrash, Tools, journal, kinds


def test_intent_is_durable_before_the_call_and_outcome_after(store: clew.Store) -> None:
    agent = clew.Agent("ledger", state=dict, store=store)
    seen: dict[str, Any] = {}

    def charge(amount: int) -> str:
        ctx = seen["ctx"]
        pending = store.list_journal(ctx.run_id, pending_on="main")  # what a crash now would leave behind
        seen["pending"] = [(e.kind, e.data) for e in pending]
        seen["key"] = ctx.idempotency_key
        return f"paid {amount}"

    @agent.step(start=True)
    def pay(state: dict[str, Any], ctx: clew.Context) -> None:
        seen["ctx"] = ctx
        seen["key_for"] = ctx.key_for("card")
        state["receipt"] = ctx.call("card", charge, 30)
        assert ctx.idempotency_key is None  # only set while a call runs

    run = agent.start({})
    assert run.state == {"receipt": "paid 30"}
    [(kind, intent)] = seen["pending"]
    assert kind == "call.intent"
    assert intent["name"] == "card"
    assert intent["attempt"] == 1
    assert intent["idempotent"] is False
    assert intent["idempotency_key"] == seen["key"] == seen["key_for"]
    step_ckpt = agent.history(run.run_id)[0]
    sealed = store.list_journal(run.run_id, checkpoint_id=step_ckpt.checkpoint_id)
    assert [e.kind for e in sealed] == ["call.intent", "call.outcome"]
    outcome = sealed[1].data
    assert outcome["key"] == intent["key"] and outcome["attempt"] == 1
    assert outcome["ok"] is True and outcome["result"] == "paid 30"
    assert outcome["duration_ms"] >= 0
    assert sealed[0].seq < sealed[1].seq


def test_calls_are_keyed_by_name_and_occurrence(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("ledger", state=dict, store=store)

    @agent.step(start=True)
    def look(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["a"] = ctx.call("kb", tools.tool("kb"), "a")
        state["b"] = ctx.call("kb", tools.tool("kb"), "b")
        state["c"] = ctx.call("web", tools.tool("web"), "c")

    run = agent.start({})
    assert run.state == {"a": "kb:a", "b": "kb:b", "c": "web:c"}
    keys = [e.data["key"] for e in journal(store, run.run_id, "call.outcome")]
    assert [k.split("/")[1] for k in keys] == ["kb#0", "kb#1", "web#0"]
    idem = [k for _, _, k in tools.log]
    assert len(set(idem)) == 3 and None not in idem


def test_a_completed_call_returns_its_recorded_result_on_resume(stores: StoreFactory, tools: Tools) -> None:
    completed_call_is_replayed(stores, tools, reopen=False)


def test_a_completed_call_returns_its_recorded_result_in_a_reopened_store(
    shared_stores: StoreFactory, tools: Tools
) -> None:
    completed_call_is_replayed(shared_stores, tools, reopen=True)


def completed_call_is_replayed(stores: StoreFactory, tools: Tools, *, reopen: bool) -> None:
    store = stores.open()
    crash = {"on": True}

    def build(st: clew.Store) -> clew.Agent[dict[str, Any]]:
        agent = clew.Agent("ledger", state=dict, store=st)

        @agent.step(start=True)
        def work(state: dict[str, Any], ctx: clew.Context) -> None:
            tools.ctx = ctx
            state["billing"] = ctx.call("billing", tools.tool("billing"), "c-42")
            state["kb"] = ctx.call("kb", tools.tool("kb"), "plan", idempotent=True)
            if crash["on"]:
                raise SimulatedCrash
            state["replayed"] = list(ctx.replayed)
            state["email"] = ctx.call("email", tools.tool("email"), "hi")

        return agent

    with pytest.raises(SimulatedCrash):
        build(store).start({}, run_id="r")
    assert store.get_run("r").status == "running"  # as after a real crash
    crash["on"] = False
    st = stores.open() if reopen else store
    run = build(st).resume("r")
    assert run.status == "completed"
    assert run.state == {
        "billing": "billing:c-42",
        "kb": "kb:plan",
        "replayed": ["billing", "kb"],
        "email": "email:hi",
    }
    assert tools.counts() == {"billing": 1, "kb": 1, "email": 1}
    assert st.verify("r").ok


def test_idempotent_call_with_unknown_outcome_runs_again_with_the_same_key(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("ledger", state=dict, store=store)
    crash = {"on": True}

    def search(q: str) -> str:
        tools.record("search", q)
        if crash["on"]:
            raise SimulatedCrash  # the process dies after the service did its work
        return f"found {q}"

    @agent.step(start=True)
    def look(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["found"] = ctx.call("search", search, "tides", idempotent=True)

    with pytest.raises(SimulatedCrash):
        agent.start({}, run_id="r")
    crash["on"] = False
    run = agent.resume("r")
    assert run.state == {"found": "found tides"}
    keys = tools.keys("search")
    assert len(keys) == 2 and keys[0] == keys[1] is not None
    outcomes = journal(store, "r", "call.outcome")
    assert len(outcomes) == 1 and outcomes[0].data["ok"] is True
    assert journal(store, "r", "call.intent")[-1].data["idempotency_key"] == keys[0]


def crashing_charge_agent(
    store: clew.Store, tools: Tools, crash: dict[str, bool], reconcile: Any = None
) -> clew.Agent[dict[str, Any]]:
    agent = clew.Agent("ledger", state=dict, store=store)

    def charge(amount: int) -> str:
        tools.record("charge", amount)
        if crash["on"]:
            raise SimulatedCrash  # charged, but the outcome never reached the journal
        return f"receipt {amount}"

    @agent.step(start=True)
    def pay(state: dict[str, Any], ctx: clew.Context) -> str:
        tools.ctx = ctx
        state["before"] = ctx.call("quote", tools.tool("quote"), 30)
        state["receipt"] = ctx.call("card", charge, 30, reconcile=reconcile)
        return "done"

    @agent.step
    def done(state: dict[str, Any], ctx: clew.Context) -> None:
        state["done"] = True

    return agent


def test_non_idempotent_unknown_outcome_goes_to_the_reconcile_hook(store: clew.Store, tools: Tools) -> None:
    crash = {"on": True}
    infos: list[clew.CallInfo] = []

    def reconcile(info: clew.CallInfo) -> str:
        infos.append(info)
        # Look the key up "at the provider": it did charge.
        assert info.idempotency_key in tools.keys("charge")
        return "receipt 30 (reconciled)"

    agent = crashing_charge_agent(store, tools, crash, reconcile)
    with pytest.raises(SimulatedCrash):
        agent.start({}, run_id="r")
    crash["on"] = False
    run = agent.resume("r")
    assert run.status == "completed"
    assert run.state == {"before": "quote:30", "receipt": "receipt 30 (reconciled)", "done": True}
    assert tools.counts() == {"quote": 1, "charge": 1}
    [info] = infos
    assert (info.name, info.args, dict(info.kwargs)) == ("card", (30,), {})
    assert info.key.endswith("/card#0")
    assert info.idempotency_key == tools.keys("charge")[0]
    [outcome] = [e.data for e in journal(store, "r", "call.outcome") if e.data["name"] == "card"]
    assert outcome["reconciled"] is True and outcome["result"] == "receipt 30 (reconciled)"


def test_non_idempotent_unknown_outcome_without_hook_pauses_the_run(store: clew.Store, tools: Tools) -> None:
    crash = {"on": True}
    agent = crashing_charge_agent(store, tools, crash)
    with pytest.raises(SimulatedCrash):
        agent.start({}, run_id="r")
    crash["on"] = False
    paused = agent.resume("r")
    assert paused.status == "paused"
    assert store.get_run("r").status == "paused"
    head = agent.history("r")[0]
    assert head.kind == "unknown_outcome"
    question = head.metadata["interrupt"]["unknown_outcome"]
    assert paused.interrupt == head.metadata["interrupt"]
    assert question["call"] == "card"
    assert question["idempotency_key"] == tools.keys("charge")[0]
    assert question["attempt"] == 1
    assert tools.counts() == {"quote": 1, "charge": 1}  # never silently charged again
    # Resuming without an answer does not run it either.
    with pytest.raises(RunStatusError, match="answer"):
        agent.resume("r")
    assert tools.count("charge") == 1
    # A person checked the provider: it was charged. The recorded result is used.
    run = agent.resume("r", answer={"result": "receipt 30 (by hand)"}, actor="alice")
    assert run.status == "completed"
    assert run.state == {"before": "quote:30", "receipt": "receipt 30 (by hand)", "done": True}
    assert tools.counts() == {"quote": 1, "charge": 1}
    [answer] = journal(store, "r", "answer")
    assert answer.data["actor"] == "alice" and answer.data["call"] == question["key"]
    assert kinds(agent.history("r")) == [("start", None), ("unknown_outcome", None), ("step", "pay"), ("step", "done")]
    assert store.verify("r").ok


def test_unknown_outcome_answered_with_rerun_calls_again_with_the_same_key(store: clew.Store, tools: Tools) -> None:
    crash = {"on": True}
    agent = crashing_charge_agent(store, tools, crash)
    with pytest.raises(SimulatedCrash):
        agent.start({}, run_id="r")
    crash["on"] = False
    assert agent.resume("r").status == "paused"
    run = agent.resume("r", answer={"rerun": True}, actor="bob")
    assert run.status == "completed"
    assert run.state["receipt"] == "receipt 30"
    assert tools.count("charge") == 2  # the person asked for it
    first, second = tools.keys("charge")
    assert first == second is not None
    attempts = [e.data["attempt"] for e in journal(store, "r", "call.intent") if e.data["name"] == "card"]
    assert attempts == [1, 2]


def test_a_failed_call_is_tried_again_on_resume_as_the_next_attempt(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("ledger", state=dict, store=store)
    down = {"on": True}

    def flaky(q: str) -> str:
        tools.record("flaky", q)
        if down["on"]:
            raise ConnectionError("service down")
        return "up"

    @agent.step(start=True)
    def look(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["ok"] = ctx.call("svc", flaky, "x")

    run = agent.start({})
    assert run.status == "failed"
    down["on"] = False
    run = agent.resume(run.run_id)
    assert run.status == "completed" and run.state == {"ok": "up"}
    intents = [e.data["attempt"] for e in journal(store, run.run_id, "call.intent")]
    assert intents == [1, 2]
    first, second = tools.keys("flaky")
    assert first == second  # the same call, so the same idempotency key


def test_calls_before_an_interrupt_are_not_repeated(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("ledger", state=dict, store=store)

    @agent.step(start=True)
    def ask(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["draft"] = ctx.call("llm", tools.tool("llm"), "draft")
        state["ok"] = ctx.interrupt({"review": state["draft"]})
        state["sent"] = ctx.call("email", tools.tool("email"), state["draft"])

    run = agent.start({})
    assert run.status == "paused" and run.interrupt == {"review": "llm:draft"}
    run = agent.resume(run.run_id, answer=True)
    assert run.state == {"draft": "llm:draft", "ok": True, "sent": "email:llm:draft"}
    assert tools.counts() == {"llm": 1, "email": 1}


def test_idempotency_keys_are_per_run_and_per_branch(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("ledger", state=dict, store=store)

    @agent.step(start=True)
    def go(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["r"] = ctx.call("svc", tools.tool("svc"), 1)

    a = agent.start({})
    b = agent.start({})
    start = agent.history(a.run_id)[-1]
    agent.replay(start.checkpoint_id, branch="again")
    keys = tools.keys("svc")
    assert len(keys) == 3 and len(set(keys)) == 3
    assert b.state == a.state


def test_a_step_retry_does_not_repeat_a_completed_call(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("ledger", state=dict, store=store)

    @agent.step(start=True, retry=clew.Retry(attempts=2, backoff=0))
    def pay(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["receipt"] = ctx.call("card", tools.tool("charge"), 30)
        if ctx.attempt == 1:
            raise ConnectionError("the step failed after the charge went through")

    run = agent.start({})
    assert run.status == "completed"
    assert tools.count("charge") == 1


def test_real_crash_between_intent_and_outcome_pauses_for_a_person(shared_stores: StoreFactory, tmp_path: Path) -> None:
    stores = shared_stores
    """SIGKILL while a non-idempotent call runs: the resumed run asks instead of charging again."""
    log, hang = tmp_path / "effects", tmp_path / "hang"
    proc = _proc.child(
        f"""
        from tests.runtime._proc import Order, order_agent
        store = clew.open(URL)
        order_agent(store, Path({str(log)!r}), hang=Path({str(hang)!r}), worker_id="w1").start(
            Order(item="lamp"), run_id="o1")
        """,
        stores.url,
    )
    _proc.kill_when(proc, hang)
    store = stores.open()
    assert store.get_run("o1").status == "running"
    agent = _proc.order_agent(store, log, worker_id="w1")  # the same worker, restarted
    run = agent.resume("o1")
    assert run.status == "paused"
    assert run.interrupt["unknown_outcome"]["call"] == "card"
    [(name, key)] = _proc.effects(log)
    assert name == "charge" and run.interrupt["unknown_outcome"]["idempotency_key"] == key
    run = agent.resume("o1", answer={"result": "receipt-lamp"}, actor="ops")
    assert run.status == "paused" and run.interrupt == {"approve": "lamp"}
    run = agent.resume("o1", answer={"by": "alice"}, actor="alice")
    assert run.status == "completed"
    assert run.state == _proc.Order(item="lamp", charged="receipt-lamp", approved_by="alice", shipped=True)
    assert len(_proc.effects(log)) == 1
    assert store.verify("o1").ok

"""Retries per step and per call: attempts, backoff, which errors, timeouts; journaled, crash-proof."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

import clew
from tests.conftest import StoreFactory
from tests.runtime.conftest import SimulatedCrash, Tools, journal


def test_retry_policy_delays() -> None:
    r = clew.Retry(attempts=5, backoff=0.1, max_backoff=0.3, jitter=False)
    assert [r.delay(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]
    jittered = clew.Retry(attempts=5, backoff=0.4)
    for _ in range(50):
        assert 0.2 <= jittered.delay(1) <= 0.4
    assert r.retries(ValueError(), 4) and not r.retries(ValueError(), 5)
    picky = clew.Retry(attempts=3, on=(TimeoutError,))
    assert picky.retries(TimeoutError(), 1) and not picky.retries(ValueError(), 1)
    assert picky.retries(clew.CallTimeoutError(), 1)  # a call timeout is a TimeoutError
    with pytest.raises(ValueError):
        clew.Retry(attempts=0)


def test_call_retry_attempts_are_journaled_with_the_same_key(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("retry", state=dict, store=store)
    fails = {"left": 2}

    def flaky(x: int) -> int:
        tools.record("flaky", x)
        if fails["left"]:
            fails["left"] -= 1
            raise ConnectionError(f"try again ({fails['left']} left)")
        return x * 2

    @agent.step(start=True)
    def go(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["x"] = ctx.call("svc", flaky, 21, retry=clew.Retry(attempts=3, backoff=0.001))

    run = agent.start({})
    assert run.status == "completed" and run.state == {"x": 42}
    assert tools.count("flaky") == 3
    assert len(set(tools.keys("flaky"))) == 1
    intents = journal(store, run.run_id, "call.intent")
    outcomes = journal(store, run.run_id, "call.outcome")
    assert [e.data["attempt"] for e in intents] == [1, 2, 3]
    assert [(e.data["attempt"], e.data["ok"]) for e in outcomes] == [(1, False), (2, False), (3, True)]
    assert outcomes[0].data["error"]["type"] == "builtins.ConnectionError"
    assert outcomes[0].data["error"]["message"] == "try again (1 left)"
    assert "ConnectionError" in outcomes[0].data["error"]["traceback"]
    assert agent.history(run.run_id)[0].metadata["attempts"] == 1  # the step itself ran once


def test_call_retry_only_on_the_listed_errors(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("retry", state=dict, store=store)

    def broken(x: int) -> int:
        tools.record("broken", x)
        raise KeyError("not retryable")

    @agent.step(start=True)
    def go(state: dict[str, Any], ctx: clew.Context) -> None:
        state["x"] = ctx.call("svc", broken, 1, retry=clew.Retry(attempts=5, backoff=0, on=(TimeoutError,)))

    run = agent.start({})
    assert run.status == "failed"
    assert tools.count("broken") == 1
    assert run.error is not None and run.error["type"] == "builtins.KeyError"


def test_call_backoff_waits_between_tries(store: clew.Store) -> None:
    agent = clew.Agent("retry", state=dict, store=store)
    times: list[float] = []

    def flaky() -> str:
        times.append(time.monotonic())
        if len(times) < 3:
            raise ConnectionError
        return "ok"

    @agent.step(start=True)
    def go(state: dict[str, Any], ctx: clew.Context) -> None:
        state["r"] = ctx.call("svc", flaky, retry=clew.Retry(attempts=3, backoff=0.05, jitter=False))

    assert agent.start({}).status == "completed"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095


def test_call_timeout_raises_call_timeout_error(store: clew.Store) -> None:
    agent = clew.Agent("retry", state=dict, store=store)
    seen: list[BaseException] = []

    release = threading.Event()
    finished: list[bool] = []

    def slow() -> str:
        release.wait(30)
        finished.append(True)
        return "late"

    @agent.step(start=True)
    def go(state: dict[str, Any], ctx: clew.Context) -> None:
        try:
            ctx.call("slow", slow, timeout=0.05)
        except clew.CallTimeoutError as exc:
            seen.append(exc)
            raise

    run = agent.start({})
    assert finished == []  # the run did not wait for the call, which is still blocked
    release.set()
    assert run.status == "failed"
    assert isinstance(seen[0], TimeoutError)
    assert run.error is not None and run.error["type"] == "clew.CallTimeoutError"
    [outcome] = journal(store, run.run_id, "call.outcome")
    assert outcome.data["ok"] is False and "CallTimeoutError" in outcome.data["error"]["type"]
    assert store.get_branch(run.run_id).error["type"].endswith("CallTimeoutError")


def test_call_timeouts_are_retried(store: clew.Store) -> None:
    agent = clew.Agent("retry", state=dict, store=store)
    tries: list[int] = []

    def sometimes_slow() -> str:
        tries.append(1)
        if len(tries) < 3:
            time.sleep(0.3)
        return "fast enough"

    @agent.step(start=True)
    def go(state: dict[str, Any], ctx: clew.Context) -> None:
        state["r"] = ctx.call(
            "svc",
            sometimes_slow,
            idempotent=True,
            timeout=0.05,
            retry=clew.Retry(attempts=3, backoff=0, on=(TimeoutError,)),
        )

    run = agent.start({})
    assert run.status == "completed" and run.state == {"r": "fast enough"}
    oks = [e.data["ok"] for e in journal(store, run.run_id, "call.outcome")]
    assert oks == [False, False, True]


def test_step_retry_runs_the_step_again_from_its_checkpoint(store: clew.Store) -> None:
    agent = clew.Agent("retry", state=dict, store=store)
    attempts: list[int] = []

    @agent.step(start=True, retry=clew.Retry(attempts=3, backoff=0.001))
    def go(state: dict[str, Any], ctx: clew.Context) -> None:
        attempts.append(ctx.attempt)
        state["items"].append(ctx.attempt)  # a failed try's changes are thrown away
        if ctx.attempt < 3:
            raise ValueError(f"try {ctx.attempt} failed")

    run = agent.start({"items": []})
    assert run.status == "completed"
    assert attempts == [1, 2, 3]
    assert run.state == {"items": [3]}
    head = agent.history(run.run_id)[0]
    assert head.metadata["attempts"] == 3
    errors = store.list_journal(run.run_id, checkpoint_id=head.checkpoint_id)
    assert [(e.kind, e.data["attempt"]) for e in errors] == [("step.error", 1), ("step.error", 2)]
    assert errors[0].data["step"] == "go"
    assert errors[0].data["error"]["message"] == "try 1 failed"
    assert errors[0].data["duration_ms"] >= 0


def test_step_retry_only_on_the_listed_errors(store: clew.Store) -> None:
    agent = clew.Agent("retry", state=dict, store=store)
    attempts: list[int] = []

    @agent.step(start=True, retry=clew.Retry(attempts=3, backoff=0, on=(ConnectionError,)))
    def go(state: dict[str, Any], ctx: clew.Context) -> None:
        attempts.append(ctx.attempt)
        raise ValueError("a bug, not a hiccup")

    run = agent.start({})
    assert run.status == "failed" and attempts == [1]


def test_out_of_retries_the_run_fails_with_its_error_and_resume_tries_again(stores: StoreFactory) -> None:
    store = stores.open()
    broken = {"on": True}

    def build(st: clew.Store) -> clew.Agent[dict[str, Any]]:
        agent = clew.Agent("retry", state=dict, store=st)

        @agent.step(start=True)
        def first(state: dict[str, Any], ctx: clew.Context) -> str:
            state["first"] = True
            return "second"

        @agent.step(retry=clew.Retry(attempts=2, backoff=0.001))
        def second(state: dict[str, Any], ctx: clew.Context) -> None:
            state.setdefault("attempts", []).append(ctx.attempt)
            if broken["on"]:
                raise RuntimeError("upstream is down")
            state["second"] = True

        return agent

    agent = build(store)
    run = agent.start({}, run_id="r")
    assert run.status == "failed"
    assert run.error is not None
    assert (run.error["type"], run.error["message"]) == ("builtins.RuntimeError", "upstream is down")
    assert "Traceback" in run.error["traceback"]
    record = store.get_branch("r")
    assert record.status == "failed" and record.lease_owner is None
    error = record.error
    assert error is not None
    assert (error["step"], error["attempts"], error["message"]) == ("second", 2, "upstream is down")
    # The last good checkpoint is untouched and loads.
    head = agent.history("r")[0]
    assert head.metadata["step"] == "first" and head.checkpoint_id == run.checkpoint_id
    assert agent.state_at(head.checkpoint_id) == {"first": True} == run.state
    assert store.verify("r").ok
    # Later, on any store object: resume tries the failed step again, from try 1.
    broken["on"] = False
    st = stores.open() if stores.shared_across_processes else store
    run = build(st).resume("r")
    assert run.status == "completed"
    assert run.state == {"first": True, "attempts": [1], "second": True}
    assert st.get_run("r").status == "completed"
    resets = [e for e in st.list_journal("r") if e.kind == "step.reset"]
    assert len(resets) == 1


def test_step_retry_status_survives_a_crash(stores: StoreFactory) -> None:
    store = stores.open()
    seen: list[int] = []

    def build(st: clew.Store) -> clew.Agent[dict[str, Any]]:
        agent = clew.Agent("retry", state=dict, store=st)

        @agent.step(start=True, retry=clew.Retry(attempts=3, backoff=0))
        def go(state: dict[str, Any], ctx: clew.Context) -> None:
            seen.append(ctx.attempt)
            if len(seen) == 2:
                raise SimulatedCrash  # the process dies in try 2
            raise ValueError(f"try {ctx.attempt}")

        return agent

    with pytest.raises(SimulatedCrash):
        build(store).start({}, run_id="r")
    st = stores.open() if stores.shared_across_processes else store
    pending = st.list_journal("r", pending_on="main")
    assert [(e.kind, e.data["attempt"]) for e in pending] == [("step.error", 1)]
    run = build(st).resume("r")
    # Try 1 failed before the crash and counts; the crashed try 2 left no error and is run again.
    assert seen == [1, 2, 2, 3]
    assert run.status == "failed"
    assert st.get_branch("r").error["attempts"] == 3


def test_call_retry_status_survives_a_crash(stores: StoreFactory, tools: Tools) -> None:
    store = stores.open()
    calls: list[int] = []

    def build(st: clew.Store) -> clew.Agent[dict[str, Any]]:
        agent = clew.Agent("retry", state=dict, store=st)

        def svc() -> str:
            calls.append(1)
            tools.record("svc")
            if len(calls) == 1:
                raise ConnectionError("first try fails")
            if len(calls) == 2:
                raise SimulatedCrash  # dies during the second
            return "ok"

        @agent.step(start=True)
        def go(state: dict[str, Any], ctx: clew.Context) -> None:
            tools.ctx = ctx
            state["r"] = ctx.call("svc", svc, retry=clew.Retry(attempts=5, backoff=0))

        return agent

    with pytest.raises(SimulatedCrash):
        build(store).start({}, run_id="r")
    st = stores.open() if stores.shared_across_processes else store
    crash_agent = build(st)
    # A non-idempotent call with an unknown outcome: the run asks first.
    assert crash_agent.resume("r").status == "paused"
    run = crash_agent.resume("r", answer={"rerun": True})
    assert run.status == "completed" and run.state == {"r": "ok"}
    attempts = [e.data["attempt"] for e in st.list_journal("r") if e.kind == "call.intent"]
    assert attempts == [1, 2, 3]
    assert len(set(tools.keys("svc"))) == 1

"""Timed tool calls: a hung call never delays or starves another; a call that never ran says so."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

import clew
from clew.runtime import _calls


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds hung calls until the test ends, then lets their threads finish."""
    event = threading.Event()
    before = _calls.abandoned()
    yield event
    event.set()
    _settle(before)


def _settle(count: int) -> None:
    """Wait until the abandoned calls' threads have finished (they were released)."""
    for _ in range(500):
        if _calls.abandoned() <= count:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{_calls.abandoned()} abandoned calls still counted, expected {count}")


def _hang_all(gate: threading.Event, n: int) -> None:
    for _ in range(n):
        with pytest.raises(clew.CallTimeoutError):
            _calls.call_in_thread(gate.wait, (), {}, 0.01)


def test_a_fast_call_runs_after_many_hung_ones(gate: threading.Event) -> None:
    before = _calls.abandoned()
    _hang_all(gate, 64)  # twice the old shared pool's size
    assert _calls.abandoned() == before + 64
    ran = []
    assert _calls.call_in_thread(lambda: ran.append(1) or "fast", (), {}, 5.0) == "fast"
    assert ran == [1]
    gate.set()
    _settle(before)  # abandoned threads are counted out as they finish


async def test_async_fast_call_runs_after_many_hung_ones(gate: threading.Event) -> None:
    for _ in range(40):
        with pytest.raises(clew.CallTimeoutError):
            await _calls.acall_in_thread(gate.wait, (), {}, 0.01)
    assert await _calls.acall_in_thread(lambda x: x * 2, (21,), {}, 5.0) == 42
    # without a timeout too: plain steps and tools of async runs never queue behind hung ones
    assert await _calls.acall_in_thread(lambda: "no timeout", (), {}, None) == "no timeout"


def test_past_the_limit_a_call_is_refused_without_running(
    gate: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_calls, "MAX_ABANDONED", _calls.abandoned() + 3)
    _hang_all(gate, 3)
    ran = []
    with pytest.raises(clew.CallNotStartedError, match="3 earlier calls ran past their timeout") as info:
        _calls.call_in_thread(ran.append, (1,), {}, 5.0)
    assert not isinstance(info.value, TimeoutError)  # distinct: the call never ran
    assert ran == []
    assert _calls.call_in_thread(lambda: "untimed", (), {}, None) == "untimed"  # a call without timeout still runs


def test_errors_and_results_cross_the_thread() -> None:
    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        _calls.call_in_thread(boom, (), {}, 5.0)
    assert _calls.call_in_thread(divmod, (7, 2), {}, 5.0) == (3, 1)


def test_a_refused_call_is_journaled_as_not_started(
    store: clew.Store, gate: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_calls, "MAX_ABANDONED", _calls.abandoned() + 1)
    agent = clew.Agent("calls", state=dict, store=store)
    calls = []

    @agent.step(start=True)
    def go(state: dict, ctx: clew.Context) -> None:
        try:
            state["hang"] = ctx.call("hang", gate.wait, timeout=0.01)
        except clew.CallTimeoutError:
            state["hang"] = "timed out"
        state["out"] = ctx.call("fast", lambda: calls.append(1) or "ok", timeout=5.0)

    run = agent.start({})
    assert run.status == "failed"
    assert calls == []
    outcomes = [e.data for e in store.list_journal(run.run_id) if e.kind == "call.outcome"]
    assert [o["error"]["type"] for o in outcomes] == ["clew.CallTimeoutError", "clew.CallNotStartedError"]
    gate.set()
    _settle(_calls.MAX_ABANDONED - 1)
    # Not started means not run: resuming runs it (the hung call's outcome was an error, so it runs again too).
    done = agent.resume(run.run_id)
    assert done.status == "completed"
    assert done.state == {"hang": True, "out": "ok"}
    assert calls == [1]


def test_cancelling_the_awaiting_task_does_not_leak_the_count(gate: threading.Event) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(_calls.acall_in_thread(gate.wait, (), {}, None))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = _calls.abandoned()
    asyncio.run(main())
    assert _calls.abandoned() == before + 1  # still running: counted
    gate.set()
    _settle(before)

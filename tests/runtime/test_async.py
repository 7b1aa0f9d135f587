"""Async agents: ``async def`` steps and tools are awaited, plain ones run in threads; the loop never blocks."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest

import clew
from clew.errors import RunStatusError
from tests.runtime.conftest import SimulatedCrash, Tools, kinds


class Ticker:
    """Counts ticks of a task on the event loop: while plain code blocks its own thread,
    the count must still grow, or that code is holding the loop."""

    def __init__(self) -> None:
        self.count = 0
        self.loop_thread = threading.get_ident()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0.002)

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def block_until_the_loop_ticks(self, ticks: int = 5, patience: float = 30.0) -> bool:
        """Block this thread until the loop has ticked ``ticks`` more times; False if it
        never does (the loop is blocked: by this very code, if it runs on the loop)."""
        if threading.get_ident() == self.loop_thread:
            return False
        start, deadline = self.count, time.monotonic() + patience
        while self.count < start + ticks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True


async def test_async_steps_and_tools_never_block_the_loop(astore: clew.AsyncStore, tools: Tools) -> None:
    agent = clew.Agent("async", state=dict, store=astore)
    ticker = Ticker()
    loop_free: list[bool] = []  # one entry per piece of blocking code: did the loop go on meanwhile?

    async def fetch(q: str) -> str:
        await asyncio.sleep(0.01)
        tools.record("fetch", q)
        return f"fetched {q}"

    def blocking_tool(q: str) -> str:
        loop_free.append(ticker.block_until_the_loop_ticks())  # plain code: a worker thread, not the loop
        tools.record("blocking", q)
        return f"slow {q}"

    @agent.step(start=True)
    async def think(state: dict[str, Any], ctx: clew.Context) -> str:
        tools.ctx = ctx
        await asyncio.sleep(0.01)
        state["a"] = await ctx.call("fetch", fetch, "a")
        state["b"] = await ctx.call("blocking", blocking_tool, "b")
        return "plain"

    @agent.step
    def plain(state: dict[str, Any], ctx: clew.Context) -> None:
        loop_free.append(ticker.block_until_the_loop_ticks())  # a plain step in an async agent: a thread
        state["c"] = ctx.call("blocking", blocking_tool, "c")  # and its calls work without await

    with ticker:
        run = await agent.astart({})
    assert run.status == "completed"
    assert run.state == {"a": "fetched a", "b": "slow b", "c": "slow c"}
    assert loop_free == [True, True, True]  # the blocking tool, the plain step, the tool called from it
    assert kinds(await agent.ahistory(run.run_id)) == [("start", None), ("step", "think"), ("step", "plain")]
    assert (await astore.verify(run.run_id)).ok


async def test_two_async_agents_runs_interleave(astore: clew.AsyncStore) -> None:
    events: list[tuple[str, int]] = []

    def make(name: str) -> clew.Agent[dict[str, Any]]:
        agent = clew.Agent(name, state=dict, store=astore)

        @agent.step(start=True)
        async def loop(state: dict[str, Any], ctx: clew.Context) -> str | None:
            for _ in range(3):
                events.append((name, state["i"]))
                state["i"] += 1
                await asyncio.sleep(0.02)
            return "loop" if state["i"] < 9 else None

        return agent

    a, b = await asyncio.gather(make("a").astart({"i": 0}), make("b").astart({"i": 0}))
    assert a.status == b.status == "completed"
    assert a.state["i"] == b.state["i"] == 9
    order = [name for name, _ in events]
    assert sorted(order) == ["a"] * 9 + ["b"] * 9
    switches = sum(1 for x, y in itertools.pairwise(order) if x != y)
    assert switches >= 4  # not all of a and then all of b


async def test_async_interrupt_edit_resume_fork(astore: clew.AsyncStore) -> None:
    agent = clew.Agent("async", state=dict, store=astore)

    @agent.step(start=True)
    async def draft(state: dict[str, Any], ctx: clew.Context) -> str:
        state["draft"] = f"hello {state['name']}"
        return "review"

    @agent.step
    async def review(state: dict[str, Any], ctx: clew.Context) -> None:
        state["ok"] = ctx.interrupt({"review": state["draft"]})

    run = await agent.astart({"name": "ann"}, run_id="r")
    assert run.status == "paused" and run.interrupt == {"review": "hello ann"}
    assert (await astore.get_run("r")).status == "paused"
    edit = await agent.aedit("r", update={"draft": "hi ann"}, actor="bob", reason="friendlier")
    assert edit.kind == "edit" and edit.metadata["actor"] == "bob"
    with pytest.raises(RunStatusError):
        await agent.aresume("r")
    run = await agent.aresume("r", answer="yes", actor="carol")
    assert run.status == "completed" and run.state == {"name": "ann", "draft": "hi ann", "ok": "yes"}
    history = await agent.ahistory("r")
    assert [c.kind for c in reversed(history)] == ["start", "step", "interrupt", "edit", "step"]
    draft_ckpt = history[-2]
    assert await agent.astate_at(draft_ckpt.checkpoint_id) == {"name": "ann", "draft": "hello ann"}
    forked = await agent.afork(draft_ckpt.checkpoint_id, branch="b", update={"draft": "yo"})
    assert isinstance(forked, clew.Run) and forked.status == "paused" and forked.interrupt == {"review": "yo"}
    run = await agent.aresume("r", answer="fine", branch="b")
    assert run.status == "completed" and run.state["draft"] == "yo" and run.branch == "b"
    assert await agent.afork(draft_ckpt.checkpoint_id, branch="c", run=False) == "r"
    assert (await astore.verify("r")).ok


async def test_async_ledger_survives_a_crash(astore: clew.AsyncStore, tools: Tools) -> None:
    crash = {"on": True}

    async def charge(amount: int) -> str:
        tools.record("charge", amount)
        await asyncio.sleep(0)
        return f"paid {amount}"

    def build() -> clew.Agent[dict[str, Any]]:
        agent = clew.Agent("async", state=dict, store=astore, worker_id="w", lease_ttl=0.2)

        @agent.step(start=True)
        async def pay(state: dict[str, Any], ctx: clew.Context) -> None:
            tools.ctx = ctx
            state["receipt"] = await ctx.call("card", charge, 5)
            if crash["on"]:
                raise SimulatedCrash
            state["replayed"] = ctx.replayed

        return agent

    with pytest.raises(SimulatedCrash):
        await build().astart({}, run_id="r")
    crash["on"] = False
    await astore.acquire_lease("r", owner="dead", ttl=0.2)  # as a killed worker leaves it
    await asyncio.sleep(0.25)
    [run] = await build().arecover()
    assert run.status == "completed"
    assert run.state == {"receipt": "paid 5", "replayed": ["card"]}
    assert tools.count("charge") == 1


async def test_async_unknown_outcome_pauses_and_is_answered(astore: clew.AsyncStore, tools: Tools) -> None:
    crash = {"on": True}

    async def send(to: str) -> str:
        tools.record("email", to)
        if crash["on"]:
            raise SimulatedCrash
        return "sent"

    agent = clew.Agent("async", state=dict, store=astore)

    @agent.step(start=True)
    async def notify(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["email"] = await ctx.call("email", send, "ann")

    with pytest.raises(SimulatedCrash):
        await agent.astart({}, run_id="r")
    crash["on"] = False
    paused = await agent.aresume("r")
    assert paused.status == "paused" and paused.interrupt["unknown_outcome"]["call"] == "email"
    run = await agent.aresume("r", answer={"result": "sent (checked)"}, actor="ops")
    assert run.state == {"email": "sent (checked)"}
    assert tools.count("email") == 1


async def test_async_call_timeout_cancels_the_coroutine(astore: clew.AsyncStore) -> None:
    cancelled: list[bool] = []

    async def hang() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"

    agent = clew.Agent("async", state=dict, store=astore)

    @agent.step(start=True)
    async def go(state: dict[str, Any], ctx: clew.Context) -> None:
        state["r"] = await ctx.call("hang", hang, timeout=0.05, retry=clew.Retry(attempts=2, backoff=0))

    run = await agent.astart({})  # did not wait the 5 s: each attempt was cancelled (below)
    assert run.status == "failed"
    assert run.error is not None and run.error["type"].endswith("CallTimeoutError")
    assert cancelled == [True, True]
    outcomes = [e.data for e in await astore.list_journal(run.run_id) if e.kind == "call.outcome"]
    assert [o["ok"] for o in outcomes] == [False, False]


async def test_async_step_timeout_and_retry(astore: clew.AsyncStore) -> None:
    tries: list[int] = []
    agent = clew.Agent("async", state=dict, store=astore)

    @agent.step(start=True, timeout=0.05, retry=clew.Retry(attempts=3, backoff=0, on=(TimeoutError,)))
    async def go(state: dict[str, Any], ctx: clew.Context) -> None:
        tries.append(ctx.attempt)
        if ctx.attempt < 3:
            await asyncio.sleep(5)
        state["done"] = ctx.attempt

    run = await agent.astart({})
    assert run.status == "completed" and run.state == {"done": 3}
    assert tries == [1, 2, 3]
    errors = [e for e in await astore.list_journal(run.run_id) if e.kind == "step.error"]
    assert [e.data["error"]["type"].rsplit(".", 1)[-1] for e in errors] == ["CallTimeoutError"] * 2

"""Two writers on one thread never silently lose an update.

LangGraph's stock savers accept both writers' checkpoints and let the thread's
"latest" follow whichever id sorts last, so one writer's work quietly drops out of
the conversation. On clew, a writer whose parent stopped being the branch head
while it worked gets a ConflictError (nothing of its step is stored), or, with
``on_conflict="fork"``, its line is kept as a branch ``conflict-<checkpoint id>``.
Deliberate forks (time travel, ``update_state`` on an older checkpoint) are not
conflicts: they start ``fork-<checkpoint id>`` branches.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph

from clew.errors import ConflictError
from clew.integrations.langgraph import ClewSaver
from tests.conftest import StoreFactory
from tests.integrations._graphs import Chat
from tests.integrations.conftest import thread


def _slow_graph(gate: threading.Barrier | None = None) -> StateGraph[Chat]:
    def reply(state: Chat) -> dict[str, Any]:
        if gate is not None:
            gate.wait(timeout=10)  # both writers have read the thread before either writes
        time.sleep(0.05)
        return {"messages": [AIMessage(f"reply to {state['messages'][-1].content}")]}

    g = StateGraph(Chat)
    g.add_node("reply", reply)
    g.add_edge(START, "reply")
    g.add_edge("reply", END)
    return g


def _checkpoint(**values: Any) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = dict(values)
    cp["channel_versions"] = {k: 1 for k in values}
    return cp


def test_second_writer_from_the_same_head_gets_a_conflict(stores: StoreFactory) -> None:
    a, b = ClewSaver(stores.open()), ClewSaver(stores.open())
    first = a.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, _checkpoint(n=0), {"step": 0}, {})
    seen_a, seen_b = a.get_tuple(thread()), b.get_tuple(thread())  # both read the head
    assert seen_a is not None and seen_b is not None
    a.put(seen_a.config, _checkpoint(n=1), {"step": 1}, {})
    lost = _checkpoint(n=2)
    with pytest.raises(ConflictError, match="another writer moved the thread past checkpoint"):
        b.put(seen_b.config, lost, {"step": 1}, {})
    latest = a.get_tuple(thread())
    assert latest is not None and latest.checkpoint["channel_values"] == {"n": 1}
    ids = [t.checkpoint["id"] for t in a.list(thread())]
    assert lost["id"] not in ids and first["configurable"]["checkpoint_id"] in ids


def test_time_travel_is_a_fork_not_a_conflict(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    root = saver.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, _checkpoint(n=0), {}, {})
    saver.put(root, _checkpoint(n=1), {}, {})
    old = saver.get_tuple(root)  # an explicit, older checkpoint
    assert old is not None
    fork = saver.put(old.config, cp := _checkpoint(n=9), {"source": "update"}, {})
    branch = f"fork-{cp['id']}"
    assert fork == {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": cp["id"]}}
    assert saver.store is not None
    b = saver.store.get_branch("t", branch)
    assert b.base == root["configurable"]["checkpoint_id"] and b.head == cp["id"]
    latest = saver.get_tuple(thread())
    assert latest is not None and latest.checkpoint["channel_values"] == {"n": 9}


def test_on_conflict_fork_keeps_both_lines(stores: StoreFactory) -> None:
    a, b = ClewSaver(stores.open()), ClewSaver(stores.open(), on_conflict="fork")
    a.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, _checkpoint(n=0), {}, {})
    seen_a, seen_b = a.get_tuple(thread()), b.get_tuple(thread())
    assert seen_a is not None and seen_b is not None
    a.put(seen_a.config, _checkpoint(n=1), {}, {})
    b.put(seen_b.config, kept := _checkpoint(n=2), {}, {})
    assert b.store is not None
    branch = b.store.get_branch("t", f"conflict-{kept['id']}")
    assert branch.base == seen_b.checkpoint["id"] and branch.head == kept["id"]
    values = sorted(t.checkpoint["channel_values"]["n"] for t in a.list(thread()))
    assert values == [0, 1, 2]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_two_graph_invocations_racing_on_one_thread(stores: StoreFactory) -> None:
    gate = threading.Barrier(2)
    graphs = [_slow_graph(gate).compile(checkpointer=ClewSaver(stores.open())) for _ in range(2)]
    setup = _slow_graph().compile(checkpointer=ClewSaver(stores.open()))
    setup.invoke({"messages": [HumanMessage("start")]}, thread("r"))
    outcome: dict[str, str] = {}

    def run(name: str, graph: Any) -> None:
        try:
            graph.invoke({"messages": [HumanMessage(name)]}, thread("r"))
            outcome[name] = "ok"
        except ConflictError:
            outcome[name] = "conflict"
        except Exception as exc:  # shown by the assertion below
            outcome[name] = repr(exc)

    workers = [threading.Thread(target=run, args=(n, g)) for n, g in zip("AB", graphs, strict=True)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(outcome.values()) == ["conflict", "ok"], outcome
    winner = next(n for n, o in outcome.items() if o == "ok")
    loser = next(n for n, o in outcome.items() if o == "conflict")
    contents = [m.content for m in graphs[0].get_state(thread("r")).values["messages"]]
    assert contents[:2] == ["start", "reply to start"]
    assert contents[-2:] == [winner, f"reply to {winner}"]
    # The loser's step is not in the thread, and it was told so. (Its input may be, when the
    # winner read the thread after the loser's input checkpoint was stored.)
    assert f"reply to {loser}" not in contents


async def test_two_tasks_sharing_one_saver(asaver: ClewSaver) -> None:
    gate = asyncio.Event()

    async def reply(state: Chat) -> dict[str, Any]:
        await gate.wait()
        return {"messages": [AIMessage("reply")]}

    g = StateGraph(Chat)
    g.add_node("reply", reply)
    g.add_edge(START, "reply")
    g.add_edge("reply", END)
    graph = g.compile(checkpointer=asaver)
    gate.set()
    await graph.ainvoke({"messages": [HumanMessage("start")]}, thread("s"))
    gate.clear()

    async def run(text: str) -> str:
        try:
            await graph.ainvoke({"messages": [HumanMessage(text)]}, thread("s"))
        except ConflictError:
            return "conflict"
        return "ok"

    tasks = [asyncio.create_task(run(t)) for t in ("A", "B")]
    await asyncio.sleep(0.1)  # both have read the thread's head and are waiting in the node
    gate.set()
    assert sorted(await asyncio.gather(*tasks)) == ["conflict", "ok"]


def test_first_writers_of_a_new_thread_both_keep_their_root(stores: StoreFactory) -> None:
    """Two parentless puts (two writers starting a thread) both stay, the second as a root branch."""
    a, b = ClewSaver(stores.open()), ClewSaver(stores.open())
    config: Any = {"configurable": {"thread_id": "new", "checkpoint_ns": ""}}
    a.put(config, _checkpoint(n=1), {}, {})
    b.put(config, second := _checkpoint(n=2), {}, {})
    assert a.store is not None
    assert a.store.get_branch("new", f"root-{second['id']}").head == second["id"]
    tup = a.get_tuple({"configurable": {"thread_id": "new", "checkpoint_id": second["id"]}})
    assert tup is not None and tup.parent_config is None  # LangGraph's view: a root


def test_for_contrast_the_stock_semantics_lose_an_update_silently() -> None:
    """LangGraph's InMemorySaver (same semantics as the stock SQLite and PostgreSQL savers)."""
    from langgraph.checkpoint.memory import InMemorySaver

    stock = InMemorySaver()
    gate = threading.Barrier(2)
    setup = _slow_graph().compile(checkpointer=stock)
    setup.invoke({"messages": [HumanMessage("start")]}, thread("r"))
    graphs = [_slow_graph(gate).compile(checkpointer=stock) for _ in range(2)]
    errors: list[BaseException] = []

    def run(name: str, graph: Any) -> None:
        try:
            graph.invoke({"messages": [HumanMessage(name)]}, thread("r"))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(n, g)) for n, g in zip("AB", graphs, strict=True)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    contents = [m.content for m in setup.get_state(thread("r")).values["messages"]]
    assert not errors  # both writers were told they succeeded...
    assert not {"reply to A", "reply to B"} <= set(contents)  # ...but one of them is gone


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_two_async_savers_racing_on_one_thread(stores: StoreFactory) -> None:
    """Two savers (two processes' worth) continue the same head; the second gets a ConflictError."""
    gate = asyncio.Event()
    arrived = asyncio.Semaphore(0)

    async def reply(state: Chat) -> dict[str, Any]:
        arrived.release()
        await gate.wait()
        return {"messages": [AIMessage(f"reply to {state['messages'][-1].content}")]}

    g = StateGraph(Chat)
    g.add_node("reply", reply)
    g.add_edge(START, "reply")
    g.add_edge("reply", END)
    async with ClewSaver.afrom_url(stores.url) as a, ClewSaver.afrom_url(stores.url) as b:
        gate.set()
        await g.compile(checkpointer=a).ainvoke({"messages": [HumanMessage("start")]}, thread("r"))
        gate.clear()

        async def run(saver: ClewSaver, text: str) -> str:
            try:
                await g.compile(checkpointer=saver).ainvoke({"messages": [HumanMessage(text)]}, thread("r"))
            except ConflictError:
                return "conflict"
            return "ok"

        tasks = [asyncio.create_task(run(a, "A")), asyncio.create_task(run(b, "B"))]
        for _ in tasks:  # both read the head; a writer refused already at its input may not get here
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.acquire(), 5)
        gate.set()
        assert sorted(await asyncio.gather(*tasks)) == ["conflict", "ok"]

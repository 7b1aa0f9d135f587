"""ClewSaver and LangGraph's InMemorySaver, side by side: a user sees the same thing.

Each scenario runs on the same graph twice, once with ``InMemorySaver`` and once
with ``ClewSaver`` (memory, SQLite, PostgreSQL; sync and async methods), and
records configs, snapshots, histories, streamed checkpoints and debug events,
interrupts, subgraph states, ``update_state`` results and time travel. The records
must be equal once generated ids and timestamps are renamed (``_parity.normalize``).
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from clew.integrations.langgraph import ClewSaver
from tests.conftest import StoreFactory
from tests.integrations._graphs import Chat, review_graph
from tests.integrations._parity import difference, no_message_ids, normalize

MODES = ["values", "updates", "checkpoints", "debug", "tasks"]
Scenario = Callable[[BaseCheckpointSaver[Any]], list[Any]]
AScenario = Callable[[BaseCheckpointSaver[Any]], Awaitable[list[Any]]]


def cfg(name: str = "t") -> Any:
    return {"configurable": {"thread_id": name}}


# -- graphs ------------------------------------------------------------------------


class Work(TypedDict):
    messages: Annotated[list[Any], operator.add]
    results: Annotated[dict[str, str], operator.or_]
    step: int


def work_graph() -> StateGraph[Work]:
    """A tool-using loop: a dict channel gains a key each step, with a person's check at step 2."""

    def act(state: Work) -> dict[str, Any]:
        n = state["step"] + 1
        if n == 2:
            answer = interrupt({"check": n})
            return {"messages": [HumanMessage(f"checked: {answer}")], "step": n}
        # ~1.8 KB a result: from the fourth step on the dict is a map log (store/_state.py)
        return {"messages": [AIMessage(f"call {n}")], "results": {f"r{n}": f"result {n} " * 200}, "step": n}

    g = StateGraph(Work)
    g.add_node("act", act)
    g.add_edge(START, "act")
    g.add_conditional_edges("act", lambda s: END if s["step"] >= 7 else "act", ["act", END])
    return g


def nested_graph() -> StateGraph[Chat]:
    """A parent whose ``inner`` node is a compiled subgraph that pauses for a person."""
    inner = StateGraph(Chat)
    inner.add_node("draft", lambda s: {"messages": [AIMessage("draft")]})
    inner.add_node("ask", lambda s: {"messages": [HumanMessage(f"ok: {interrupt('approve draft?')}")]})
    inner.add_edge(START, "draft")
    inner.add_edge("draft", "ask")
    inner.add_edge("ask", END)
    outer = StateGraph(Chat)
    outer.add_node("prep", lambda s: {"messages": [AIMessage("prep")]})
    outer.add_node("inner", inner.compile())
    outer.add_edge(START, "prep")
    outer.add_edge("prep", "inner")
    outer.add_edge("inner", END)
    return outer


def _raw(t: Any) -> Any:
    """What a checkpointer's own ``list`` returns, but channel versions (each saver picks its own).

    Message ids are masked: the input channel (``__start__``) and the writes hold the very
    objects LangGraph's reducers give ids to while the checkpoint is saved in the background.
    """
    values = no_message_ids(t.checkpoint["channel_values"])
    return (t.config, t.parent_config, t.metadata, no_message_ids(t.pending_writes), values)


# -- scenarios: sync -----------------------------------------------------------------


def review_scenario(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    graph = review_graph().compile(checkpointer=saver)
    rec: list[Any] = [list(graph.stream({"messages": [HumanMessage("hi")]}, cfg(), stream_mode=MODES))]
    paused = graph.get_state(cfg())
    rec += [paused, paused.interrupts, paused.tasks]
    rec.append(list(graph.stream(Command(resume="ok"), cfg(), stream_mode=MODES)))
    history = list(graph.get_state_history(cfg()))
    rec += [history, graph.get_state(cfg()).parent_config == history[1].config]
    edited = graph.update_state(cfg(), {"messages": [HumanMessage("note")]})
    rec += [edited, graph.get_state(edited), graph.get_state(cfg())]
    # Time travel: replay from the pause, then fork it with an edit and resume the fork.
    before = next(s for s in history if s.next == ("review",))
    rec.append(list(graph.stream(None, before.config, stream_mode=MODES)))
    forked = graph.update_state(before.config, {"messages": [HumanMessage("edited")]})
    rec += [forked, graph.get_state(forked)]
    rec.append(list(graph.stream(Command(resume="no"), forked, stream_mode=MODES)))
    rec.append(graph.get_state(cfg()))
    rec.append(list(graph.get_state_history(cfg())))
    rec.append(list(graph.get_state_history(cfg(), limit=2, before=before.config)))
    rec.append(list(graph.get_state_history(cfg(), filter={"source": "update"})))
    rec.append([_raw(t) for t in saver.list(cfg())])
    return rec


def work_scenario(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    graph = work_graph().compile(checkpointer=saver)
    start = {"messages": [HumanMessage("go")], "results": {}, "step": 0}
    rec: list[Any] = [list(graph.stream(start, cfg("w"), stream_mode=MODES))]
    rec.append(graph.get_state(cfg("w")))
    rec.append(list(graph.stream(Command(resume="fine"), cfg("w"), stream_mode=MODES)))
    rec.append(list(graph.get_state_history(cfg("w"))))
    first = rec[-1][-2]  # the loop's first checkpoint
    rec.append(graph.invoke(None, first.config))  # time travel: run again from the start
    rec.append(list(graph.get_state_history(cfg("w"))))
    return rec


def nested_scenario(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    graph = nested_graph().compile(checkpointer=saver)
    rec: list[Any] = [
        list(graph.stream({"messages": [HumanMessage("hi")]}, cfg("n"), stream_mode=MODES, subgraphs=True))
    ]
    paused = graph.get_state(cfg("n"), subgraphs=True)
    rec += [paused, paused.tasks[0].state]
    sub_config = paused.tasks[0].state.config
    rec.append(graph.get_state(sub_config))
    rec.append(list(graph.get_state_history(sub_config)))
    rec.append(list(graph.stream(Command(resume="yes"), cfg("n"), stream_mode=MODES, subgraphs=True)))
    rec.append(graph.get_state(cfg("n"), subgraphs=True))
    rec.append(list(graph.get_state_history(cfg("n"))))
    return rec


# -- scenarios: async ----------------------------------------------------------------


async def _alist(it: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in it]


async def areview_scenario(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    graph = review_graph().compile(checkpointer=saver)
    rec: list[Any] = [await _alist(graph.astream({"messages": [HumanMessage("hi")]}, cfg(), stream_mode=MODES))]
    paused = await graph.aget_state(cfg())
    rec += [paused, paused.interrupts, paused.tasks]
    rec.append(await _alist(graph.astream(Command(resume="ok"), cfg(), stream_mode=MODES)))
    history = await _alist(graph.aget_state_history(cfg()))
    rec += [history, (await graph.aget_state(cfg())).parent_config == history[1].config]
    edited = await graph.aupdate_state(cfg(), {"messages": [HumanMessage("note")]})
    rec += [edited, await graph.aget_state(edited), await graph.aget_state(cfg())]
    before = next(s for s in history if s.next == ("review",))
    rec.append(await _alist(graph.astream(None, before.config, stream_mode=MODES)))
    forked = await graph.aupdate_state(before.config, {"messages": [HumanMessage("edited")]})
    rec += [forked, await graph.aget_state(forked)]
    rec.append(await _alist(graph.astream(Command(resume="no"), forked, stream_mode=MODES)))
    rec.append(await graph.aget_state(cfg()))
    rec.append(await _alist(graph.aget_state_history(cfg())))
    rec.append(await _alist(graph.aget_state_history(cfg(), limit=2, before=before.config)))
    rec.append(await _alist(graph.aget_state_history(cfg(), filter={"source": "update"})))
    rec.append(
        [(t.config, t.parent_config, t.metadata, no_message_ids(t.pending_writes)) async for t in saver.alist(cfg())]
    )
    # Sync calls on the same saver from async code: a worker thread, and the event loop's own thread.
    rec.append(await asyncio.to_thread(graph.get_state, cfg()))
    rec.append(graph.get_state(cfg()))
    return rec


async def awork_scenario(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    graph = work_graph().compile(checkpointer=saver)
    start = {"messages": [HumanMessage("go")], "results": {}, "step": 0}
    rec: list[Any] = [await _alist(graph.astream(start, cfg("w"), stream_mode=MODES))]
    rec.append(await graph.aget_state(cfg("w")))
    rec.append(await _alist(graph.astream(Command(resume="fine"), cfg("w"), stream_mode=MODES)))
    rec.append(await _alist(graph.aget_state_history(cfg("w"))))
    first = rec[-1][-2]
    rec.append(await graph.ainvoke(None, first.config))
    rec.append(await _alist(graph.aget_state_history(cfg("w"))))
    return rec


async def anested_scenario(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    # durability="sync": with LangGraph's default ("async") a subgraph's last save may still
    # be in flight when astream returns, on any saver (seen once on InMemorySaver under
    # load), and the reads below would race it.
    graph = nested_graph().compile(checkpointer=saver)
    start = {"messages": [HumanMessage("hi")]}
    stream = graph.astream(start, cfg("n"), stream_mode=MODES, subgraphs=True, durability="sync")
    rec: list[Any] = [await _alist(stream)]
    paused = await graph.aget_state(cfg("n"), subgraphs=True)
    rec += [paused, paused.tasks[0].state]
    sub_config = paused.tasks[0].state.config
    rec.append(await graph.aget_state(sub_config))
    rec.append(await _alist(graph.aget_state_history(sub_config)))
    stream = graph.astream(Command(resume="yes"), cfg("n"), stream_mode=MODES, subgraphs=True, durability="sync")
    rec.append(await _alist(stream))
    rec.append(await graph.aget_state(cfg("n"), subgraphs=True))
    rec.append(await _alist(graph.aget_state_history(cfg("n"))))
    return rec


def sync_subgraph_in_async_node(saver: BaseCheckpointSaver[Any]) -> Callable[[], Awaitable[list[Any]]]:
    """An async node that runs a subgraph with the sync ``invoke`` (on the event loop's thread)."""
    inner = StateGraph(Chat)
    inner.add_node("draft", lambda s: {"messages": [AIMessage("inner draft")]})
    inner.add_edge(START, "draft")
    inner.add_edge("draft", END)
    compiled_inner = inner.compile()

    async def call_inner(state: Chat) -> dict[str, Any]:
        out = compiled_inner.invoke({"messages": state["messages"]})
        return {"messages": out["messages"][len(state["messages"]) :]}

    outer = StateGraph(Chat)
    outer.add_node("call_inner", call_inner)
    outer.add_edge(START, "call_inner")
    outer.add_edge("call_inner", END)
    graph = outer.compile(checkpointer=saver)

    async def run() -> list[Any]:
        out = await graph.ainvoke({"messages": [HumanMessage("hi")]}, cfg("s"))
        return [out, await graph.aget_state(cfg("s")), await _alist(graph.aget_state_history(cfg("s")))]

    return run


# -- tests ---------------------------------------------------------------------------

SYNC = {"review": review_scenario, "work": work_scenario, "nested": nested_scenario}
ASYNC = {"review": areview_scenario, "work": awork_scenario, "nested": anested_scenario}


@pytest.mark.parametrize("scenario", sorted(SYNC))
def test_sync_matches_in_memory_saver(stores: StoreFactory, scenario: str) -> None:
    expected = normalize(SYNC[scenario](InMemorySaver()))
    got = normalize(SYNC[scenario](ClewSaver(stores.open())))
    assert got == expected, difference(got, expected)


@asynccontextmanager
async def _asaver(stores: StoreFactory) -> AsyncIterator[ClewSaver]:
    async with ClewSaver.afrom_url(stores.url) as saver:
        yield saver


@pytest.mark.parametrize("scenario", sorted(ASYNC))
async def test_async_matches_in_memory_saver(stores: StoreFactory, scenario: str) -> None:
    expected = normalize(await ASYNC[scenario](InMemorySaver()))
    async with _asaver(stores) as saver:
        got = normalize(await ASYNC[scenario](saver))
    assert got == expected, difference(got, expected)


async def test_sync_subgraph_inside_an_async_node(stores: StoreFactory) -> None:
    expected = normalize(await sync_subgraph_in_async_node(InMemorySaver())())
    async with _asaver(stores) as saver:
        got = normalize(await sync_subgraph_in_async_node(saver)())
    assert got == expected, difference(got, expected)


async def test_a_sync_store_serves_async_calls(stores: StoreFactory) -> None:
    expected = normalize(await areview_scenario(InMemorySaver()))
    got = normalize(await areview_scenario(ClewSaver(stores.open())))
    assert got == expected, difference(got, expected)


def _expected_status(snapshot: Any) -> str:
    """What LangGraph's own view of a thread says its status is."""
    if snapshot.interrupts or any(t.interrupts for t in snapshot.tasks):
        return "paused"
    if any(t.error for t in snapshot.tasks):
        return "failed"
    return "running" if snapshot.next else "completed"


def test_a_thread_status_follows_the_graph(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    assert saver.store is not None
    fail = {"now": True}

    def flaky(state: Chat) -> dict[str, Any]:
        if fail["now"]:
            raise RuntimeError("tool down")
        return {"messages": [AIMessage("done")]}

    g = StateGraph(Chat)
    g.add_node("flaky", flaky)
    g.add_edge(START, "flaky")
    g.add_edge("flaky", END)
    graphs = {"review": review_graph().compile(checkpointer=saver), "flaky": g.compile(checkpointer=saver)}
    seen = []

    def check(name: str) -> None:
        snapshot = graphs[name].get_state(cfg(name))
        seen.append(saver.store.get_run(name).status)  # type: ignore[union-attr]  # checked above
        assert seen[-1] == _expected_status(snapshot), (name, snapshot)

    graphs["review"].invoke({"messages": [HumanMessage("hi")]}, cfg("review"))
    check("review")
    graphs["review"].invoke(Command(resume="ok"), cfg("review"))
    check("review")
    with pytest.raises(RuntimeError, match="tool down"):
        graphs["flaky"].invoke({"messages": [HumanMessage("hi")]}, cfg("flaky"))
    check("flaky")
    fail["now"] = False
    graphs["flaky"].invoke(None, cfg("flaky"))
    check("flaky")
    assert seen == ["paused", "completed", "failed", "completed"]
    nested = nested_graph().compile(checkpointer=saver)
    nested.invoke({"messages": [HumanMessage("hi")]}, cfg("n"))
    nested.invoke(Command(resume="yes"), cfg("n"))
    runs = saver.store.list_runs(agent="langgraph", labels={"thread_id": "n"}).items
    assert [(r.run_id, r.status) for r in runs] == [("n", "completed")]  # the subgraph is a branch of it
    statuses = {b.name: b.status for b in saver.store.list_branches("n")}
    assert set(statuses.values()) == {"completed"}
    assert len([name for name in statuses if name.endswith("/main")]) == 1  # the subgraph's namespace


def _shared_decoding(history: list[Any]) -> None:
    """Every snapshot of one listing holds the very message objects it shares with the others."""
    first = history[-2].values["messages"][0]  # the oldest snapshot with messages
    assert all(s.values["messages"][0] is first for s in history[:-1])


def test_history_decodes_each_shared_blob_once(stores: StoreFactory) -> None:
    expected = normalize(work_scenario(InMemorySaver()))
    saver = ClewSaver(stores.open())
    assert normalize(work_scenario(saver)) == expected  # the same history, built from shared pieces
    graph = work_graph().compile(checkpointer=ClewSaver(stores.open()))
    _shared_decoding(list(graph.get_state_history(cfg("w"))))


async def test_async_history_decodes_each_shared_blob_once(stores: StoreFactory) -> None:
    async with _asaver(stores) as saver:
        await awork_scenario(saver)
        graph = work_graph().compile(checkpointer=saver)
        _shared_decoding(await _alist(graph.aget_state_history(cfg("w"))))


async def test_async_thread_status_follows_the_graph(stores: StoreFactory) -> None:
    async with _asaver(stores) as saver:
        graph = review_graph().compile(checkpointer=saver)
        assert saver.astore is not None
        await graph.ainvoke({"messages": [HumanMessage("hi")]}, cfg("a"))
        assert (await saver.astore.get_run("a")).status == _expected_status(await graph.aget_state(cfg("a")))
        await graph.ainvoke(Command(resume="ok"), cfg("a"))
        assert (await saver.astore.get_run("a")).status == "completed"
        assert _expected_status(await graph.aget_state(cfg("a"))) == "completed"

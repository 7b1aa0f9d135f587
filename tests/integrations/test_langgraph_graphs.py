"""Real LangGraph graphs on clew: interrupts, resume, time travel, subgraphs, Send, async."""

from __future__ import annotations

import asyncio
import importlib.util
import operator
import sys
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send

import clew
from clew.integrations.langgraph import ClewSaver
from tests.conftest import StoreFactory
from tests.integrations._graphs import review_graph
from tests.integrations.conftest import thread

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_example_interrupt_and_resume(stores: StoreFactory) -> None:
    out = _example("langgraph_interrupt").main(stores.url)
    assert out["question"] == "Refund 42.00?"
    assert out["paused_status"] == "paused"
    assert out["approved"] is True
    assert out["last"] == "Your refund is on its way."
    assert out["verified"] and out["run_status"] == "completed"  # the graph reached its end
    assert out["checkpoints"] == 5  # input, __start__, draft, the pause, approve + reply


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_example_time_travel_and_fork(stores: StoreFactory) -> None:
    out = _example("langgraph_time_travel").main(stores.url)
    assert out["history"] == 9
    assert out["fork_messages"] == [
        "where is my order?",
        "answer to: where is my order?",
        "can I change the delivery date?",
        "answer to: can I change the delivery date?",
    ]
    assert out["latest_messages"] == out["fork_messages"]
    assert out["main_messages"][-1] == "answer to: when will it arrive?"  # main is untouched
    assert out["branches"][0] == "fork-" + out["branches"][0][5:] and "main" in out["branches"]
    assert out["fork_base"] == out["target"]
    assert out["verified"]


def test_interrupt_survives_a_new_store(stores: StoreFactory) -> None:
    graph = review_graph().compile(checkpointer=ClewSaver(stores.open()))
    out = graph.invoke({"messages": [HumanMessage("hi")]}, thread())
    assert out["__interrupt__"][0].value == {"question": "approve?"}
    # A new store on the same database (on memory://, the same store) and a new saver.
    again = review_graph().compile(checkpointer=ClewSaver(stores.open()))
    snapshot = again.get_state(thread())
    assert snapshot.next == ("review",)
    assert snapshot.tasks[0].interrupts[0].value == {"question": "approve?"}
    out = again.invoke(Command(resume="ok"), thread())
    assert [m.content for m in out["messages"]] == ["hi", "plan 1", "review: ok"]


async def test_async_graph(asaver: ClewSaver) -> None:
    graph = review_graph().compile(checkpointer=asaver)
    out = await graph.ainvoke({"messages": [HumanMessage("hi")]}, thread("a"))
    assert "__interrupt__" in out
    assert asaver.astore is not None
    assert (await asaver.astore.get_run("a")).status == "paused"
    out = await graph.ainvoke(Command(resume="yes"), thread("a"))
    assert out["messages"][-1].content == "review: yes"
    history = [s async for s in graph.aget_state_history(thread("a"))]
    assert [s.metadata["source"] for s in history][-1] == "input"
    assert (await asaver.astore.verify("a")).ok


async def test_async_time_travel(asaver: ClewSaver) -> None:
    graph = review_graph().compile(checkpointer=asaver)
    await graph.ainvoke({"messages": [HumanMessage("hi")]}, thread("a"))
    await graph.ainvoke(Command(resume="yes"), thread("a"))
    history = [s async for s in graph.aget_state_history(thread("a"))]
    before = next(s for s in history if s.next == ("review",))
    forked = await graph.aupdate_state(before.config, {"messages": [HumanMessage("edited")]})
    out = await graph.ainvoke(Command(resume="no"), forked)
    assert [m.content for m in out["messages"]] == ["hi", "plan 1", "edited", "review: no"]
    assert asaver.astore is not None
    names = [b.name for b in await asaver.astore.list_branches("a")]
    assert any(n.startswith("fork-") for n in names)


def test_a_saver_needs_a_store() -> None:
    with pytest.raises(clew.errors.ConfigError, match="needs a store"):
        ClewSaver()


async def test_an_async_store_serves_sync_calls(stores: StoreFactory) -> None:
    """Sync calls on a saver made with an async store alone (PostgreSQL: a pool opened on first use)."""
    astore = await clew.open_async(stores.url)
    saver = ClewSaver(astore=astore)
    try:
        graph = review_graph().compile(checkpointer=saver)
        await graph.ainvoke({"messages": [HumanMessage("hi")]}, thread("a"))
        snapshot = await asyncio.to_thread(graph.get_state, thread("a"))
        assert snapshot.next == ("review",)
        assert graph.get_state(thread("a")).values == snapshot.values
    finally:
        saver.close()
        await astore.close()
    saver.close()  # idempotent


class Outer(TypedDict):
    topics: list[str]
    results: Annotated[list[str], operator.add]


def test_subgraphs_and_send_map_to_branches_of_the_thread_run(stores: StoreFactory) -> None:
    class Inner(TypedDict):
        topic: str
        results: Annotated[list[str], operator.add]

    def research(state: Inner) -> dict[str, Any]:
        return {"results": [f"notes on {state['topic']}"]}

    inner = StateGraph(Inner)
    inner.add_node("research", research)
    inner.add_edge(START, "research")
    inner.add_edge("research", END)

    outer = StateGraph(Outer)
    outer.add_node("worker", inner.compile())
    outer.add_conditional_edges(START, lambda s: [Send("worker", {"topic": t}) for t in s["topics"]], ["worker"])
    outer.add_edge("worker", END)
    saver = ClewSaver(stores.open())
    graph = outer.compile(checkpointer=saver)
    out = graph.invoke({"topics": ["tides", "moths"], "results": []}, thread("map"))
    assert sorted(out["results"]) == ["notes on moths", "notes on tides"]

    store = saver.store
    assert store is not None
    runs = store.list_runs(agent="langgraph", labels={"thread_id": "map"}).items
    assert [r.run_id for r in runs] == ["map"]  # one run per thread: its namespaces are branches
    branches = sorted(b.name for b in store.list_branches("map"))
    namespaces = sorted({name.rpartition("/")[0] for name in branches})
    assert namespaces[0] == "" and all(ns.startswith("worker") for ns in namespaces[1:])
    assert len(namespaces) == 3  # the root and one per Send
    assert [b for b in branches if b.endswith("/main")] == [f"{ns}/main" for ns in namespaces[1:]]
    assert store.verify("map").ok
    for ns in namespaces:  # each namespace reads back as LangGraph wrote it
        listed = list(saver.list({"configurable": {"thread_id": "map", "checkpoint_ns": ns}}))
        assert listed and all(t.config["configurable"]["checkpoint_ns"] == ns for t in listed)
    saver.delete_thread("map")
    assert not store.list_runs(agent="langgraph", labels={"thread_id": "map"}).items


class Opaque:
    """A value clew's codec does not know: kept in LangGraph's serde format."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.n == self.n

    def __hash__(self) -> int:
        return self.n


class Odd(TypedDict):
    box: Any
    count: int


def test_values_clew_cannot_encode_round_trip(stores: StoreFactory) -> None:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    g = StateGraph(Odd)
    g.add_node("bump", lambda s: {"box": Opaque(s["count"] + 1), "count": s["count"] + 1})
    g.add_edge(START, "bump")
    g.add_edge("bump", END)
    serde = JsonPlusSerializer(pickle_fallback=True)  # this class has no other LangGraph encoding
    saver = ClewSaver(stores.open(), serde=serde)
    graph = g.compile(checkpointer=saver)
    out = graph.invoke({"box": None, "count": 1}, thread("odd"))
    assert out["box"] == Opaque(2)
    assert graph.get_state(thread("odd")).values["box"] == Opaque(2)
    assert saver.store is not None and saver.store.verify("odd").ok

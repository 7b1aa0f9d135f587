"""LangGraph threads stored by ClewSaver show in the inspector like any run."""

from typing import Annotated, Any, TypedDict

from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages

import clew
from clew.integrations.langgraph import ClewSaver
from tests.web.conftest import client_for


class Chat(TypedDict):
    messages: Annotated[list[Any], add_messages]


def test_a_langgraph_thread_in_the_inspector(store: clew.Store) -> None:
    builder = StateGraph(Chat)
    builder.add_node("reply", lambda state: {"messages": [("ai", f"<b>{len(state['messages'])}</b> so far")]})
    builder.add_edge(START, "reply")
    graph = builder.compile(checkpointer=ClewSaver(store))
    cfg = {"configurable": {"thread_id": "t1"}}
    graph.invoke({"messages": [("user", "hi")]}, cfg)
    graph.invoke({"messages": [("user", "again")]}, cfg)

    c = client_for(store)
    assert "t1" in c.get("/").text
    run = c.get("/api/v1/runs/t1").json()
    assert len(run["checkpoints"]) >= 4
    head = next(b["head"] for b in run["branches"] if b["head"])
    page = c.get(f"/checkpoints/{head}?run=t1")
    assert page.status_code == 200
    assert "&lt;b&gt;3&lt;/b&gt; so far" in page.text  # the AI's message, escaped
    assert c.get("/runs/t1").status_code == 200
    diff = c.get(f"/api/v1/checkpoints/{head}/diff?run=t1").json()
    assert diff["changes"], diff


def test_a_thread_with_a_subgraph_is_one_run_in_the_inspector(store: clew.Store) -> None:
    inner = StateGraph(Chat)
    inner.add_node("draft", lambda state: {"messages": [("ai", "inner draft")]})
    inner.add_edge(START, "draft")
    outer = StateGraph(Chat)
    outer.add_node("inner", inner.compile())
    outer.add_edge(START, "inner")
    graph = outer.compile(checkpointer=ClewSaver(store))
    graph.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "nested"}})

    c = client_for(store)
    runs = c.get("/api/v1/runs").json()
    assert [r["run_id"] for r in runs["items"]] == ["nested"]  # the subgraph is no run of its own
    run = c.get("/api/v1/runs/nested").json()
    sub = next(b for b in run["branches"] if b["name"].endswith("/main"))
    assert sub["name"].startswith("inner:")
    assert any(cp["branch"] == sub["name"] for cp in run["checkpoints"])  # its checkpoints are in the run
    page = c.get(f"/checkpoints/{sub['head']}?run=nested")
    assert page.status_code == 200 and "inner draft" in page.text
    assert sub["name"] in c.get("/runs/nested").text

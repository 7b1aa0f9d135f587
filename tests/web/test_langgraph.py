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

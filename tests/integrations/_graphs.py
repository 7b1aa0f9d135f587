"""Small graphs shared by the LangGraph tests."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def review_graph() -> StateGraph[Chat]:
    """``agent`` writes a plan, ``review`` pauses for a person (``interrupt``) and records the answer."""

    def agent(state: Chat) -> dict[str, Any]:
        return {"messages": [AIMessage(f"plan {len(state['messages'])}")]}

    def review(state: Chat) -> dict[str, Any]:
        answer = interrupt({"question": "approve?"})
        return {"messages": [HumanMessage(f"review: {answer}")]}

    g = StateGraph(Chat)
    g.add_node("agent", agent)
    g.add_node("review", review)
    g.add_edge(START, "agent")
    g.add_edge("agent", "review")
    g.add_edge("review", END)
    return g

"""The workload as LangGraph graphs: the agent loop (W1, W2, W4, W5) and a bounded one (W3).

The agent loop's node appends the step's three items as LangChain messages (a
``HumanMessage`` and an ``AIMessage`` of ~400 B, a ``ToolMessage`` of ~1 KB) to a
``messages`` channel: ``add_messages`` (LangGraph's standard reducer, which hands the
saver the whole list at every step) or a ``DeltaChannel`` (LangGraph beta: checkpoints
hold a snapshot every ``snapshot_frequency`` updates, 100 by default, and a read
replays the writes since).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt

from bench._workload import Step

try:  # LangGraph beta; absent from older releases
    from langgraph.channels import DeltaChannel
    from langgraph.graph.message import _messages_delta_reducer
except ImportError:  # pragma: no cover - depends on the installed LangGraph
    DeltaChannel = None


def has_delta_channel() -> bool:
    return DeltaChannel is not None


def messages_of(step: Step) -> list[BaseMessage]:
    u, a, t = step
    return [
        HumanMessage(content=u["content"], id=u["id"]),
        AIMessage(content=a["content"], id=a["id"]),
        ToolMessage(content=t["output"], tool_call_id=t["call_id"], id=t["call_id"]),
    ]


class AgentState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    i: int


def _state_type(delta: bool) -> Any:
    if not delta:
        return AgentState
    assert DeltaChannel is not None, "this LangGraph has no DeltaChannel"

    class DeltaState(TypedDict):
        messages: Annotated[list[AnyMessage], DeltaChannel(_messages_delta_reducer)]
        i: int

    return DeltaState


def agent_graph(data: list[Step], marks: list[float], checkpointer: Any, *, delta: bool = False) -> Any:
    """``len(data)`` steps in one invoke; ``marks`` gets the time each step starts."""
    n = len(data)
    msgs = [messages_of(s) for s in data]  # made before the clock starts

    def agent(state: dict[str, Any]) -> dict[str, Any]:
        marks.append(time.perf_counter())
        i = state["i"]
        return {"i": i + 1, "messages": msgs[i]}

    g = StateGraph(_state_type(delta))
    g.add_node("agent", agent)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", lambda s: "agent" if s["i"] < n else END, ["agent", END])
    return g.compile(checkpointer=checkpointer)


def config(thread_id: str, n: int = 0) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": n + 20}


# -- W3: a bounded state, paused at the end of its history ------------------------


class BoundedState(TypedDict):
    messages: list[AnyMessage]  # the last ``window`` messages: a plain (last value) channel
    i: int
    answers: int


def bounded_graph(data: list[Step], window: int, checkpointer: Any) -> Any:
    """``len(data)`` steps keeping the last ``window`` messages, then a pause for a person.

    Each resume answers the question, and the loop comes back to the same pause.
    """
    msgs = [messages_of(s) for s in data]

    def work(state: dict[str, Any]) -> dict[str, Any]:
        i = state["i"]
        if i < len(msgs):
            return {"i": i + 1, "messages": (state["messages"] + msgs[i])[-window:]}
        interrupt({"question": "continue?"})
        return {"answers": state["answers"] + 1}

    g = StateGraph(BoundedState)
    g.add_node("work", work)
    g.add_edge(START, "work")
    g.add_edge("work", "work")
    return g.compile(checkpointer=checkpointer)

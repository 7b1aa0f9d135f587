"""The agent workload used by the LangGraph storage test and ``bench/langgraph_bench.py``.

``loop`` (the default): one ``invoke`` runs ``n`` LangGraph steps; each step the
``agent`` node calls a tool and appends three messages: the tool call (~400 B), the
tool result (~1 KB) and its answer (~400 B). ``chat``: ``n`` invokes, one per user
turn: the user's message (~400 B) goes in, ``agent`` answers with a tool call
(~400 B), ``tools`` returns a result (~1 KB): four checkpoints a turn.

LangGraph's ``add_messages`` reducer keeps the whole history in the ``messages``
channel, which LangGraph hands to the saver in full at every checkpoint. Texts are
deterministic words, so every saver stores the same bytes.
"""

from __future__ import annotations

import functools
import random
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

_WORDS = (
    "the",
    "agent",
    "checks",
    "order",
    "status",
    "refund",
    "policy",
    "customer",
    "account",
    "billing",
    "invoice",
    "shipping",
    "delay",
    "warehouse",
    "ticket",
    "priority",
    "escalate",
    "search",
    "knowledge",
    "base",
    "article",
    "summary",
    "answer",
    "question",
    "tool",
    "result",
    "payment",
    "card",
    "address",
    "update",
    "confirm",
    "email",
    "notify",
    "schedule",
    "review",
)

HUMAN_BYTES, AI_BYTES, TOOL_BYTES = 400, 400, 1000


class AgentState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    steps: int


@functools.lru_cache(maxsize=8192)
def text(seed: str, size: int) -> str:
    """Deterministic word salad of ``size`` bytes."""
    rng = random.Random(seed)
    out: list[str] = []
    n = 0
    while n < size:
        word = rng.choice(_WORDS)
        out.append(word)
        n += len(word) + 1
    return " ".join(out)[:size]


def _agent(state: AgentState) -> dict[str, Any]:
    k = len(state["messages"])
    call = {"name": "search", "args": {"query": text(f"q{k}", 40)}, "id": f"call_{k}"}
    return {"messages": [AIMessage(content=text(f"ai{k}", AI_BYTES), tool_calls=[call])]}


def _tools(state: AgentState) -> dict[str, Any]:
    last = state["messages"][-1]
    call_id = last.tool_calls[0]["id"] if isinstance(last, AIMessage) and last.tool_calls else "none"
    return {"messages": [ToolMessage(content=text(f"tool{call_id}", TOOL_BYTES), tool_call_id=call_id)]}


def builder() -> StateGraph[AgentState]:
    g = StateGraph(AgentState)
    g.add_node("agent", _agent)
    g.add_node("tools", _tools)
    g.add_edge(START, "agent")
    g.add_edge("agent", "tools")
    g.add_edge("tools", END)
    return g


def _loop_agent(state: AgentState) -> dict[str, Any]:
    k = state.get("steps", 0)
    call = {"name": "search", "args": {"query": text(f"q{k}", 40)}, "id": f"call_{k}"}
    return {
        "steps": k + 1,
        "messages": [
            AIMessage(content=text(f"ai{k}", AI_BYTES), tool_calls=[call]),
            ToolMessage(content=text(f"tool{k}", TOOL_BYTES), tool_call_id=call["id"]),
            AIMessage(content=text(f"answer{k}", HUMAN_BYTES)),
        ],
    }


def loop_builder(n: int) -> StateGraph[AgentState]:
    """``agent`` runs ``n`` times in one invoke, appending ~1.8 KB of messages each step."""
    g = StateGraph(AgentState)
    g.add_node("agent", _loop_agent)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", lambda s: "agent" if s["steps"] < n else END, ["agent", END])
    return g


def run(graph: Any, thread_id: str, n: int, workload: str = "loop") -> None:
    """Run ``n`` steps of a workload on a compiled graph."""
    config: Any = {"configurable": {"thread_id": thread_id}, "recursion_limit": n + 10}
    if workload == "loop":
        graph.invoke({"messages": [human(0)], "steps": 0}, config)
    else:
        for k in range(n):
            graph.invoke(step_input(k), config)


def warm(n: int, workload: str = "loop") -> None:
    """Make every text of an ``n``-step run now, so timing measures LangGraph and the saver."""
    for k in range(n):
        for seed, size in (
            (f"q{k}", 40),
            (f"ai{k}", AI_BYTES),
            (f"tool{k}", TOOL_BYTES),
            (f"answer{k}", HUMAN_BYTES),
            (f"human{k}", HUMAN_BYTES),
        ):
            text(seed, size)
    if workload == "chat":
        for k in range(4 * n + 4):
            text(f"q{k}", 40)
            text(f"ai{k}", AI_BYTES)
            text(f"toolcall_{k}", TOOL_BYTES)


def compile_workload(workload: str, n: int, checkpointer: Any) -> Any:
    return (loop_builder(n) if workload == "loop" else builder()).compile(checkpointer=checkpointer)


def human(step: int) -> HumanMessage:
    return HumanMessage(content=text(f"human{step}", HUMAN_BYTES))


def step_input(step: int) -> dict[str, Any]:
    return {"messages": [human(step)]}


def raw_bytes(messages: list[AnyMessage]) -> int:
    """The bytes a step appends: the UTF-8 content of its messages (tool-call args included)."""
    total = 0
    for msg in messages:
        total += len(str(msg.content).encode())
        for call in getattr(msg, "tool_calls", None) or []:
            total += len(str(call["args"]).encode())
    return total

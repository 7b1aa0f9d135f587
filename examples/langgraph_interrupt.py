"""A LangGraph agent that pauses for a person, checkpointed on a clew store.

    python examples/langgraph_interrupt.py [STORE_URL]

STORE_URL defaults to ``sqlite:///langgraph_interrupt.db``; ``postgresql://...`` works
the same. The graph drafts a refund, pauses with ``interrupt()`` until someone
approves it, and is resumed with ``Command(resume=...)`` by a *new* saver on the same
store, as a second process would be. The thread is an ordinary clew run: its
history and hash chain are checked at the end.
"""

from __future__ import annotations

import sys
import uuid
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt

from clew.integrations.langgraph import ClewSaver


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    refund: float
    approved: bool


def draft(state: State) -> dict[str, Any]:
    return {"refund": 42.0, "messages": [AIMessage("I can refund 42.00 for the late order.")]}


def approve(state: State) -> dict[str, Any]:
    answer = interrupt({"question": f"Refund {state['refund']:.2f}?", "options": ["yes", "no"]})
    return {"approved": answer == "yes", "messages": [HumanMessage(f"supervisor: {answer}")]}


def reply(state: State) -> dict[str, Any]:
    text = "Your refund is on its way." if state["approved"] else "A colleague will contact you."
    return {"messages": [AIMessage(text)]}


def build() -> StateGraph[State]:
    g = StateGraph(State)
    g.add_node("draft", draft)
    g.add_node("approve", approve)
    g.add_node("reply", reply)
    g.add_edge(START, "draft")
    g.add_edge("draft", "approve")
    g.add_edge("approve", "reply")
    g.add_edge("reply", END)
    return g


def main(url: str = "sqlite:///langgraph_interrupt.db") -> dict[str, Any]:
    config: Any = {"configurable": {"thread_id": f"refund-{uuid.uuid4().hex[:8]}"}}
    thread_id = config["configurable"]["thread_id"]

    with ClewSaver.from_url(url) as saver:  # the first process: runs until the pause
        graph = build().compile(checkpointer=saver)
        out = graph.invoke({"messages": [HumanMessage("My order is late, can I get a refund?")]}, config)
        question = out["__interrupt__"][0].value["question"]
        print(f"paused on {thread_id}: {question}")
        status = saver.store.get_run(thread_id).status if saver.store else None

    with ClewSaver.from_url(url) as saver:  # another process: a person answers
        graph = build().compile(checkpointer=saver)
        print("waiting for:", graph.get_state(config).next)
        out = graph.invoke(Command(resume="yes"), config)
        print("agent:", out["messages"][-1].content)
        store = saver.store
        assert store is not None
        history = list(store.list_checkpoints(thread_id))
        report = store.verify(thread_id)
        print(f"clew run {thread_id}: {len(history)} checkpoints, verify ok: {report.ok}")
        return {
            "thread_id": thread_id,
            "paused_status": status,
            "question": question,
            "approved": out["approved"],
            "last": out["messages"][-1].content,
            "checkpoints": len(history),
            "verified": report.ok,
            "run_status": store.get_run(thread_id).status,
        }


if __name__ == "__main__":
    main(*sys.argv[1:2])

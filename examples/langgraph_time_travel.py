"""Time travel on a clew store: LangGraph's history, and a fork made by ``update_state``.

    python examples/langgraph_time_travel.py [STORE_URL]

STORE_URL defaults to ``sqlite:///langgraph_time_travel.db``; ``postgresql://...``
works the same. An agent answers three questions; we walk back through
``get_state_history``, rewrite the second question with ``update_state`` and run on
from there. LangGraph sees a fork; clew keeps it as a branch ``fork-<checkpoint id>``
next to ``main``, both lines whole and hash-chained.
"""

from __future__ import annotations

import sys
import uuid
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from clew.integrations.langgraph import ClewSaver


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def answer(state: State) -> dict[str, Any]:
    question = state["messages"][-1].content
    return {"messages": [AIMessage(f"answer to: {question}")]}


def build() -> StateGraph[State]:
    g = StateGraph(State)
    g.add_node("answer", answer)
    g.add_edge(START, "answer")
    g.add_edge("answer", END)
    return g


def main(url: str = "sqlite:///langgraph_time_travel.db") -> dict[str, Any]:
    thread_id = f"travel-{uuid.uuid4().hex[:8]}"
    config: Any = {"configurable": {"thread_id": thread_id}}
    with ClewSaver.from_url(url) as saver:
        graph = build().compile(checkpointer=saver)
        for question in ("where is my order?", "can I change the address?", "when will it arrive?"):
            graph.invoke({"messages": [HumanMessage(question)]}, config)

        history = list(graph.get_state_history(config))
        print(f"{len(history)} checkpoints, newest first")
        # The input checkpoint that holds the second question, about to be answered.
        target = next(
            s
            for s in history
            if s.next == ("answer",) and s.values["messages"][-1].content == "can I change the address?"
        )
        edited = HumanMessage("can I change the delivery date?", id=target.values["messages"][-1].id)
        fork_config = graph.update_state(target.config, {"messages": [edited]})
        result = graph.invoke(None, fork_config)
        print("fork:", [m.content for m in result["messages"]])

        latest = graph.get_state(config)  # the thread's latest checkpoint is now the fork's
        main_line = [m.content for m in history[0].values["messages"]]
        store = saver.store
        assert store is not None
        branches = {b.name: b for b in store.list_branches(thread_id)}
        for name, b in branches.items():
            print(f"branch {name}: head {b.head}, forked at {b.base}")
        report = store.verify(thread_id)
        print("verify ok:", report.ok)
        return {
            "thread_id": thread_id,
            "history": len(history),
            "fork_messages": [m.content for m in result["messages"]],
            "latest_messages": [m.content for m in latest.values["messages"]],
            "main_messages": main_line,
            "branches": sorted(branches),
            "fork_base": next(b.base for n, b in branches.items() if n.startswith("fork-")),
            "target": target.config["configurable"]["checkpoint_id"],
            "verified": report.ok,
        }


if __name__ == "__main__":
    main(*sys.argv[1:2])

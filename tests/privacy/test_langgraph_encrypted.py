"""The LangGraph saver on an encrypting store: messages, interrupts and answers never on disk in the clear."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.types import Command

from clew.codec import Codec, Keyring
from clew.integrations.langgraph import ClewSaver
from tests.helpers.scan import total_copies
from tests.integrations._graphs import review_graph


def test_a_graph_on_an_encrypting_store_leaves_no_plaintext(stores: Any, marker: str, keyring: Keyring) -> None:
    store = stores.open(codec=Codec(keyring=keyring))
    graph = review_graph().compile(checkpointer=ClewSaver(store))
    config: Any = {"configurable": {"thread_id": "t1"}}
    graph.invoke({"messages": [HumanMessage(f"my card is {marker}")]}, config)
    done = graph.invoke(Command(resume=f"approved for {marker}"), config)
    assert done["messages"][-1].content == f"review: approved for {marker}"
    assert graph.get_state(config).values["messages"][0].content == f"my card is {marker}"
    assert total_copies(stores, store, marker) == {}
    history = list(graph.get_state_history(config))
    assert len(history) >= 3

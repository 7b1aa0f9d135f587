"""LangChain's message classes and LangGraph's types, registered with clew's codec.

Importing this module lets any process decode what LangGraph threads store
(``HumanMessage``, ``AIMessage``, ``ToolMessage``..., ``Interrupt``, ``Command``,
``Send``) before any graph code runs: the ``clew`` CLI and the inspector import it
when LangChain is installed. ``langchain_core.messages`` loads its classes lazily,
so importing it alone does not make them known. Needs ``langchain_core``; LangGraph's
types are registered when LangGraph is installed too.
"""

from __future__ import annotations

from langchain_core import messages

from clew.codec import register_class, register_type

for _name in messages.__all__:
    if _name.endswith(("Message", "MessageChunk")):
        _cls = getattr(messages, _name)
        if isinstance(_cls, type) and _cls.__module__.startswith("langchain_core."):
            register_class(_cls)

try:
    from langgraph.types import Command, Interrupt, Overwrite, Send
except ImportError:  # LangChain without LangGraph: messages only
    pass
else:
    for _cls in (Interrupt, Command, Overwrite):
        register_class(_cls)
    register_type(Send, lambda s: [s.node, s.arg], lambda d: Send(d[0], d[1]), key="langgraph.types:Send")

__all__: list[str] = []

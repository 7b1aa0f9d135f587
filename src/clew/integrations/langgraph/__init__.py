"""LangGraph checkpointer on a clew store: ``pip install 'clew[langgraph]'``.

:class:`ClewSaver` implements LangGraph's ``BaseCheckpointSaver`` (sync and async)
on any clew store: memory, SQLite or PostgreSQL. Threads become ordinary clew runs,
so ``clew`` history, verify, the CLI and the inspector see them. The mapping is
documented in ``docs/langgraph.md``.

Example::

    from clew.integrations.langgraph import ClewSaver

    with ClewSaver.from_url("sqlite:///agent.db") as saver:
        graph = builder.compile(checkpointer=saver)
"""

from clew._extras import require

require("langgraph.checkpoint.base", "langgraph", "clew.integrations.langgraph")

from clew.integrations.langgraph._mapping import AGENT, run_id_for  # noqa: E402 - after the extra check
from clew.integrations.langgraph._saver import ClewSaver  # noqa: E402 - after the extra check

__all__ = ["AGENT", "ClewSaver", "run_id_for"]

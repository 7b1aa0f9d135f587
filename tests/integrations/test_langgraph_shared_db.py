"""ClewSaver on a database LangGraph's own savers already use: both keep working.

clew's tables are named ``clew_*``, so they never collide with the stock savers'
(``checkpoints``, ``checkpoint_blobs``, ``checkpoint_writes``, ``checkpoint_migrations``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.types import Command

from clew.integrations.langgraph import ClewSaver
from tests.conftest import StoreFactory
from tests.integrations._graphs import review_graph
from tests.integrations.conftest import thread


@contextmanager
def _stock(stores: StoreFactory) -> Iterator[Any]:
    """LangGraph's own saver for the backend, its tables set up."""
    if stores.backend == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(str(stores.path), check_same_thread=False)
        try:
            saver = SqliteSaver(conn)
            saver.setup()
            yield saver
        finally:
            conn.close()
        return
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    with psycopg.connect(stores.pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{stores.schema}"')
    with psycopg.connect(
        stores.pg,
        autocommit=True,
        prepare_threshold=0,
        row_factory=dict_row,
        options=f"-c search_path={stores.schema}",
    ) as conn:
        saver = PostgresSaver(conn)  # type: ignore[arg-type]  # a dict_row connection, as it documents
        saver.setup()
        yield saver


def _turn(saver: Any, name: str, answer: str) -> list[str]:
    graph = review_graph().compile(checkpointer=saver)
    graph.invoke({"messages": [HumanMessage(name)]}, thread(name))
    out = graph.invoke(Command(resume=answer), thread(name))
    return [m.content for m in out["messages"]]


def test_clew_and_the_stock_saver_share_one_database(shared_stores: StoreFactory) -> None:
    with _stock(shared_stores) as stock:
        assert _turn(stock, "stock", "yes") == ["stock", "plan 1", "review: yes"]
        clew_saver = ClewSaver(shared_stores.open())  # opens (and creates its tables) after setup()
        assert _turn(clew_saver, "clew", "no") == ["clew", "plan 1", "review: no"]
        # Each reads its own thread, and neither sees the other's.
        assert len(list(stock.list(thread("stock")))) == len(list(clew_saver.list(thread("clew"))))
        assert list(stock.list(thread("clew"))) == [] and list(clew_saver.list(thread("stock"))) == []
        assert _turn(stock, "stock-2", "again") == ["stock-2", "plan 1", "review: again"]
        stock.setup()  # the stock saver's migrations run again over clew's tables
        again = ClewSaver(shared_stores.open())
        assert again.store is not None and again.store.verify("clew").ok
        assert review_graph().compile(checkpointer=again).get_state(thread("clew")).values["messages"][-1].content == (
            "review: no"
        )

"""LangGraph on a checkpointer: clew's ``ClewSaver`` and the stock savers, standard or with
``DeltaChannel`` messages.

Every graph runs with ``durability="sync"``: each step's checkpoint is saved before
the next step starts, as ``clew.Agent`` does, so the time between step starts is the
cost of a step. (LangGraph's default, ``"async"``, saves in a background thread and
waits for the backlog at the end of ``invoke``: the same wall time on this workload,
but per-step times that hide the saver.) Every saver runs at its defaults but for one
thing: ``SqliteSaver``'s connection gets clew's ``synchronous=NORMAL``, so both sides
give the same durability (a process crash, not a power loss).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.messages import HumanMessage

from bench import _db, _graphs
from bench._systems import Sample, System, Where
from bench._workload import Step

SAVER_NAMES = {
    "clew": "ClewSaver",
    "sqlite": "SqliteSaver",
    "postgres": "PostgresSaver",
    "memory": "InMemorySaver",
}


@contextmanager
def open_saver(kind: str, *, path: str = "", pg: str = "", schema: str = "") -> Iterator[Any]:
    """A checkpointer of ``kind`` on a SQLite file or a PostgreSQL schema."""
    if kind == "clew":
        import clew
        from clew.integrations.langgraph import ClewSaver

        url = f"sqlite:///{path}" if path else f"{pg}{'&' if '?' in pg else '?'}schema={schema}"
        with clew.open(url) as store:
            yield ClewSaver(store)
    elif kind == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = _db.sqlite_connect(path, autocommit=False)
        try:
            saver = SqliteSaver(conn)
            saver.setup()
            yield saver
        finally:
            conn.close()
    elif kind == "postgres":
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row

        with Connection.connect(
            pg, autocommit=True, prepare_threshold=0, row_factory=dict_row, options=f"-c search_path={schema}"
        ) as conn:
            saver = PostgresSaver(conn)  # type: ignore[arg-type]
            saver.setup()
            yield saver
    elif kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
    else:
        raise ValueError(kind)


def _bytes_in(obj: Any) -> int:
    """The serialized bytes an ``InMemorySaver`` holds (its dicts of tuples of bytes)."""
    if isinstance(obj, bytes | bytearray):
        return len(obj)
    if isinstance(obj, dict):
        return sum(_bytes_in(v) for v in obj.values())
    if isinstance(obj, tuple | list):
        return sum(_bytes_in(v) for v in obj)
    return 0


class LangGraphSystem(System):
    """The agent loop as a LangGraph graph, one ``invoke`` for the whole run."""

    def __init__(self, where: Where, saver: str, *, backend: str, delta: bool = False) -> None:
        super().__init__(where)
        self.kind = saver
        self.backend = backend
        self.delta = delta
        self.name = "LangGraph + " + ("DeltaChannel + " if delta else "") + SAVER_NAMES[saver]
        if saver == "clew":
            self.family = "clew"
            self.peer = "LangGraph + " + SAVER_NAMES[backend]
            self.floor = "floor: bare INSERT"
        elif saver == "memory":
            self.family = "reference"
        self._stack: Any = None
        self.saver: Any = None
        self.thread = "bench"
        self.old_cfg: Any = None
        self.graph: Any = None

    def _open_saver(self) -> None:
        self._stack = open_saver(self.kind, path=self.path, pg=self.where.pg or "", schema=self.schema)
        self.saver = self._stack.__enter__()

    def _close_saver(self) -> None:
        if self._stack is not None:
            self._stack.__exit__(None, None, None)
            self._stack = None

    def open(self) -> None:
        super().open()
        self._open_saver()

    def close(self) -> None:
        self._close_saver()
        self.saver = None
        super().close()

    def stored_bytes(self) -> int:
        if self.kind == "memory":
            s = self.saver
            return _bytes_in(s.storage) + _bytes_in(s.writes) + _bytes_in(s.blobs)
        return super().stored_bytes()

    def run(self, data: list[Step]) -> Sample:
        s = Sample()
        graph = _graphs.agent_graph(data, s.marks, self.saver, delta=self.delta)
        start = time.perf_counter()
        graph.invoke({"messages": [], "i": 0}, _graphs.config(self.thread, len(data)), durability="sync")
        s.marks.append(time.perf_counter())
        s.wall = s.marks[-1] - start
        return s

    # -- reading back -------------------------------------------------------------
    def reopen(self) -> None:
        if self.kind != "memory":
            self._close_saver()
            self._open_saver()
        self.graph = _graphs.agent_graph([], [], self.saver, delta=self.delta)
        if self.kind == "clew":
            self.saver.store.get_run(self.thread)  # connect now, not inside the timings

    def load_latest(self) -> Any:
        return self.graph.get_state(_graphs.config(self.thread))

    def list_history(self) -> int:
        return sum(1 for _ in self.saver.list(_graphs.config(self.thread)))

    def prepare_fork(self, step: int) -> None:
        for tup in self.saver.list(_graphs.config(self.thread)):
            if tup.checkpoint["channel_values"].get("i") == step:
                self.old_cfg = tup.config  # the newest checkpoint after ``step`` steps
                break
        assert self.old_cfg is not None, f"no checkpoint after {step} steps"

    def fork(self, k: int) -> None:
        self.graph.update_state(self.old_cfg, {"messages": [HumanMessage(content=f"what if {k}?", id=f"fork{k}")]})

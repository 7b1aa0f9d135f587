"""W3, resume latency against history length: 10, 100, 1,000, 10,000 checkpoints.

The state is bounded: the last 20 messages (older ones dropped) and two counters, so
only the history grows. A run takes H steps and pauses for a person; then:

- load latest: clew ``Store.load_state`` of the branch head (head lookup included);
  LangGraph ``graph.get_state``. Each on a freshly opened connection.
- resume: clew ``Agent.resume(run_id, answer=...)``; LangGraph
  ``invoke(Command(resume=...))``. The answered step runs and the loop comes back
  to the same question, so each resume ends paused again (two checkpoints each).

Each H gets fresh databases; systems are built one after the other, then measured
in turn, repetition after repetition.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from typing import Any

import clew
from bench import _db, _graphs
from bench._sys_langgraph import SAVER_NAMES, open_saver
from bench._workload import Step, steps

WINDOW = 20


def bounded_agent(store: clew.Store, data: list[Step]) -> clew.Agent[dict[str, Any]]:
    agent: clew.Agent[dict[str, Any]] = clew.Agent("bench-w3", state=dict, store=store, lease_ttl=60)

    @agent.step(start=True)
    def work(state: dict[str, Any], ctx: Any) -> str:
        i = state["i"]
        if i < len(data):
            state["messages"] = (state["messages"] + list(data[i]))[-WINDOW:]
            state["i"] = i + 1
            return "work"
        ctx.interrupt({"question": "continue?"})
        state["answers"] += 1
        return "work"

    return agent


class _Resumable:
    name = "?"

    def __init__(self, backend: str, workdir: str, pg: str | None) -> None:
        self.backend, self.workdir, self.pg = backend, workdir, pg
        self.path = os.path.join(workdir, f"w3-{uuid.uuid4().hex}.db")
        self.schema = _db.new_schema(pg) if backend == "postgres" and pg else ""

    @property
    def key(self) -> str:
        return f"{self.name} [{self.backend}]"

    def close(self) -> None:
        if self.schema and self.pg:
            _db.drop_schema(self.pg, self.schema)
        for p in (self.path, self.path + "-wal", self.path + "-shm"):
            if os.path.exists(p):
                os.remove(p)


class ClewResumable(_Resumable):
    name = "clew Agent"

    def build(self, data: list[Step]) -> None:
        self.data = data
        self.url = f"sqlite:///{self.path}" if self.backend == "sqlite" else f"{self.pg}?schema={self.schema}"
        self.store = clew.open(self.url)
        run = bounded_agent(self.store, data).start({"messages": [], "i": 0, "answers": 0})
        assert run.status == "paused", run.status
        self.run_id = run.run_id

    def reopen(self) -> None:
        self.store.close()
        self.store = clew.open(self.url)
        self.store.get_run(self.run_id)
        self.agent = bounded_agent(self.store, self.data)

    def load(self) -> Any:
        head = self.store.get_branch(self.run_id).head
        assert head is not None
        return self.store.load_state(self.run_id, head)

    def resume(self) -> None:
        assert self.agent.resume(self.run_id, answer="yes").status == "paused"

    def close(self) -> None:
        self.store.close()
        super().close()


class LangGraphResumable(_Resumable):
    def __init__(self, saver: str, backend: str, workdir: str, pg: str | None) -> None:
        super().__init__(backend, workdir, pg)
        self.kind = saver
        self.name = f"LangGraph + {SAVER_NAMES[saver]}"
        self._stack: Any = None

    def _open(self) -> None:
        if self._stack is not None:
            self._stack.__exit__(None, None, None)
        self._stack = open_saver(self.kind, path=self.path, pg=self.pg or "", schema=self.schema)
        self.graph = _graphs.bounded_graph(self.data, WINDOW, self._stack.__enter__())

    def build(self, data: list[Step]) -> None:
        self.data = data
        self._open()
        self.cfg = _graphs.config("w3", len(data))
        self.graph.invoke({"messages": [], "i": 0, "answers": 0}, self.cfg, durability="sync")
        assert self.graph.get_state(self.cfg).interrupts, "the graph did not pause"

    def reopen(self) -> None:
        self._open()

    def load(self) -> Any:
        return self.graph.get_state(self.cfg)

    def resume(self) -> None:
        from langgraph.types import Command

        self.graph.invoke(Command(resume="yes"), self.cfg, durability="sync")

    def close(self) -> None:
        if self._stack is not None:
            self._stack.__exit__(None, None, None)
            self._stack = None
        super().close()


def _kinds(pg: str | None) -> list[tuple[str, str]]:
    out = [("clew", "sqlite"), ("lg-clew", "sqlite"), ("lg-sqlite", "sqlite")]
    if pg:
        out += [("clew", "postgres"), ("lg-postgres", "postgres")]
    return out


def _make(kind: str, backend: str, workdir: str, pg: str | None) -> _Resumable:
    if kind == "clew":
        return ClewResumable(backend, workdir, pg)
    return LangGraphResumable(kind.removeprefix("lg-"), backend, workdir, pg)


def _ms(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def measure(
    histories: list[int], *, workdir: str, pg: str | None, reps: int, log: Any = sys.stderr
) -> list[dict[str, Any]]:
    rows = []
    all_data = list(steps(max(histories)))
    for h in histories:
        data = all_data[:h]
        systems: list[_Resumable] = []
        builds: dict[str, float] = {}
        samples: dict[str, dict[str, list[float]]] = {}
        try:
            for kind, backend in _kinds(pg):
                s = _make(kind, backend, workdir, pg)
                systems.append(s)
                builds[s.key] = _ms(lambda s=s, d=data: s.build(d)) / h
                samples[s.key] = {"load": [], "resume": []}
            for _ in range(reps):
                for s in systems:
                    s.reopen()
                    samples[s.key]["load"].append(_ms(s.load))
            for _ in range(reps):
                for s in systems:
                    samples[s.key]["resume"].append(_ms(s.resume))
        finally:
            for s in systems:
                s.close()
        for s in systems:
            rows.append(
                {
                    "system": s.name,
                    "backend": s.backend,
                    "history": h,
                    "load_ms": statistics.median(samples[s.key]["load"]),
                    "resume_ms": statistics.median(samples[s.key]["resume"]),
                    "build_ms_per_step": builds[s.key],
                }
            )
        print(f"  W3 history {h}: done", file=log, flush=True)
    return rows

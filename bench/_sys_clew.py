"""clew's own systems: the runtime (``clew.Agent``) and the storage layer (``Store.commit``)."""

from __future__ import annotations

import time
from typing import Any

import clew
from bench._systems import Sample, System, Where
from bench._workload import Step


def _kb(query: str, output: dict[str, Any]) -> dict[str, Any]:
    return output


def make_agent(
    store: clew.Store, data: list[Step], marks: list[float], idempotent_calls: str = "at_once"
) -> clew.Agent[dict[str, Any]]:
    """The workload as a clew agent: one step per item of ``data``, its tool call journaled."""
    agent: clew.Agent[dict[str, Any]] = clew.Agent(
        "bench",
        state=dict,
        store=store,
        lease_ttl=60,
        idempotent_calls=idempotent_calls,  # type: ignore[arg-type]  # checked by Agent
    )
    n = len(data)

    @agent.step(start=True)
    def work(state: dict[str, Any], ctx: Any) -> str | None:
        marks.append(time.perf_counter())
        u, a, t = data[state["i"]]
        state["messages"].extend([u, a])
        state["tool_results"].append(ctx.call("kb", _kb, u["content"][:20], t, idempotent=True))
        state["i"] += 1
        return "work" if state["i"] < n else None

    return agent


def initial_state() -> dict[str, Any]:
    return {"messages": [], "tool_results": [], "i": 0, "customer_id": "c-42"}


class _ClewBase(System):
    family = "clew"
    floor = "floor: bare INSERT"

    def __init__(self, where: Where, backend: str) -> None:
        super().__init__(where)
        self.backend = backend
        self.peer = "LangGraph + SqliteSaver" if backend == "sqlite" else "LangGraph + PostgresSaver"
        self.store: clew.Store | None = None
        self.run_id = ""
        self.old: str | None = None
        self.old_state: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}" if self.backend == "sqlite" else self.pg_url

    def open(self) -> None:
        super().open()
        self.store = clew.open(self.url)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        super().close()

    def stored_bytes(self) -> int:
        if self.backend == "sqlite" and self.store is not None:
            self.store.checkpoint_wal()  # type: ignore[attr-defined]  # SQLiteStore
        return super().stored_bytes()

    def reopen(self) -> None:
        assert self.store is not None
        self.store.close()
        self.store = clew.open(self.url)
        self.store.get_run(self.run_id)  # connect now, not inside the timings

    @property
    def head(self) -> str:
        assert self.store is not None
        head = self.store.get_branch(self.run_id).head
        assert head is not None
        return head

    def load_latest(self) -> Any:
        assert self.store is not None
        return self.store.load_state(self.run_id, self.head)

    def list_history(self) -> int:
        assert self.store is not None
        return len(self.store.list_checkpoints(self.run_id, limit=100_000).items)

    def prepare_fork(self, step: int) -> None:
        assert self.store is not None
        page = self.store.list_checkpoints(self.run_id, limit=100_000)
        hit = [c for c in page.items if c.metadata.get("step_index") == step]
        self.old = hit[0].checkpoint_id if hit else page.items[len(page.items) - 1 - step].checkpoint_id
        self.old_state = self.store.load_state(self.run_id, self.old)


class ClewAgent(_ClewBase):
    """``clew.Agent``: each step's state committed with its journaled tool call."""

    name = "clew Agent"

    def run(self, data: list[Step]) -> Sample:
        assert self.store is not None
        s = Sample()
        self.agent = make_agent(self.store, data, s.marks)
        start = time.perf_counter()
        result = self.agent.start(initial_state())
        s.marks.append(time.perf_counter())
        s.wall = s.marks[-1] - start
        assert result.status == "completed", result.error
        self.run_id = result.run_id
        return s

    def reopen(self) -> None:
        super().reopen()
        assert self.store is not None
        self.agent = make_agent(self.store, [], [])

    def fork(self, k: int) -> None:
        assert self.old is not None
        note = {"role": "user", "content": f"what if {k}?", "id": f"fork{k}"}
        self.agent.fork(
            self.old, branch=f"fork-{k}", update={"messages": [*self.old_state["messages"], note]}, run=False
        )


class ClewStore(_ClewBase):
    """``Store.commit`` of the whole state after each step: the storage layer alone."""

    name = "clew Store"

    def run(self, data: list[Step]) -> Sample:
        assert self.store is not None
        run = self.store.create_run(agent="bench")
        self.run_id = run.run_id
        state = initial_state()
        head = None
        s = Sample()
        start = time.perf_counter()
        for i, (u, a, t) in enumerate(data):
            s.marks.append(time.perf_counter())
            state["messages"] += [u, a]
            state["tool_results"].append(t)
            state["i"] = i + 1
            head = self.store.commit(
                self.run_id, state=state, parent=head, metadata={"step_index": i + 1}
            ).checkpoint_id
        s.marks.append(time.perf_counter())
        s.wall = s.marks[-1] - start
        return s

    def fork(self, k: int) -> None:
        assert self.store is not None and self.old is not None
        state = self.store.load_state(self.run_id, self.old)
        state["messages"] = [*state["messages"], {"role": "user", "content": f"what if {k}?", "id": f"fork{k}"}]
        self.store.fork(self.run_id, checkpoint_id=self.old, branch=f"fork-{k}")
        self.store.commit(self.run_id, state=state, parent=self.old, branch=f"fork-{k}", kind="fork")

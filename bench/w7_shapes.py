"""W7, clew alone: state shapes, statements per step, and loads against history length.

Shapes, each on SQLite and PostgreSQL, the W1 content (two ~400 B messages and a
~1 KB tool result per step):

- lists: ``messages`` and ``tool_results`` lists (W1's clew Store);
- dict channel: ``messages`` plus ``results``, a dict gaining the step's tool result
  under its call id (ids sort as strings, so new keys land all over the key order);
- nested: a dataclass holding a list of notes and a dict of facts, and a Pydantic
  model holding a list: each step appends to both lists and adds a fact;
- ledgered calls: W1's clew Agent, its tool called through ``ctx.call`` and the
  result appended to state; the call's outcome journaled at once (the default), and
  with the step's checkpoint (``Agent(idempotent_calls="with_checkpoint")``).

For each: bytes stored over raw appended bytes, ms per step (median), and per step
the SQL statements clew issues (an ``executemany`` counts once), the round trips
(batches sent together count once; on SQLite each statement is its own), and the
transactions. Then the latest state is loaded, cold (a freshly opened store: nothing
cached) and warm (the same store again: blobs come from its cache).

Cold and warm loads of the lists shape at N = 400, 800 and 1,600 show how a load
grows with the state (the state grows with N here; W3 holds it fixed).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pydantic

import clew
from bench import _db
from bench._sys_clew import initial_state, make_agent
from bench._workload import Step, raw_bytes, steps


@dataclasses.dataclass
class Memory:
    notes: list[Any]
    facts: dict[str, Any]


class Profile(pydantic.BaseModel):
    name: str
    history: list[Any] = []


class Counter:
    """Counts what a store sends: statements, round trips, transactions."""

    def __init__(self, store: clew.Store) -> None:
        self.statements = self.round_trips = self.transactions = 0
        real = store._execute  # type: ignore[attr-defined]  # every operation goes through it
        per_statement = store.dialect == "sqlite"

        def execute(op: Any, *, write: bool) -> Any:
            def counted() -> Any:
                answer = None
                sent = False
                while True:
                    try:
                        q = op.send(answer) if sent else next(op)
                    except StopIteration as stop:
                        return stop.value
                    sent = True
                    n = len(q) if isinstance(q, list) else 1
                    self.statements += n
                    self.round_trips += n if per_statement else 1
                    answer = yield q

            self.transactions += 1
            return real(counted(), write=write)

        store._execute = execute  # type: ignore[attr-defined, method-assign]  # measuring only


class _Run:
    def __init__(self, backend: str, workdir: str, pg: str | None) -> None:
        self.backend = backend
        self.path = os.path.join(workdir, f"w7-{uuid.uuid4().hex}.db")
        self.schema = _db.new_schema(pg) if backend == "postgres" and pg else ""
        self.pg = pg
        self.url = f"sqlite:///{self.path}" if backend == "sqlite" else f"{pg}?schema={self.schema}"

    def bytes(self, store: clew.Store) -> int:
        if self.backend == "sqlite":
            store.checkpoint_wal()  # type: ignore[attr-defined]  # SQLiteStore
            return _db.sqlite_bytes(self.path)
        assert self.pg is not None
        return _db.pg_bytes(self.pg, self.schema)

    def close(self) -> None:
        if self.schema and self.pg:
            _db.drop_schema(self.pg, self.schema)
        for p in (self.path, self.path + "-wal", self.path + "-shm"):
            if os.path.exists(p):
                os.remove(p)


def _commits(store: clew.Store, data: list[Step], shape: str, marks: list[float]) -> tuple[str, str]:
    run_id = store.create_run(agent=f"bench-w7-{shape}").run_id
    head = None
    if shape == "lists":
        state: dict[str, Any] = initial_state()
    elif shape == "dict channel":
        state = {"messages": [], "results": {}, "i": 0}
    else:
        state = {"memory": Memory([], {}), "profile": Profile(name="Ada"), "i": 0}
    for i, (u, a, t) in enumerate(data):
        marks.append(time.perf_counter())
        if shape == "lists":
            state["messages"] += [u, a]
            state["tool_results"].append(t)
        elif shape == "dict channel":
            state["messages"] += [u, a]
            state["results"][t["call_id"]] = t
        else:
            state["memory"].notes.append(u)
            state["memory"].facts[t["call_id"]] = t
            state["profile"].history.append(a)
        state["i"] = i + 1
        head = store.commit(run_id, state=state, parent=head).checkpoint_id
    marks.append(time.perf_counter())
    assert head is not None
    return run_id, head


def _agent(store: clew.Store, data: list[Step], marks: list[float], mode: str) -> tuple[str, str]:
    run = make_agent(store, data, marks, mode).start(initial_state())
    marks.append(time.perf_counter())
    assert run.status == "completed", run.error
    head = store.get_branch(run.run_id).head
    assert head is not None
    return run.run_id, head


def _loads(url: str, run_id: str, head: str, reps: int) -> tuple[float, float]:
    cold: list[float] = []
    warm: list[float] = []
    for _ in range(reps):
        with clew.open(url) as store:
            store.get_run(run_id)  # connected: the load alone is timed
            start = time.perf_counter()
            store.load_state(run_id, head)
            cold.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            store.load_state(run_id, head)
            warm.append((time.perf_counter() - start) * 1000)
    return statistics.median(cold), statistics.median(warm)


def _one(backend: str, workdir: str, pg: str | None, shape: str, n: int, reps: int, log: Any) -> dict[str, Any]:
    data = list(steps(n))
    run = _Run(backend, workdir, pg)
    try:
        store = clew.open(run.url)
        counter = Counter(store)
        marks: list[float] = []
        build: Callable[[], tuple[str, str]] = (
            (lambda: _agent(store, data, marks, LEDGER_MODES[shape]))
            if shape in LEDGER_MODES
            else (lambda: _commits(store, data, shape, marks))
        )
        before = (counter.statements, counter.round_trips, counter.transactions)
        start = time.perf_counter()
        run_id, head = build()
        wall = time.perf_counter() - start
        counts = [
            (x - y) / n
            for x, y in zip((counter.statements, counter.round_trips, counter.transactions), before, strict=True)
        ]
        size = run.bytes(store)
        store.close()
        step_ms = [(b - a) * 1000 for a, b in itertools.pairwise(marks)]
        cold, warm = _loads(run.url, run_id, head, reps)
    finally:
        run.close()
    row = {
        "shape": shape,
        "backend": backend,
        "n": n,
        "bytes": size,
        "x_raw": size / raw_bytes([x for s in data for x in s]),
        "ms_per_step": statistics.median(step_ms),
        "steps_per_s": n / wall,
        "statements_per_step": counts[0],
        "round_trips_per_step": counts[1],
        "transactions_per_step": counts[2],
        "cold_load_ms": cold,
        "warm_load_ms": warm,
    }
    print(
        f"  w7 {shape} [{backend}] N={n}: {row['x_raw']:.2f}x raw, {row['ms_per_step']:.3f} ms/step, "
        f"{counts[0]:.1f} statements/step, load {cold:.2f} ms cold / {warm:.2f} ms warm",
        file=log,
    )
    return row


LEDGER_MODES = {"ledgered calls": "at_once", "ledgered calls, with checkpoint": "with_checkpoint"}
SHAPES = ("lists", "dict channel", "nested", *LEDGER_MODES)


def measure(
    workdir: str, pg: str | None, *, n: int, load_ns: list[int], reps: int, log: Any = sys.stderr
) -> dict[str, list[dict[str, Any]]]:
    backends = ["sqlite", *(["postgres"] if pg else [])]
    shapes = [_one(b, workdir, pg, shape, n, reps, log) for b in backends for shape in SHAPES]
    loads = [_one(b, workdir, pg, "lists", k, reps, log) for b in backends for k in load_ns if k != n]
    loads += [r for r in shapes if r["shape"] == "lists"]
    loads.sort(key=lambda r: (r["backend"] != "sqlite", r["n"]))
    return {"shapes": shapes, "loads": loads}

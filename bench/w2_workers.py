"""W2, many workers on PostgreSQL: P processes (4 and 8), each running R runs of S steps.

Each worker process opens its own connection (or pool) and builds its graph or agent,
then waits; the clock starts when every worker is ready and stops when the last one
exits. Throughput is all the steps over that time. Systems take turns, repetition
after repetition, each turn in a fresh schema (migrated or set up before the clock).
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from bench import _db, _graphs, _race
from bench._workload import delta, steps

SYSTEMS = {
    "clew Agent": "clew",
    "LangGraph + ClewSaver": "lg-clew",
    "LangGraph + PostgresSaver": "lg-postgres",
    "LangGraph + DeltaChannel + PostgresSaver": "lg-delta",
    "floor: bare INSERT": "floor",
}


def _prepare(kind: str, pg: str, schema: str) -> None:
    """Create the tables once, before the race."""
    import clew

    if kind in ("clew", "lg-clew"):
        clew.open(f"{pg}?schema={schema}").close()
    elif kind in ("lg-postgres", "lg-delta"):
        from bench._sys_langgraph import open_saver

        with open_saver("postgres", pg=pg, schema=schema):
            pass
    else:
        import psycopg

        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'CREATE TABLE "{schema}".t (id BIGSERIAL PRIMARY KEY, data BYTEA)')


def _worker(kind: str, pg: str, schema: str, wid: int, runs: int, n: int, ready: Any, go: Any) -> None:
    data = list(steps(n))
    if kind == "clew":
        import clew
        from bench._sys_clew import initial_state, make_agent

        with clew.open(f"{pg}?schema={schema}", pool_max=2) as store:
            agent = make_agent(store, data, [])
            ready.put(wid)
            go.wait()
            for _ in range(runs):
                assert agent.start(initial_state()).status == "completed"
    elif kind == "floor":
        import psycopg

        deltas = [delta(s) for s in data]
        with psycopg.connect(pg, autocommit=True) as conn:
            ready.put(wid)
            go.wait()
            for _ in range(runs):
                for d in deltas:
                    with conn.transaction():
                        conn.execute(f'INSERT INTO "{schema}".t (data) VALUES (%s)', (d,))
    else:
        from bench._sys_langgraph import open_saver

        saver_kind = "clew" if kind == "lg-clew" else "postgres"
        with open_saver(saver_kind, pg=pg, schema=schema) as saver:
            graph = _graphs.agent_graph(data, [], saver, delta=kind == "lg-delta")
            ready.put(wid)
            go.wait()
            for r in range(runs):
                graph.invoke({"messages": [], "i": 0}, _graphs.config(f"w{wid}-{r}", n), durability="sync")


def race(kind: str, pg: str, workers: int, runs: int, n: int) -> float:
    """Seconds for ``workers`` processes to run ``runs`` x ``n`` steps each."""
    with _db.schema(pg) as schema:
        _prepare(kind, pg, schema)
        return _race.race(_worker, [(kind, pg, schema, w, runs, n) for w in range(workers)], kind)


def measure(
    pg: str, worker_counts: list[int], *, runs: int, n: int, reps: int, delta_channel: bool, log: Any = sys.stderr
) -> list[dict[str, Any]]:
    names = [k for k in SYSTEMS if delta_channel or SYSTEMS[k] != "lg-delta"]
    rows = []
    for workers in worker_counts:
        times: dict[str, list[float]] = {k: [] for k in names}
        for rep in range(reps):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                times[name].append(race(SYSTEMS[name], pg, workers, runs, n))
                total = workers * runs * n
                print(
                    f"  W2 {workers} workers rep {rep + 1}/{reps} {name}: {total / times[name][-1]:.0f} steps/s",
                    file=log,
                    flush=True,
                )
        for name in names:
            elapsed = statistics.median(times[name])
            rows.append(
                {
                    "system": name,
                    "backend": "postgres",
                    "workers": workers,
                    "runs": runs,
                    "steps_per_run": n,
                    "steps": workers * runs * n,
                    "seconds": elapsed,
                    "steps_per_s": workers * runs * n / elapsed,
                }
            )
    return rows

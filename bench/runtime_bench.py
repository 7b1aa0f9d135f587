"""Runtime benchmark: per-step overhead of a durable agent, and many workers on PostgreSQL.

Usage: python -m bench.runtime_bench [--n 400] [--postgres URL|none] [--quick]

1. Per-step overhead on SQLite: the same step function (append two ~400-byte messages
   and a ~1 KB tool result, one journaled tool call) run by ``clew.Agent`` and by a
   plain loop without persistence; the median time between step starts, each way.
2. PostgreSQL throughput: 8 worker processes x 50 runs x 20 steps through
   ``clew.Agent``, in steps per second, next to the floor: the same processes doing a
   bare psycopg ``INSERT`` of the same delta bytes per step, one transaction each.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import clew
from bench._workload import steps

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def _kb(query: str, output: dict[str, Any]) -> dict[str, Any]:
    return output


def make_agent(store: clew.Store, data: list[Any], n: int, marks: list[float]) -> clew.Agent[dict[str, Any]]:
    agent: clew.Agent[dict[str, Any]] = clew.Agent("bench", state=dict, store=store, lease_ttl=60)

    @agent.step(start=True)
    def work(state: dict[str, Any], ctx: Any) -> str | None:
        marks.append(time.perf_counter())
        u, a, t = data[state["i"]]
        state["messages"].extend([u, a])
        state["tool_results"].append(ctx.call("kb", _kb, u["content"][:20], t, idempotent=True))
        state["i"] += 1
        return "work" if state["i"] < n else None

    return agent


class _PlainCtx:
    def call(self, name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        return fn(*args)


def plain_loop(data: list[Any], n: int) -> list[float]:
    marks: list[float] = []
    state: dict[str, Any] = {"messages": [], "tool_results": [], "i": 0}
    ctx = _PlainCtx()
    while state["i"] < n:
        marks.append(time.perf_counter())
        u, a, t = data[state["i"]]
        state["messages"].extend([u, a])
        state["tool_results"].append(ctx.call("kb", _kb, u["content"][:20], t))
        state["i"] += 1
    marks.append(time.perf_counter())
    return marks


def gaps_ms(marks: list[float]) -> list[float]:
    return [(b - a) * 1000 for a, b in itertools.pairwise(marks)]


def overhead_sqlite(n: int) -> dict[str, Any]:
    data = list(steps(n))
    plain = statistics.median(gaps_ms(plain_loop(data, n)))
    with tempfile.TemporaryDirectory() as tmp, clew.open(f"sqlite:///{tmp}/rt.db") as store:
        marks: list[float] = []
        agent = make_agent(store, data, n, marks)
        start = time.perf_counter()
        run = agent.start({"messages": [], "tool_results": [], "i": 0})
        total = time.perf_counter() - start
        assert run.status == "completed"
    durable = statistics.median(gaps_ms(marks))
    return {"n": n, "plain_ms": plain, "clew_ms": durable, "overhead_ms": durable - plain,
            "total_s": total}


# -- PostgreSQL: many workers --------------------------------------------------------

def _clew_worker(url: str, runs: int, n: int, out: Any) -> None:
    data = list(steps(n))
    with clew.open(url, pool_max=2) as store:
        marks: list[float] = []
        agent = make_agent(store, data, n, marks)
        out.put("ready")
        for _ in range(runs):
            r = agent.start({"messages": [], "tool_results": [], "i": 0})
            assert r.status == "completed"


def _floor_worker(url: str, schema: str, runs: int, n: int, out: Any) -> None:
    import psycopg

    codec = clew.Codec()
    data = [codec.dumps(list(s))[0] for s in steps(n)]
    with psycopg.connect(url, autocommit=True) as conn:
        out.put("ready")
        for _ in range(runs):
            for delta in data:
                with conn.transaction():
                    conn.execute(f'INSERT INTO "{schema}".t (data) VALUES (%s)', (delta,))


def _race(target: Any, args: tuple[Any, ...], workers: int) -> float:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, q)) for _ in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        q.get(timeout=60)
    start = time.perf_counter()
    for p in procs:
        p.join()
        assert p.exitcode == 0, f"worker failed: {p.exitcode}"
    return time.perf_counter() - start


def throughput_pg(url: str, workers: int, runs: int, n: int) -> dict[str, Any]:
    import psycopg

    schema = f"bench_rt_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    clew.open(url, schema=schema).close()  # migrate once, before the race
    elapsed = _race(_clew_worker, (f"{url}?schema={schema}", runs, n), workers)
    total = workers * runs * n
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".t (id BIGSERIAL PRIMARY KEY, data BYTEA)')
    floor = _race(_floor_worker, (url, schema, runs, n), workers)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return {"workers": workers, "runs": runs, "steps_per_run": n, "steps": total,
            "clew_steps_per_s": total / elapsed, "floor_steps_per_s": total / floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--postgres", default=os.environ.get("CLEW_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 20 if args.quick else args.n
    ov = overhead_sqlite(n)
    lines = ["| workload | plain loop ms/step | clew ms/step | overhead ms/step |", "|---|---|---|---|",
             f"| SQLite, N={n} | {ov['plain_ms']:.4f} | {ov['clew_ms']:.3f} | {ov['overhead_ms']:.3f} |"]
    result: dict[str, Any] = {"overhead": ov}
    if args.postgres != "none":
        tp = throughput_pg(args.postgres, 2 if args.quick else 8, 2 if args.quick else 50, 5 if args.quick else 20)
        result["postgres"] = tp
        lines += ["", "| PostgreSQL workers x runs x steps | clew steps/s | bare INSERT steps/s | clew / floor |",
                  "|---|---|---|---|",
                  f"| {tp['workers']} x {tp['runs']} x {tp['steps_per_run']} | {tp['clew_steps_per_s']:.0f} | "
                  f"{tp['floor_steps_per_s']:.0f} | {tp['clew_steps_per_s'] / tp['floor_steps_per_s']:.2f} |"]
    print("\n".join(lines))
    if not args.quick:
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / "runtime.md").write_text("\n".join(lines) + "\n")
        (out / "runtime.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

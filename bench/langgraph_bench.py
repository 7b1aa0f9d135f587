"""LangGraph on its stock savers against LangGraph on clew: bytes stored and ms per step.

Same graph, same workload (``tests/integrations/_workload.py``), side by side in one
run: ``SqliteSaver`` against ``ClewSaver`` on SQLite, and ``PostgresSaver`` against
``ClewSaver`` on PostgreSQL, at N = 50, 100, 200, 400 steps, each on a fresh
database.

Bytes stored: the SQLite file after folding its write-ahead log in; on PostgreSQL
the total size (tables, indexes, TOAST) of the schema's tables after ``VACUUM``.
ms per step: wall time of the whole run divided by N (LangGraph's own work included,
the same for both savers; the workload's texts are made before the clock starts).
Each saver runs ``--repeat`` times, interleaved with the other so both see the
machine in the same state, each time on a fresh database; the fastest run is kept,
as ``timeit`` does, since on a shared machine interference only ever adds time.

``--workload dict`` is the agent workload with its tool results in a dict channel:
each step adds two ~400 B messages and a ~1 KB tool result under a new key of
``tool_results: Annotated[dict, merge]``, at N = 400 and 800 with
``durability="sync"``. It runs ``SqliteSaver``, ``PostgresSaver``, both with
``DeltaChannel`` channels, and ``ClewSaver`` side by side on fresh databases, times
``get_state`` and ``get_state_history`` on a reopened saver, and checks the targets
of docs/langgraph.md (reported, never asserted).

Usage::

    python bench/langgraph_bench.py [--n 50 100 200 400] [--workload loop|chat|dict] [--repeat 5]
        [--pg postgresql://postgres@127.0.0.1:5432/test] [--no-pg] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

try:  # LangGraph beta; absent from older releases
    from langgraph.channels import DeltaChannel
    from langgraph.graph.message import _messages_delta_reducer
except ImportError:  # pragma: no cover - depends on the installed LangGraph
    DeltaChannel = None

from tests.integrations import _workload as w

import clew
from bench import _db
from bench._sys_langgraph import open_saver
from bench._workload import Step, steps
from clew.integrations.langgraph import ClewSaver

Measure = tuple[int, float]  # bytes stored, seconds


def _merge(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    return {**a, **b}


def _merge_batches(state: dict[str, str] | None, writes: Any) -> dict[str, str]:
    out = dict(state or {})
    for w_ in writes:
        out.update(w_)
    return out


def _run(saver: Any, n: int, workload: str) -> float:
    graph = w.compile_workload(workload, n, saver)
    w.warm(n, workload)
    start = time.perf_counter()
    w.run(graph, "bench", n, workload)
    return time.perf_counter() - start


def _file_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def stock_sqlite(tmp: str, n: int, workload: str) -> Measure:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = os.path.join(tmp, f"stock-{uuid.uuid4().hex}.db")
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        seconds = _run(SqliteSaver(conn), n, workload)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return _file_size(path), seconds


def clew_sqlite(tmp: str, n: int, workload: str) -> Measure:
    path = os.path.join(tmp, f"clew-{uuid.uuid4().hex}.db")
    store = clew.open(f"sqlite:///{path}")
    try:
        seconds = _run(ClewSaver(store), n, workload)
        store.checkpoint_wal()  # type: ignore[attr-defined]  # SQLiteStore
    finally:
        store.close()
    return _file_size(path), seconds


@contextmanager
def _schema(pg: str) -> Iterator[str]:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def _pg_size(pg: str, schema: str) -> int:
    import psycopg

    with psycopg.connect(pg, autocommit=True) as conn:
        tables = [
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)).fetchall()
        ]
        total = 0
        for t in tables:
            conn.execute(f'VACUUM "{schema}"."{t}"')
            total += conn.execute("SELECT pg_total_relation_size(%s)", (f'"{schema}"."{t}"',)).fetchone()[0]
    return int(total)


def stock_postgres(pg: str, n: int, workload: str) -> Measure:
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import Connection
    from psycopg.rows import dict_row

    with _schema(pg) as schema:
        with Connection.connect(
            pg, autocommit=True, prepare_threshold=0, row_factory=dict_row, options=f"-c search_path={schema}"
        ) as conn:
            saver = PostgresSaver(conn)  # type: ignore[arg-type]  # dict_row connection
            saver.setup()
            seconds = _run(saver, n, workload)
        return _pg_size(pg, schema), seconds


def clew_postgres(pg: str, n: int, workload: str) -> Measure:
    with _schema(pg) as schema:
        with clew.open(f"{pg}?schema={schema}") as store:
            seconds = _run(ClewSaver(store), n, workload)
        return _pg_size(pg, schema), seconds


def _pair(
    stock: Callable[[int], Measure], ours: Callable[[int], Measure], n: int, repeat: int
) -> tuple[Measure, Measure]:
    """Both savers, ``repeat`` times, interleaved so both see the machine in the same state."""
    a: list[Measure] = []
    b: list[Measure] = []
    for _ in range(max(1, repeat)):
        a.append(stock(n))
        b.append(ours(n))
    return (a[0][0], min(t for _, t in a)), (b[0][0], min(t for _, t in b))


def _row(label: str, n: int, stock: Measure, ours: Measure) -> dict[str, Any]:
    return {
        "backend": label,
        "n": n,
        "stock_bytes": stock[0],
        "clew_bytes": ours[0],
        "bytes_ratio": stock[0] / ours[0],
        "stock_ms_per_step": stock[1] / n * 1000,
        "clew_ms_per_step": ours[1] / n * 1000,
        "time_ratio": stock[1] / ours[1],
    }


def _print(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'backend':<10} {'N':>4} {'stock bytes':>12} {'clew bytes':>11} {'x fewer':>8} "
        f"{'stock ms/step':>13} {'clew ms/step':>12} {'x faster':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['backend']:<10} {r['n']:>4} {r['stock_bytes']:>12,} {r['clew_bytes']:>11,} {r['bytes_ratio']:>8.1f} "
            f"{r['stock_ms_per_step']:>13.2f} {r['clew_ms_per_step']:>12.2f} {r['time_ratio']:>8.1f}"
        )


# -- the dict-channel workload: issue targets, side by side -------------------------------


class _DictState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    tool_results: Annotated[dict[str, str], _merge]
    i: int


def _dict_state(delta: bool) -> Any:
    if not delta:
        return _DictState
    assert DeltaChannel is not None, "this LangGraph has no DeltaChannel"

    class DeltaDictState(TypedDict):
        messages: Annotated[list[AnyMessage], DeltaChannel(_messages_delta_reducer)]
        tool_results: Annotated[dict[str, str], DeltaChannel(_merge_batches)]
        i: int

    return DeltaDictState


def dict_graph(data: list[Step], checkpointer: Any, *, delta: bool = False) -> Any:
    """Each step: two ~400 B messages and a ~1 KB tool result under a new key of ``tool_results``."""
    n = len(data)
    made = [
        (
            [HumanMessage(content=u["content"], id=u["id"]), AIMessage(content=a["content"], id=a["id"])],
            {t["call_id"]: t["output"]},
        )
        for u, a, t in data
    ]

    def agent(state: dict[str, Any]) -> dict[str, Any]:
        i = state["i"]
        return {"i": i + 1, "messages": made[i][0], "tool_results": made[i][1]}

    g = StateGraph(_dict_state(delta))
    g.add_node("agent", agent)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", lambda s: "agent" if s["i"] < n else END, ["agent", END])
    return g.compile(checkpointer=checkpointer)


DICT_SYSTEMS = (("stock", False), ("stock", True), ("clew", False))  # (saver, DeltaChannel)


def _dict_name(backend: str, saver: str, delta: bool) -> str:
    stock = "SqliteSaver" if backend == "sqlite" else "PostgresSaver"
    return ("DeltaChannel + " if delta else "") + (stock if saver == "stock" else "ClewSaver")


def _best(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(max(1, reps)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def dict_once(backend: str, saver: str, delta: bool, n: int, tmp: str, pg: str, reads: int) -> dict[str, float]:
    """One system, one fresh database: bytes, s per run, and the reads on a reopened saver."""
    kind = "clew" if saver == "clew" else backend
    data = list(steps(n))
    config: Any = {"configurable": {"thread_id": "t"}, "recursion_limit": n + 20}
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            where = {"path": os.path.join(tmp, f"{uuid.uuid4().hex}.db")}
        else:
            where = {"pg": pg, "schema": stack.enter_context(_schema(pg))}
        with open_saver(kind, **where) as s:
            graph = dict_graph(data, s, delta=delta)
            start = time.perf_counter()
            graph.invoke({"messages": [], "tool_results": {}, "i": 0}, config, durability="sync")
            seconds = time.perf_counter() - start
        with open_saver(kind, **where) as s:
            reader = dict_graph([], s, delta=delta)
            reader.get_state(config)  # connect and warm up outside the timings
            get_state = _best(lambda: reader.get_state(config), reads * 5)  # ms each: cheap to repeat
            history = _best(lambda: sum(1 for _ in reader.get_state_history(config)), max(1, reads // 2))
        size = _db.sqlite_bytes(where["path"]) if backend == "sqlite" else _pg_size(pg, where["schema"])
    return {"bytes": size, "seconds": seconds, "get_state": get_state, "history": history}


def dict_rows(backends: list[str], ns: list[int], repeat: int, tmp: str, pg: str) -> list[dict[str, Any]]:
    rows = []
    for backend in backends:
        for n in ns:
            runs: dict[tuple[str, bool], list[dict[str, float]]] = {s: [] for s in DICT_SYSTEMS}
            for _ in range(max(1, repeat)):  # interleaved, so every system sees the machine alike
                for saver, delta in DICT_SYSTEMS:
                    runs[(saver, delta)].append(dict_once(backend, saver, delta, n, tmp, pg, 3))
            for (saver, delta), got in runs.items():
                rows.append(
                    {
                        "backend": backend,
                        "n": n,
                        "system": _dict_name(backend, saver, delta),
                        "bytes": got[0]["bytes"],
                        "ms_per_step": min(g["seconds"] for g in got) / n * 1000,
                        "get_state_ms": min(g["get_state"] for g in got) * 1000,
                        "history_ms": min(g["history"] for g in got) * 1000,
                    }
                )
            print(f"  dict {backend} N={n} done", file=sys.stderr, flush=True)
    return rows


def dict_targets(rows: list[dict[str, Any]]) -> list[tuple[str, bool, str]]:
    """The issue's targets, each (what, met, the figures)."""
    out = []
    by = {(r["backend"], r["n"], r["system"]): r for r in rows}
    for backend in sorted({r["backend"] for r in rows}):
        stock = "SqliteSaver" if backend == "sqlite" else "PostgresSaver"
        ns = sorted({r["n"] for r in rows if r["backend"] == backend})
        for n in ns:
            ours, theirs = by[(backend, n, "ClewSaver")], by[(backend, n, stock)]
            delta = by[(backend, n, f"DeltaChannel + {stock}")]
            x = theirs["bytes"] / ours["bytes"]
            out.append((f"{backend} N={n}: bytes >= 100x fewer than {stock}", x >= 100, f"{x:.1f}x"))
            x = delta["bytes"] / ours["bytes"]
            out.append((f"{backend} N={n}: bytes >= 3x fewer than DeltaChannel", x >= 3, f"{x:.1f}x"))
            limit = 0.5 if backend == "sqlite" else 0.25
            x = ours["ms_per_step"] / theirs["ms_per_step"]
            out.append((f"{backend} N={n}: ms/step <= {limit}x {stock}'s", x <= limit, f"{x:.2f}x"))
            x = ours["get_state_ms"] / theirs["get_state_ms"]
            out.append((f"{backend} N={n}: get_state <= {stock}'s", x <= 1, f"{x:.2f}x"))
            x = ours["history_ms"] / theirs["history_ms"]
            out.append((f"{backend} N={n}: get_state_history <= 0.1x {stock}'s", x <= 0.1, f"{x:.3f}x"))
        for a, b in itertools.pairwise(ns):
            if b == 2 * a:
                x = by[(backend, b, "ClewSaver")]["bytes"] / by[(backend, a, "ClewSaver")]["bytes"]
                out.append((f"{backend}: bytes growth N={a}->{b} <= 2.1x", x <= 2.1, f"{x:.2f}x"))
    return out


def print_dict(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'backend':<9} {'N':>4} {'system':<30} {'bytes':>12} {'ms/step':>8} {'get_state ms':>12} {'history ms':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['backend']:<9} {r['n']:>4} {r['system']:<30} {r['bytes']:>12,} {r['ms_per_step']:>8.2f} "
            f"{r['get_state_ms']:>12.1f} {r['history_ms']:>11.1f}"
        )
    print()
    for what, met, figure in dict_targets(rows):
        print(f"{'met ' if met else 'MISS'}  {what}: {figure}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", help="steps (default 50 100 200 400; dict: 400 800)")
    ap.add_argument("--workload", choices=["loop", "chat", "dict"], default="loop")
    ap.add_argument("--pg", default=os.environ.get("CLEW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement, interleaved; the fastest is kept")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    if args.workload == "dict":
        backends = ["sqlite"] if args.no_pg else ["sqlite", "postgres"]
        with tempfile.TemporaryDirectory() as tmp:
            rows = dict_rows(backends, args.n or [400, 800], args.repeat, tmp, args.pg)
        print("workload: dict (two ~400 B messages and a ~1 KB tool result in a dict channel per step)")
        print_dict(rows)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return 0
    args.n = args.n or [50, 100, 200, 400]

    pairs: list[tuple[str, Callable[[int], Measure], Callable[[int], Measure]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        pairs.append(
            ("sqlite", lambda n: stock_sqlite(tmp, n, args.workload), lambda n: clew_sqlite(tmp, n, args.workload))
        )
        if not args.no_pg:
            pairs.append(
                (
                    "postgres",
                    lambda n: stock_postgres(args.pg, n, args.workload),
                    lambda n: clew_postgres(args.pg, n, args.workload),
                )
            )
        rows = []
        for label, stock, ours in pairs:
            for n in args.n:
                rows.append(_row(label, n, *_pair(stock, ours, n, args.repeat)))
                print(f"  {label} N={n} done", file=sys.stderr, flush=True)
    print(f"workload: {args.workload}")
    _print(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

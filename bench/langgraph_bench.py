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

Usage::

    python bench/langgraph_bench.py [--n 50 100 200 400] [--workload loop|chat] [--repeat 5]
        [--pg postgresql://postgres@127.0.0.1:5432/test] [--no-pg] [--json out.json]
"""

from __future__ import annotations

import argparse
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tests.integrations import _workload as w

import clew
from clew.integrations.langgraph import ClewSaver

Measure = tuple[int, float]  # bytes stored, seconds


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--workload", choices=["loop", "chat"], default="loop")
    ap.add_argument("--pg", default=os.environ.get("CLEW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement, interleaved; the fastest is kept")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)

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

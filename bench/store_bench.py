"""Store benchmark: the agent workload through ``Store.commit`` against a bare INSERT.

Usage: python -m bench.store_bench [--n 400] [--postgres URL] [--quick]

For each backend it reports, at N steps: median/p95 commit time, the same for a bare
``INSERT`` of the same delta bytes per step in its own transaction (the floor),
load-latest, listing N checkpoints' metadata, bytes stored against raw appended bytes,
and the bytes at 2N to show linear growth.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import clew
from bench._workload import median_ms, p95_ms, raw_bytes, steps, timed

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def _size_sqlite(path: str) -> int:
    return os.path.getsize(path) + (os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0)


def _pg_size(url: str, schema: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
        return int(row[0]) if row else 0


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run_clew(store: clew.Store, n: int) -> dict[str, Any]:
    run = store.create_run(agent="bench")
    messages: list[Any] = []
    tools: list[Any] = []
    appended: list[Any] = []
    head = None
    times = []
    for i, (u, a, t) in enumerate(steps(n)):
        messages += [u, a]
        tools.append(t)
        appended += [u, a, t]
        state = {"messages": messages, "tool_results": tools, "step": i, "customer_id": "c-42"}
        start = time.perf_counter()
        head = store.commit(run.run_id, state=state, parent=head, metadata={"step": i}).checkpoint_id
        times.append(time.perf_counter() - start)
    assert head is not None
    fresh = clew.open(store.url) if store.url != "memory://" else store
    load = timed(lambda: fresh.load_state(run.run_id, head), repeat=5)
    listing = timed(lambda: fresh.list_checkpoints(run.run_id, limit=n), repeat=5)
    if fresh is not store:
        fresh.close()
    return {
        "commit_ms": median_ms(times),
        "commit_p95_ms": p95_ms(times),
        "load_ms": load * 1000,
        "list_ms": listing * 1000,
        "raw_bytes": raw_bytes(appended),
        "run_id": run.run_id,
    }


def floor_sqlite(path: str, n: int) -> dict[str, Any]:
    """A bare INSERT of each step's delta bytes, one transaction per step, same pragmas."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    codec = clew.Codec()
    times = []
    for u, a, t in steps(n):
        delta = codec.dumps([u, a, t])[0]
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (data) VALUES (?)", (delta,))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - start)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"commit_ms": median_ms(times), "bytes": _size_sqlite(path)}


def floor_pg(url: str, schema: str, n: int) -> dict[str, Any]:
    import psycopg

    codec = clew.Codec()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".t (id BIGSERIAL PRIMARY KEY, data BYTEA)')
        times = []
        for u, a, t in steps(n):
            delta = codec.dumps([u, a, t])[0]
            start = time.perf_counter()
            with conn.transaction():
                conn.execute(f'INSERT INTO "{schema}".t (data) VALUES (%s)', (delta,))
            times.append(time.perf_counter() - start)
    return {"commit_ms": median_ms(times), "bytes": _pg_size(url, schema)}


def bench_sqlite(n: int, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": "sqlite", "size": n}
    for label, size in (("n", n), ("2n", 2 * n)):
        path = str(workdir / f"clew-{size}.db")
        with clew.open(f"sqlite:///{path}") as store:
            r = run_clew(store, size)
            store.checkpoint_wal()  # type: ignore[attr-defined]
        r["bytes"] = _size_sqlite(path)
        out[label] = r
    out["floor"] = floor_sqlite(str(workdir / "floor.db"), n)
    return out


def bench_postgres(url: str, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": "postgres", "size": n}
    for label, size in (("n", n), ("2n", 2 * n)):
        schema = f"bench_{os.getpid()}_{size}"
        _drop_schema(url, schema)
        with clew.open(url, schema=schema) as store:
            r = run_clew(store, size)
        r["bytes"] = _pg_size(url, schema)
        _drop_schema(url, schema)
        out[label] = r
    schema = f"bench_floor_{os.getpid()}"
    _drop_schema(url, schema)
    out["floor"] = floor_pg(url, schema, n)
    _drop_schema(url, schema)
    return out


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | N | commit median ms | p95 ms | bare INSERT ms | commit / INSERT | load latest ms | "
        "list N ms | bytes stored | raw appended | stored / raw | bytes 2N / N |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a, b, f = r["n"], r["2n"], r["floor"]
        lines.append(
            f"| {r['backend']} | {r['size']} | {a['commit_ms']:.3f} | {a['commit_p95_ms']:.3f} | "
            f"{f['commit_ms']:.3f} | "
            f"{a['commit_ms'] / f['commit_ms']:.2f}x | {a['load_ms']:.2f} | {a['list_ms']:.2f} | {a['bytes']:,} | "
            f"{a['raw_bytes']:,} | {a['bytes'] / a['raw_bytes']:.2f}x | {b['bytes'] / a['bytes']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument(
        "--postgres", default=os.environ.get("CLEW_BENCH_PG_URL", PG_DEFAULT), help="PostgreSQL URL, or 'none' to skip"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: N=20")
    args = parser.parse_args()
    n = 20 if args.quick else args.n
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(bench_sqlite(n, Path(tmp)))
    if args.postgres != "none":
        results.append(bench_postgres(args.postgres, n))
    table = report(results)
    print(table)
    if not args.quick:
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / "store.md").write_text(table + "\n")
        (out / "store.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

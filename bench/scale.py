"""A measured PostgreSQL store to extrapolate from (docs/scaling.md).

Writes ``--runs`` runs of ``--steps`` steps each of W1's workload through the runtime's
own statements (``Store.commit`` of the two lists with the step's ledger entries, an
idempotent call's intent and outcome, as ``Agent(idempotent_calls="with_checkpoint")``
writes them), into a fresh schema, then reports per table: rows, heap bytes
(``pg_relation_size``, TOAST included), index bytes (``pg_indexes_size``), and per
checkpoint; and the plans and times of ``list_runs`` and ``claim_expired`` on it.

    python -m bench.scale --runs 200 --steps 500 [--pg URL] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import psycopg

import clew
from bench import _db
from bench._sys_clew import initial_state
from bench._workload import steps


def _fill(store: clew.Store, runs: int, n: int) -> float:
    data = list(steps(n))
    start = time.perf_counter()
    for r in range(runs):
        run_id = store.create_run(agent="scale", labels={"tenant": f"t{r % 10}"}).run_id
        lease = store.acquire_lease(run_id, owner="w", ttl=3600)
        state: dict[str, Any] = initial_state()
        head = store.commit(run_id, state=state, parent=None, lease=lease, metadata={"next": "work"}).checkpoint_id
        for i, (u, a, t) in enumerate(data):
            state["messages"] += [u, a]
            state["tool_results"].append(t)
            state["i"] = i + 1
            key = f"{head}/kb#0"
            journal = [
                (
                    "call.intent",
                    {
                        "exec": head,
                        "key": key,
                        "name": "kb",
                        "attempt": 1,
                        "idempotent": True,
                        "idempotency_key": key[-32:],
                    },
                ),
                (
                    "call.outcome",
                    {
                        "exec": head,
                        "key": key,
                        "name": "kb",
                        "attempt": 1,
                        "ok": True,
                        "result": t,
                        "duration_ms": 0.01,
                    },
                ),
            ]
            meta = {
                "step": "work",
                "next": "work" if i + 1 < n else None,
                "attempts": 1,
                "duration_ms": 0.2,
                "code_version": "0",
                "schema_version": 1,
                "state_type": "dict",
            }
            head = store.commit(
                run_id,
                state=state,
                parent=head,
                lease=lease,
                journal=journal,
                metadata=meta,
                status="completed" if i + 1 == n else None,
            ).checkpoint_id
        store.release_lease(run_id, owner="w", epoch=lease.epoch)
        if r % 10 == 9:
            print(
                f"  {r + 1}/{runs} runs, {(r + 1) * n / (time.perf_counter() - start):.0f} checkpoints/s",
                file=sys.stderr,
            )
    return time.perf_counter() - start


def _sizes(conn: Any, schema: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid), c.reltuples"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1",
        (schema,),
    ).fetchall()
    out = []
    for name, heap, idx, _ in rows:
        count = conn.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0]
        indexes = conn.execute(
            "SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
            " WHERE n.nspname = %s AND t.relname = %s ORDER BY 1",
            (schema, name),
        ).fetchall()
        out.append({"table": name, "rows": count, "heap": heap, "indexes": idx, "each_index": dict(indexes)})
    return out


def _timed(fn: Any, reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--pg", default=os.environ.get("CLEW_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--keep", action="store_true", help="keep the schema")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    schema = _db.new_schema(args.pg)
    try:
        store = clew.open(f"{args.pg}?schema={schema}")
        wall = _fill(store, args.runs, args.steps)
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'VACUUM ANALYZE "{schema}".clew_runs')
            for t in ("clew_branches", "clew_checkpoints", "clew_blobs", "clew_journal"):
                conn.execute(f'VACUUM ANALYZE "{schema}".{t}')
            sizes = _sizes(conn, schema)
            plans = {}
            conn.execute(f'SET search_path TO "{schema}"')
            for name, sql in {
                "list_runs": "SELECT rk, run_id FROM clew_runs ORDER BY rk DESC LIMIT 51",
                "list_runs_by_label": "SELECT rk, run_id FROM clew_runs WHERE labels ->> 'tenant' = 't3'"
                " ORDER BY rk DESC LIMIT 51",
                "claim_expired": store._ctx.d.sql["claim_expired"]  # type: ignore[attr-defined]
                .format(marks="%s")
                .replace(
                    "UPDATE clew_branches SET lease_owner = %s, lease_expires = %s, epoch = epoch + 1"
                    " WHERE (rk, name) IN (",
                    "",
                )
                .split(" FOR UPDATE")[0],
            }.items():
                params: tuple[Any, ...] = ("running", time.time(), None, 10) if name == "claim_expired" else ()
                plan = conn.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql, params).fetchall()
                plans[name] = [r[0] for r in plan]
        lr = _timed(lambda: store.list_runs(limit=50))
        lr_label = _timed(lambda: store.list_runs(limit=50, labels={"tenant": "t3"}))
        ce = _timed(lambda: store.claim_expired(owner="x", ttl=1, limit=10))
        store.close()
        ckpts = next(s["rows"] for s in sizes if s["table"] == "clew_checkpoints")
        total = sum(s["heap"] + s["indexes"] for s in sizes)
        result = {
            "runs": args.runs,
            "steps": args.steps,
            "checkpoints": ckpts,
            "fill_seconds": wall,
            "bytes_total": total,
            "bytes_per_checkpoint": total / ckpts,
            "tables": sizes,
            "list_runs_ms": lr,
            "list_runs_by_label_ms": lr_label,
            "claim_expired_ms": ce,
            "plans": plans,
            "server": _db.pg_version(args.pg),
        }
        text = json.dumps(result, indent=1)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
        print(text)
    finally:
        if not args.keep:
            _db.drop_schema(args.pg, schema)


if __name__ == "__main__":
    main()

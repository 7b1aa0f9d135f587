"""The benchmark suite: clew against LangGraph's savers and the storage floor, in one run.

    python -m bench            # the full run (about 15 minutes on 2 cores); writes bench/results/
    python -m bench --quick    # a smoke run (under 2 minutes): small sizes, results to a temp dir

Workloads: W1 agent run (N = 50..1000), W2 many workers on PostgreSQL, W3 resume
latency against history length, W4 history listing and W5 fork at N = 400, W6 clew
through pgbouncer (transaction and session mode) against a direct connection, W7
clew's state shapes (dict channels, nested containers, ledgered calls), statements
per step and loads at N = 400..1600, W8 the cost of encryption at rest, W9 the
inspector's runs list over 100,000 runs, W10 LangGraph with a dict channel (tool
results under a new key each step) on ClewSaver, the stock savers and DeltaChannel, at
N = 400 and 800, and the peak memory of a W1 run. Writes
results.md, results.json and PNG plots. PostgreSQL
comes from ``--pg`` (default ``$CLEW_BENCH_PG_URL`` or the local server); without
one, the PostgreSQL systems are skipped and said to be. The targets are checked and
reported, never asserted: the run fails only if the benchmark itself breaks.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    _db,
    _graphs,
    _machine,
    _memory,
    _plots,
    _registry,
    _report,
    _targets,
    langgraph_bench,
    w1_agent,
    w2_workers,
    w3_resume,
    w4_history,
    w6_pooler,
    w7_shapes,
    w8_privacy,
    w9_inspector,
)
from bench._systems import Where

WORKLOADS = ("w1", "w2", "w3", "w4", "w6", "w7", "w8", "w9", "w10", "memory")


def _settings(quick: bool, reps: int | None) -> dict[str, Any]:
    if quick:
        return {
            "ns": [10, 20],
            "reps": reps or 1,
            "stock_max_n": 20,
            "w2_workers": [2],
            "w2_runs": 2,
            "w2_steps": 5,
            "w2_reps": 1,
            "histories": [10, 30],
            "w3_reps": 2,
            "w4_n": 20,
            "w4_reps": 2,
            "forks": 2,
            "memory_n": 20,
            "memory_systems": 1,
            "w8_n": 20,
            "w8_reps": 2,
            "w8_rot_runs": 5,
            "w8_rot_steps": 5,
            "w6_workers": 2,
            "w6_runs": 2,
            "w6_steps": 5,
            "w6_reps": 1,
            "w7_n": 20,
            "w7_load_ns": [10, 20],
            "w7_reps": 2,
            "w9_runs": 2000,
            "w9_depth": 10,
            "w10_ns": [10, 20],
            "w10_reps": 1,
        }
    return {
        "ns": [50, 100, 200, 400, 1000],
        "reps": reps or 3,
        "stock_max_n": 400,
        "w2_workers": [4, 8],
        "w2_runs": 50,
        "w2_steps": 20,
        "w2_reps": 2,
        "histories": [10, 100, 1000, 10000],
        "w3_reps": 7,
        "w4_n": 400,
        "w4_reps": 5,
        "forks": 20,
        "memory_n": 400,
        "memory_systems": None,
        "w8_n": 400,
        "w8_reps": 5,
        "w8_rot_runs": 200,
        "w8_rot_steps": 20,
        "w6_workers": 8,
        "w6_runs": 5,
        "w6_steps": 20,
        "w6_reps": reps or 3,
        "w7_n": 400,
        "w7_load_ns": [400, 800, 1600],
        "w7_reps": 7,
        "w9_runs": 100_000,
        "w9_depth": 1000,
        "w10_ns": [400, 800],
        "w10_reps": 3,
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: small sizes, one repetition")
    ap.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--pg", default=_db.PG_DEFAULT, help="PostgreSQL URL, or 'none' to skip PostgreSQL")
    ap.add_argument("--reps", type=int, help="W1 repetitions (default 3; --quick 1)")
    ap.add_argument("--ns", help="comma-separated W1 sizes (default 50,100,200,400,1000)")
    ap.add_argument(
        "--stock-max-n",
        type=int,
        help="largest N for the stock savers that store the whole list "
        "each step (default 400: at N=1000 SqliteSaver writes over 1 GB)",
    )
    ap.add_argument("--out", help="where to write results (default bench/results/; --quick: a temp dir)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.perf_counter()
    cfg = _settings(args.quick, args.reps)
    if args.stock_max_n:
        cfg["stock_max_n"] = args.stock_max_n
    if args.ns:
        cfg["ns"] = [int(x) for x in args.ns.split(",")]
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = only - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workload(s) {sorted(unknown)}: choose from {', '.join(WORKLOADS)}")
    pg = None if args.pg == "none" else args.pg
    skipped: list[str] = [] if pg else ["PostgreSQL systems and W2 (--pg none)"]
    if pg and not _db.pg_available(pg):
        skipped.append(f"PostgreSQL systems and W2 (no server answered at {pg})")
        pg = None
    if not _graphs.has_delta_channel():
        skipped.append("DeltaChannel (this LangGraph has none)")
    out = Path(args.out) if args.out else (None if args.quick else Path(__file__).parent / "results")
    argv_text = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    res: dict[str, Any] = {
        "machine": _machine.describe(pg),
        "skipped": skipped,
        "config": {**cfg, "command": f"python -m bench {argv_text}".strip(), "pg": bool(pg), "quick": args.quick},
    }
    print(_machine.one_line(res["machine"]), file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="clew-bench-") as tmp:
        where = Where(tmp, pg)
        systems = _registry.systems(where)
        if "w1" in only:
            res["w1"] = w1_agent.measure(systems, cfg["ns"], reps=cfg["reps"], stock_max_n=cfg["stock_max_n"])
        if "w10" in only:  # early: later workloads leave big heaps and busy servers (W9's 100,000 runs)
            gc.collect()
            backends = ["sqlite", "postgres"] if pg else ["sqlite"]
            res["w10"] = langgraph_bench.dict_rows(backends, cfg["w10_ns"], cfg["w10_reps"], tmp, pg or "")
        if "memory" in only:
            res["memory"] = _memory.measure(systems[: cfg["memory_systems"]], cfg["memory_n"], tmp, pg)
        if "w4" in only:
            res["w4"] = w4_history.measure(systems, cfg["w4_n"], reps=cfg["w4_reps"], forks=cfg["forks"])
        if "w3" in only:
            res["w3"] = w3_resume.measure(cfg["histories"], workdir=tmp, pg=pg, reps=cfg["w3_reps"])
        if "w7" in only:
            res["w7"] = w7_shapes.measure(tmp, pg, n=cfg["w7_n"], load_ns=cfg["w7_load_ns"], reps=cfg["w7_reps"])
        if "w8" in only:
            res["w8"] = w8_privacy.measure(cfg["w8_n"], workdir=tmp, pg=pg, reps=cfg["w8_reps"])
            res["w8_rotation"] = w8_privacy.rotation(cfg["w8_rot_runs"], cfg["w8_rot_steps"], workdir=tmp, pg=pg)
        if "w2" in only and pg:
            res["w2"] = w2_workers.measure(
                pg,
                cfg["w2_workers"],
                runs=cfg["w2_runs"],
                n=cfg["w2_steps"],
                reps=cfg["w2_reps"],
                delta_channel=_graphs.has_delta_channel(),
            )
        if "w6" in only and pg:
            try:
                fronts = w6_pooler.start_pgbouncers(pg)
            except (RuntimeError, OSError, ImportError) as exc:
                skipped.append(f"W6 pgbouncer against direct ({exc})")
            else:
                res["w6"] = w6_pooler.measure(
                    pg, fronts, cfg["w6_workers"], runs=cfg["w6_runs"], n=cfg["w6_steps"], reps=cfg["w6_reps"]
                )
        if "w9" in only:
            w9_where = {"sqlite": f"sqlite:///{tmp}/inspector.db"}
            with contextlib.ExitStack() as stack:
                if pg:
                    w9_where["postgres"] = f"{pg}?schema={stack.enter_context(_db.schema(pg))}"
                res["w9"] = w9_inspector.measure(w9_where, cfg["w9_runs"], reps=5, depth=cfg["w9_depth"])
    res["targets"] = _targets.evaluate(res, n=400 if not args.quick else cfg["ns"][-1])
    res["elapsed_s"] = time.perf_counter() - started
    res["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    res["load_average_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    table = _report.render(res, n=400 if not args.quick else cfg["ns"][-1])
    print(table)
    with tempfile.TemporaryDirectory(prefix="clew-bench-out-") as scratch:
        dest = out or Path(scratch)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "results.md").write_text(table + "\n")
        (dest / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
        made = _plots.draw(res, dest)
        print(
            f"\nwrote results.md, results.json and {len(made)} plots to {dest}"
            + (" (a temp dir, removed: pass --out to keep them)" if out is None else ""),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""An experiment: what storing each checkpoint's manifest as a change against its parent's would save.

W1's clew Agent (two ~400 B messages and a ~1 KB tool result per step, the tool called
through ``ctx.call``) runs N steps on a fresh SQLite file. The script then reads every
checkpoint's manifest back and encodes it the way a delta format would: only the
fields that changed, and for a chunked list only its new length, how many of the
parent's roots it keeps and the roots it adds; every ``--full-every``-th checkpoint
(and a branch's first) keeps its whole manifest, so a load reads a bounded chain of
rows. It prints where the file's bytes go (SQLite's ``dbstat``) and the file's size
over the raw appended bytes now and with delta manifests. Nothing is written back:
the format is not changed, this measures what changing it would buy.

    python -m bench.manifest_delta [--n 400] [--full-every 32] [--mode at_once|with_checkpoint]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from typing import Any

import ormsgpack

import clew
from bench._sys_clew import initial_state, make_agent
from bench._workload import raw_bytes, steps


def _delta(entry: dict[str, Any], parent: dict[str, Any]) -> bytes:
    """The manifest ``entry`` as a change against ``parent`` (both decoded maps)."""
    changed: dict[str, Any] = {}
    for name, value in entry.items():
        old = parent.get(name)
        if old == value:
            continue
        if value[0] == "l" and old is not None and old[0] == "l":
            roots, prev = value[2], old[2]
            keep = 0
            while keep < min(len(roots), len(prev)) and roots[keep] == prev[keep]:
                keep += 1
            changed[name] = ["L", value[1], keep, roots[keep:]]
        else:
            changed[name] = value
    dropped = [name for name in parent if name not in entry]
    return ormsgpack.packb([changed, dropped])


def measure(n: int, full_every: int, mode: str) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix="clew-manifest-")
    path = os.path.join(workdir, "agent.db")
    store = clew.open(f"sqlite:///{path}")
    data = list(steps(n))
    agent = make_agent(store, data, [], mode)
    t0 = time.perf_counter()
    agent.start(initial_state())
    elapsed = time.perf_counter() - t0
    store.checkpoint_wal()  # type: ignore[attr-defined]  # SQLiteStore
    store.close()
    con = sqlite3.connect(path)
    parts = con.execute(
        "SELECT name, SUM(pgsize), SUM(payload) FROM dbstat GROUP BY name HAVING SUM(payload) > 0 ORDER BY 2 DESC"
    ).fetchall()
    rows = con.execute("SELECT branch, seq, manifest FROM clew_checkpoints ORDER BY branch, seq").fetchall()
    con.close()
    full = delta = 0
    last: dict[str, tuple[int, dict[str, Any]]] = {}  # branch -> (rows since a whole manifest, parent manifest)
    for branch, _, stored in rows:
        manifest = ormsgpack.unpackb(stored)
        full += len(stored)
        since, parent = last.get(branch, (full_every, {}))
        if since + 1 >= full_every:
            delta += len(stored)
            last[branch] = (0, manifest)
        else:
            delta += len(_delta(manifest, parent))
            last[branch] = (since + 1, manifest)
    size = os.path.getsize(path)
    raw = raw_bytes(data)
    return {
        "n": n,
        "mode": mode,
        "file": size,
        "raw": raw,
        "ms_per_step": elapsed * 1000 / n,
        "parts": parts,
        "checkpoints": len(rows),
        "manifest_bytes": full,
        "delta_bytes": delta,
        "projected": size - (full - delta),
    }


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.manifest_delta", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--full-every", type=int, default=32)
    ap.add_argument("--mode", default="at_once", choices=["at_once", "with_checkpoint"])
    args = ap.parse_args()
    r = measure(args.n, args.full_every, args.mode)
    print(f"clew Agent, N = {r['n']}, idempotent_calls={r['mode']!r}, SQLite: {r['ms_per_step']:.2f} ms/step\n")
    print("| table or index | pages (bytes) | payload (bytes) | payload per step |")
    print("|---|---:|---:|---:|")
    for name, pages, payload in r["parts"]:
        print(f"| {name} | {pages:,} | {payload:,} | {payload / r['n']:,.0f} |")
    print()
    per = r["checkpoints"]
    print(f"manifests: {r['manifest_bytes']:,} B in {per} checkpoints ({r['manifest_bytes'] / per:,.0f} B each)")
    print(
        f"as deltas (a whole one every {args.full_every}): {r['delta_bytes']:,} B"
        f" ({r['delta_bytes'] / per:,.0f} B each)"
    )
    print(f"file now: {r['file']:,} B = {r['file'] / r['raw']:.2f}x raw appended ({r['raw']:,} B)")
    print(
        f"file with delta manifests (payload saved, pages not repacked): {r['projected']:,} B"
        f" = {r['projected'] / r['raw']:.2f}x raw"
    )


if __name__ == "__main__":
    main()

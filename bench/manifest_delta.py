"""Where the clew Agent's bytes go, and what storing manifests as changes saves.

W1's clew Agent (two ~400 B messages and a ~1 KB tool result per step, the tool called
through ``ctx.call``) runs N steps on a fresh SQLite file. The script prints where the
file's bytes go (SQLite's ``dbstat``), then reads every checkpoint's manifest back and
compares what is stored (a change against the parent's manifest, or a whole one at
least every ``_manifests.CHAIN_MAX`` checkpoints: see docs/storage.md) with what the
whole manifests would take, and the file's size over the raw appended bytes both ways.
Written as the experiment before the format changed (it then projected 1.80x -> 1.60x
raw at N = 400), it now measures the format as built.

    python -m bench.manifest_delta [--n 400] [--mode at_once|with_checkpoint]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from typing import Any

import clew
from bench._sys_clew import initial_state, make_agent
from bench._workload import raw_bytes, steps
from clew.codec import Codec
from clew.store import _manifests


def measure(n: int, mode: str) -> dict[str, Any]:
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
    rows = con.execute("SELECT checkpoint_id, parent_id, manifest FROM clew_checkpoints ORDER BY seq").fetchall()
    con.close()
    codec = Codec()
    whole = _manifests.resolve_all(bytes, {cid: (parent, m) for cid, parent, m in rows})
    stored = sum(len(m) for _, _, m in rows)
    full = 0
    for cid, _, _ in rows:
        known = whole[cid]
        if isinstance(known, Exception):
            raise known
        full += len(codec.dumps(known.manifest, "manifest")[0])
    delta = stored
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
        "whole": size + (full - delta),
    }


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.manifest_delta", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--mode", default="at_once", choices=["at_once", "with_checkpoint"])
    args = ap.parse_args()
    r = measure(args.n, args.mode)
    print(f"clew Agent, N = {r['n']}, idempotent_calls={r['mode']!r}, SQLite: {r['ms_per_step']:.2f} ms/step\n")
    print("| table or index | pages (bytes) | payload (bytes) | payload per step |")
    print("|---|---:|---:|---:|")
    for name, pages, payload in r["parts"]:
        print(f"| {name} | {pages:,} | {payload:,} | {payload / r['n']:,.0f} |")
    print()
    per = r["checkpoints"]
    whole, stored = r["manifest_bytes"], r["delta_bytes"]
    print(f"whole manifests would be: {whole:,} B in {per} checkpoints ({whole / per:,.0f} B each)")
    every = _manifests.CHAIN_MAX
    print(f"stored (changes, a whole one at least every {every}): {stored:,} B ({stored / per:,.0f} B each)")
    print(f"file: {r['file']:,} B = {r['file'] / r['raw']:.2f}x raw appended ({r['raw']:,} B)")
    ratio = r["whole"] / r["raw"]
    print(f"with whole manifests (payload added, pages not repacked): {r['whole']:,} B = {ratio:.2f}x raw")


if __name__ == "__main__":
    main()

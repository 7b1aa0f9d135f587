"""W8, the cost of encryption at rest: the W1 agent run with and without a keyring.

For each backend, the same run of N steps (two ~400-byte messages and a ~1 KB tool
result appended per step) is made by a plain agent and by one whose store encrypts
(``Codec(keyring=...)``: AES-256-GCM on every blob, keyed addresses and seals). Measured:
ms per step (median, p95), ms to load the latest state (median of ``reps`` loads on
a fresh connection), and the bytes of the run's blobs.

Then the cost of key rotation: ``runs`` runs of ``steps`` steps each, rotated onto a
new keyring key two ways. With data keys (how clew stores runs), ``rewrap_keys``
re-wraps one 32-byte data key per run and rewrites no data row. Re-encryption (how
rotation worked before data keys) rewrites every row of every run; it is measured as
``rekey`` of the same runs stored in the clear, which encrypts every row in place
(no decrypt step, so it flatters re-encryption a little). Measured: seconds, runs/s,
rows and bytes rewritten.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from typing import Any

import clew
from bench import _db
from bench._workload import median_ms, p95_ms, steps
from clew.codec import Codec, Keyring


def _url(backend: str, workdir: str, pg: str | None) -> str:
    if backend == "sqlite":
        return f"sqlite:///{os.path.join(workdir, f'w8-{uuid.uuid4().hex}.db')}"
    assert pg is not None
    return f"{pg}?schema={_db.new_schema(pg)}"


def _one(url: str, codec: Codec, n: int, reps: int) -> dict[str, Any]:
    data = list(steps(n))
    times: list[float] = []
    with clew.open(url, codec=codec) as store:
        agent: clew.Agent[dict[str, Any]] = clew.Agent("bench-w8", state=dict, store=store, lease_ttl=60)

        @agent.step(start=True)
        def work(state: dict[str, Any], ctx: Any) -> str | None:
            i = state["i"]
            state["messages"].extend(data[i][:2])
            state["tools"].append(data[i][2])
            state["i"] = i + 1
            times.append(time.perf_counter())
            return "work" if i + 1 < n else None

        started = time.perf_counter()
        run = agent.start({"i": 0, "messages": [], "tools": []})
        per_step = [b - a for a, b in zip([started, *times[:-1]], times, strict=True)]
        stored = _stored_bytes(store, run.run_id)
    loads = []
    for _ in range(reps):
        with clew.open(url, codec=codec) as store:
            t0 = time.perf_counter()
            head = store.get_branch(run.run_id).head
            assert head is not None
            state = store.load_state(run.run_id, head)
            loads.append(time.perf_counter() - t0)
            assert state["i"] == n
    return {
        "ms_median": median_ms(per_step),
        "ms_p95": p95_ms(per_step),
        "load_ms": statistics.median(loads) * 1000,
        "bytes": stored,
    }


def _stored_bytes(store: clew.Store, run_id: str) -> int:
    """Bytes of the run's blobs (the state's content, where encryption adds its 30-odd bytes each)."""
    return sum(len(bytes(r)) for r in store._execute(_blob_rows(store, run_id), write=False))  # type: ignore[attr-defined]


def _blob_rows(store: clew.Store, run_id: str) -> Any:
    from clew.store._read import run_key

    rk = yield from run_key(store._ctx, run_id)  # type: ignore[attr-defined]
    rows = yield store._ctx.q("all_blobs", (rk,), "all")  # type: ignore[attr-defined]
    return [data for _, data in rows]


def codec_costs(n: int, codecs: dict[str, Codec], reps: int) -> dict[str, dict[str, float]]:
    """The codecs alone, passes interleaved, best of ``reps``: µs to wrap and to unwrap one
    step's three values (their canonical bytes already made)."""
    plains = [Codec().dumps(v)[0] for s in steps(n) for v in s]
    blobs = {name: [c.wrap(p) for p in plains] for name, c in codecs.items()}
    best = {name: [float("inf"), float("inf")] for name in codecs}
    for _ in range(reps):
        for name, codec in codecs.items():
            t0 = time.perf_counter()
            for p in plains:
                codec.wrap(p)
            t1 = time.perf_counter()
            for b in blobs[name]:
                codec.unwrap(b)
            t2 = time.perf_counter()
            best[name] = [min(best[name][0], t1 - t0), min(best[name][1], t2 - t1)]
    return {name: {"wrap_us_per_step": w / n * 1e6, "unwrap_us_per_step": u / n * 1e6} for name, (w, u) in best.items()}


def _fill(store: clew.Store, runs: int, n: int) -> list[str]:
    data = list(steps(n))
    agent: clew.Agent[dict[str, Any]] = clew.Agent("bench-w8-rot", state=dict, store=store, lease_ttl=60)

    @agent.step(start=True)
    def work(state: dict[str, Any], ctx: Any) -> str | None:
        i = state["i"]
        state["messages"].extend(data[i][:2])
        state["tools"].append(data[i][2])
        state["i"] = i + 1
        return "work" if i + 1 < n else None

    return [agent.start({"i": 0, "messages": [], "tools": []}).run_id for _ in range(runs)]


def rotation(runs: int, n: int, *, workdir: str, pg: str | None) -> list[dict[str, Any]]:
    """Rotation onto a new key: re-wrapping data keys vs re-encrypting every row."""
    m, k1, k2 = Keyring.generate(), Keyring.generate(), Keyring.generate()
    old = Keyring({"m": m, "k1": k1}, mac="m")
    new = Keyring({"m": m, "k1": k1, "k2": k2}, mac="m")
    out = []
    for backend in ["sqlite", *(["postgres"] if pg else [])]:
        for how in ("re-wrap data keys", "re-encrypt rows"):
            url = _url(backend, workdir, pg)
            with clew.open(url, codec=Codec(keyring=old) if how.startswith("re-wrap") else Codec()) as store:
                ids = _fill(store, runs, n)
                rows_stored = sum(len(_blob_rows_of(store, r)) for r in ids)
            with clew.open(url, codec=Codec(keyring=new)) as store:
                t0 = time.perf_counter()
                rewritten = written = 0
                if how.startswith("re-wrap"):
                    cursor = None
                    while True:
                        report = store.rewrap_keys(after=cursor, limit=500)
                        rewritten += report.rewrapped
                        written += report.bytes_written
                        cursor = report.next_cursor
                        if cursor is None:
                            break
                else:
                    for run_id in ids:
                        done = store.rekey(run_id)
                        rewritten += done.rows
                        written += done.bytes_written
                secs = time.perf_counter() - t0
            out.append(
                {
                    "backend": backend,
                    "how": how,
                    "runs": runs,
                    "steps": n,
                    "blobs_stored": rows_stored,
                    "rows_rewritten": rewritten,
                    "bytes_rewritten": written,
                    "seconds": secs,
                    "runs_per_s": runs / secs,
                    "rows_per_s": rewritten / secs,
                }
            )
    return out


def _blob_rows_of(store: clew.Store, run_id: str) -> list[Any]:
    return list(store._execute(_blob_rows(store, run_id), write=False))  # type: ignore[attr-defined]


def measure(n: int, *, workdir: str, pg: str | None, reps: int) -> list[dict[str, Any]]:
    keyring = Keyring({"bench": Keyring.generate()})
    out = []
    costs = codec_costs(n, {"plain": Codec(), "encrypted": Codec(keyring=keyring)}, max(reps * 4, 20))
    for label, cost in costs.items():
        out.append({"backend": "codec only", "codec": label, "n": n, **cost})
    for backend in ["sqlite", *(["postgres"] if pg else [])]:
        for label, codec in (("plain", Codec()), ("encrypted", Codec(keyring=keyring))):
            r = _one(_url(backend, workdir, pg), codec, n, reps)
            out.append({"backend": backend, "codec": label, "n": n, **r})
    return out

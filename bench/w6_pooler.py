"""W6, clew through pgbouncer against a direct connection, side by side in one run.

P worker processes (the same clew Agent workload as W2) against the same server:
direct, through pgbouncer in transaction mode (``?pooler=transaction``) and in
session mode (``?pooler=session``). pgbouncer is Debian's package, started on a free
port in front of the server for the run (``apt-get install pgbouncer``); without it
this workload is skipped and said to be. Systems take turns, repetition after
repetition, each in a fresh schema.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from bench import _db, _race
from bench._workload import steps

MODES = {"direct": "direct", "pgbouncer, transaction mode": "transaction", "pgbouncer, session mode": "session"}


def start_pgbouncers(pg: str) -> dict[str, str]:
    """pgbouncer in both modes in front of ``pg``: mode -> URL. Raises RuntimeError when it cannot."""
    # The test suite's helper: finds (or apt-installs) pgbouncer and starts it on a free port.
    from tests._pg import start_pgbouncer

    return {mode: start_pgbouncer(pg, mode, default_pool_size="16") for mode in ("transaction", "session")}


def _worker(url: str, wid: int, runs: int, n: int, ready: Any, go: Any) -> None:
    import clew
    from bench._sys_clew import initial_state, make_agent

    data = list(steps(n))
    with clew.open(url, pool_max=2) as store:
        agent = make_agent(store, data, [])
        ready.put(wid)
        go.wait()
        for _ in range(runs):
            assert agent.start(initial_state()).status == "completed"


def race(url: str, workers: int, runs: int, n: int) -> float:
    """Seconds for ``workers`` processes to run ``runs`` x ``n`` steps each through ``url``."""
    return _race.race(_worker, [(url, w, runs, n) for w in range(workers)], url)


def measure(
    pg: str, fronts: dict[str, str], workers: int, *, runs: int, n: int, reps: int, log: Any = sys.stderr
) -> list[dict[str, Any]]:
    import clew

    names = list(MODES)
    times: dict[str, list[float]] = {k: [] for k in names}
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            mode = MODES[name]
            with _db.schema(pg) as schema:
                clew.open(f"{pg}?schema={schema}").close()  # tables made before the clock
                front = pg if mode == "direct" else fronts[mode]
                url = f"{front}?schema={schema}" + ("" if mode == "direct" else f"&pooler={mode}")
                times[name].append(race(url, workers, runs, n))
            total = workers * runs * n
            print(f"  W6 rep {rep + 1}/{reps} {name}: {total / times[name][-1]:.0f} steps/s", file=log, flush=True)
    rows = []
    for name in names:
        elapsed = statistics.median(times[name])
        rows.append(
            {
                "system": f"clew Agent, {name}",
                "front": MODES[name],
                "workers": workers,
                "runs": runs,
                "steps_per_run": n,
                "steps": workers * runs * n,
                "seconds": elapsed,
                "steps_per_s": workers * runs * n / elapsed,
            }
        )
    return rows

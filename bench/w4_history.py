"""W4 and W5 on one N-step history per system (N = 400): load the latest state, list the
history, fork from an old checkpoint.

- load latest: clew ``Store.load_state`` of the head; LangGraph ``graph.get_state``
  (which, for ``DeltaChannel``, replays the writes since the last snapshot); the
  floor selects every delta of the run, the least any design must read.
- listing: clew ``Store.list_checkpoints`` (metadata only); LangGraph
  ``saver.list`` (the whole ``CheckpointTuple`` of each, its contract); the floor
  selects ids and lengths.
- fork: from the checkpoint after N/2 steps, with one message appended. clew
  ``Agent.fork(run=False)``; the store's ``fork`` + ``commit`` (after loading the
  old state); LangGraph ``graph.update_state`` on the old checkpoint's config. Bytes
  added are the database's growth over ``forks`` forks, divided by their number.

Every system is built first, then each measurement runs system after system,
repetition after repetition; before each load the system reopens its connection.
A listing that takes seconds is repeated only until it has taken 2 s in all.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from bench._systems import System
from bench._workload import steps

_SLOW_MS = 2000


def _ms(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def measure(systems: list[System], n: int, *, reps: int, forks: int, log: Any = sys.stderr) -> list[dict[str, Any]]:
    data = list(steps(n))
    built: list[System] = []
    out: dict[str, dict[str, Any]] = {}
    try:
        for s in systems:
            s.open()
            built.append(s)
            s.run(data)
            out[s.key] = {"loads": [], "lists": [], "forks": [], "count": 0}
        print(f"  W4/W5 built {len(built)} histories of {n} steps", file=log, flush=True)
        for _ in range(reps):
            for s in built:
                s.reopen()
                out[s.key]["loads"].append(_ms(s.load_latest))
        for _ in range(reps):
            for s in built:
                if sum(out[s.key]["lists"]) > _SLOW_MS:  # a listing that takes seconds: enough samples
                    continue
                start = time.perf_counter()
                out[s.key]["count"] = s.list_history()
                out[s.key]["lists"].append((time.perf_counter() - start) * 1000)
        forkable = [s for s in built if s.can_fork()]
        before = {}
        for s in forkable:
            s.prepare_fork(n // 2)
            before[s.key] = s.stored_bytes()
        for k in range(forks):
            for s in forkable:
                out[s.key]["forks"].append(_ms(lambda s=s, k=k: s.fork(k)))
        for s in forkable:
            out[s.key]["fork_bytes"] = (s.stored_bytes() - before[s.key]) / forks
    finally:
        for s in built:
            s.close()
    rows = []
    for s in built:
        o = out[s.key]
        rows.append(
            {
                "system": s.name,
                "backend": s.backend,
                "family": s.family,
                "peer": s.peer,
                "n": n,
                "load_ms": statistics.median(o["loads"]),
                "list_ms": statistics.median(o["lists"]),
                "listed": o["count"],
                "fork_ms": statistics.median(o["forks"]) if o["forks"] else None,
                "fork_bytes": o.get("fork_bytes"),
            }
        )
    return rows

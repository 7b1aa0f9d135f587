"""W1, the agent run: N steps, each appending two ~400 B messages and a ~1 KB tool result.

For every system and N: bytes stored, ms per step (median and p95 of every step of
every repetition, a step timed from its start to the next one's), steps per second
(N over the run's wall time, median of the repetitions). Repetitions are
interleaved: each one runs every (N, system) pair once, in an order that rotates, so
a busy moment on the machine does not land on one system only. Each run starts on a
fresh database; its texts are made before the clock starts.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from bench import _registry
from bench._systems import System
from bench._workload import Step, p95_ms, raw_appended, steps


def _one(system: System, data: list[Step]) -> tuple[list[float], float, int]:
    system.open()
    try:
        sample = system.run(data)
        size = system.stored_bytes()
    finally:
        system.close()
    return sample.step_seconds(), sample.wall, size


def measure(
    systems: list[System], ns: list[int], *, reps: int, stock_max_n: int, log: Any = sys.stderr
) -> list[dict[str, Any]]:
    data = list(steps(max(ns)))
    warm = data[:10]
    for s in systems:  # first-call costs (imports, lazy setup) stay out of the numbers
        _one(s, warm)
    cells = [(n, s) for n in ns for s in systems if n <= stock_max_n or not _registry.is_stock_full_list(s)]
    got: dict[tuple[int, str], dict[str, Any]] = {}
    for rep in range(reps):
        shift = rep % len(systems)
        order = sorted(cells, key=lambda c: (c[0], (systems.index(c[1]) + shift) % len(systems)))
        for n, s in order:
            step_s, wall, size = _one(s, data[:n])
            cell = got.setdefault((n, s.key), {"system": s, "steps": [], "walls": [], "bytes": []})
            cell["steps"] += step_s
            cell["walls"].append(wall)
            cell["bytes"].append(size)
            print(f"  W1 rep {rep + 1}/{reps} N={n} {s.key}: {wall / n * 1000:.2f} ms/step", file=log, flush=True)
    rows = []
    for (n, _), cell in sorted(got.items(), key=lambda kv: (systems.index(kv[1]["system"]), kv[0][0])):
        s = cell["system"]
        wall = statistics.median(cell["walls"])
        rows.append(
            {
                "system": s.name,
                "backend": s.backend,
                "family": s.family,
                "peer": s.peer,
                "floor": s.floor,
                "n": n,
                "bytes": int(statistics.median(cell["bytes"])),
                "raw_bytes": raw_appended(n),
                "ms_median": statistics.median(cell["steps"]) * 1000,
                "ms_p95": p95_ms(cell["steps"]),
                "steps_per_s": n / wall,
                "wall_s": wall,
                "reps": len(cell["walls"]),
            }
        )
    return rows

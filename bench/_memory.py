"""Peak memory of one system's W1 run, measured in a process of its own.

``python -m bench._memory KEY N WORKDIR [PG]`` opens the system, warms it up on a
short run, then runs N steps and prints the process's peak resident set size and
how far it rose above the resident size just before the run. ``measure`` runs it
once per system. On Linux the peak is ``VmHWM`` from ``/proc/self/status``: a child's
``ru_maxrss`` starts from its parent's high-water mark at ``fork``, so it would
report the suite's own memory for every system.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from typing import Any

from bench._systems import System


def _rss_now() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the high-water mark so far
        return _rss_peak()


def _rss_peak() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure(systems: list[System], n: int, workdir: str, pg: str | None, log: Any = sys.stderr) -> list[dict[str, Any]]:
    rows = []
    for s in systems:
        cmd = [sys.executable, "-m", "bench._memory", s.key, str(n), workdir, pg or ""]
        cwd = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
        if out.returncode != 0:
            raise RuntimeError(f"memory run of {s.key} failed:\n{out.stderr}")
        rows.append({"system": s.name, "backend": s.backend, "n": n, **json.loads(out.stdout.splitlines()[-1])})
        print(f"  memory {s.key}: peak {rows[-1]['peak_rss_mb']:.0f} MB", file=log, flush=True)
    return rows


def main() -> None:
    from bench import _registry
    from bench._systems import Where
    from bench._workload import steps

    key, n, workdir, pg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] or None
    system = _registry.by_key(Where(workdir, pg), key)
    data = list(steps(n))
    system.open()
    try:
        system.run(data[:10])
    finally:
        system.close()
    system.open()
    try:
        before = _rss_now()
        system.run(data)
        peak = _rss_peak()
    finally:
        system.close()
    print(json.dumps({"peak_rss_mb": peak / 2**20, "rss_growth_mb": max(0, peak - before) / 2**20}))


if __name__ == "__main__":
    main()

"""Start worker processes, release them together, and time them: shared by W2 and W6."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Callable, Sequence
from typing import Any


def race(target: Callable[..., None], args: Sequence[tuple[Any, ...]], label: str) -> float:
    """Seconds from releasing the processes ``target(*a, ready, go)`` (one per ``a``) until all end.

    Each process puts its id on ``ready`` once set up and waits for ``go``: start-up is not timed.
    """
    ctx = mp.get_context("spawn")
    ready, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=target, args=(*a, ready, go)) for a in args]
    for p in procs:
        p.start()
    try:
        waiting, deadline = len(procs), time.monotonic() + 300
        while waiting:
            try:
                ready.get(timeout=1)
                waiting -= 1
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                assert not dead and time.monotonic() < deadline, f"{label}: a worker failed to start ({dead})"
        start = time.perf_counter()
        go.set()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    assert not bad, f"{label}: a worker failed (exit codes {bad})"
    return elapsed

"""An agent for worker processes: three steps, each counted in a shared file.

Imported by tests and by ``clew worker tests.worker.workagent:agent`` children. The
store URL comes from ``$WORK_URL``; ``$WORK_DIR`` holds the counts and the markers.
The ``slow`` step announces itself with a marker file and then takes ``$WORK_SLOW``
seconds, long enough for a test to signal the worker in the middle of it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

import clew


class Job(BaseModel):
    n: int
    done: list[str] = []


def _dir() -> Path:
    return Path(os.environ["WORK_DIR"])


def mark(name: str) -> None:
    fd = os.open(_dir() / "effects", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def effects() -> list[tuple[str, int]]:
    path = _dir() / "effects"
    if not path.exists():
        return []
    return [(line.split()[0], int(line.split()[1])) for line in path.read_text().splitlines()]


def make(store: clew.Store | clew.AsyncStore, lease_ttl: float = 30.0) -> clew.Agent[Job]:
    agent = clew.Agent("jobs", state=Job, store=store, lease_ttl=lease_ttl)

    @agent.step(start=True)
    def first(state: Job, ctx: clew.Context) -> str:
        mark(f"first:{state.n}")
        state.done.append("first")
        return "slow"

    @agent.step
    def slow(state: Job, ctx: clew.Context) -> str:
        mark(f"slow-start:{state.n}")
        (_dir() / f"in-slow-{state.n}").touch()
        time.sleep(float(os.environ.get("WORK_SLOW", "0")))
        mark(f"slow-end:{state.n}")
        state.done.append("slow")
        return "last"

    @agent.step
    def last(state: Job, ctx: clew.Context) -> None:
        mark(f"last:{state.n}")
        state.done.append("last")

    return agent


def agent() -> clew.Agent[Job]:
    """What ``clew worker tests.worker.workagent:agent`` loads."""
    return make(clew.open(os.environ["WORK_URL"]), float(os.environ.get("WORK_TTL", "30")))

"""Worker processes for the concurrency tests, run as ``python -m tests.crash._workers <command>``.

``race``     at an agreed moment, resume the runs another process resumes at the same moment
``spawn``    start many runs at once in threads (the test kills this process mid-flight)
``recover``  call ``recover()`` until no run is left to finish
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import clew
from clew.errors import ConflictError, RunLockedError
from tests.crash import _scenario


class Crash(BaseException):
    pass


def race_agent(store: clew.Store, effects: Path, *, crash: bool = False, worker: str | None = None) -> clew.Agent[Any]:
    """ask (interrupt) -> slow (a non-idempotent call, then 0.4 s of work)."""
    agent = clew.Agent("racer", state=dict, store=store, worker_id=worker, lease_ttl=5)

    @agent.step(start=True)
    def ask(state: dict[str, Any], ctx: clew.Context) -> str:
        state["answer"] = ctx.interrupt("go?")
        return "slow"

    @agent.step
    def slow(state: dict[str, Any], ctx: clew.Context) -> None:
        if crash:
            raise Crash

        def charge(x: str) -> str:
            _scenario.Effects(effects, ctx.run_id).write("charge", ctx.idempotency_key, f"charged-{x}")
            return f"charged-{x}"

        state["charge"] = ctx.call("charge", charge, ctx.run_id)
        time.sleep(0.4)
        state["by"] = agent.worker_id

    return agent


def race(args: argparse.Namespace) -> None:
    """Say "ready", wait for the go file (a start time), then resume every run at that moment, one thread each."""
    store = clew.open(args.url)
    agent = race_agent(store, args.effects)
    run_ids = args.runs.split(",")
    paused = {r: store.get_run(r).status == "paused" for r in run_ids}
    print("ready", flush=True)
    while not args.go.exists():
        time.sleep(0.001)
    at = float(args.go.read_text())
    results: list[dict[str, Any]] = []

    def one(run_id: str) -> None:
        while time.time() < at:
            time.sleep(0.0005)
        try:
            run = agent.resume(run_id, answer="yes", actor="racer") if paused[run_id] else agent.resume(run_id)
            results.append({"run_id": run_id, "status": run.status})
        except Exception as exc:  # reported, and judged by the test
            results.append({"run_id": run_id, "error": type(exc).__name__, "message": str(exc)})

    threads = [threading.Thread(target=one, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        print(json.dumps(r), flush=True)


def spawn(args: argparse.Namespace) -> None:
    """Start ``--runs`` runs at once, each in its own thread; the test SIGKILLs this process."""
    store = clew.open(args.url)
    agent = _scenario.make_agent(store, args.effects, interactive=False, worker_id="spawner", lease_ttl=args.lease)

    def one(i: int) -> None:
        time.sleep(i * 0.01)  # staggered: at the kill, the runs are at every stage
        agent.start(_scenario.initial(f"bulk-{i}"), run_id=f"bulk-{i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("all done before the kill", flush=True)


def recover(args: argparse.Namespace) -> None:
    """Finish dead runs until none is left; print one JSON line per run this worker returned."""
    store = clew.open(args.url)
    agent = _scenario.make_agent(store, args.effects, interactive=False, worker_id=args.worker, lease_ttl=args.lease)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            runs = agent.recover(limit=1)
        except (ConflictError, RunLockedError) as exc:  # another worker took it over
            print(json.dumps({"conflict": type(exc).__name__}), flush=True)
            continue
        for run in runs:
            print(json.dumps({"run_id": run.run_id, "status": run.status}), flush=True)
        if not runs:
            if not store.list_runs(agent="crashy", status="running", limit=1).items:
                return
            time.sleep(0.05)
    raise TimeoutError("runs left unfinished")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["race", "spawn", "recover"])
    p.add_argument("--url", required=True)
    p.add_argument("--effects", type=Path, required=True)
    p.add_argument("--runs", default="")
    p.add_argument("--go", type=Path, default=None)
    p.add_argument("--worker", default=None)
    p.add_argument("--lease", type=float, default=1.0)
    args = p.parse_args()
    if args.command == "spawn":
        args.runs = int(args.runs)
    {"race": race, "spawn": spawn, "recover": recover}[args.command](args)


if __name__ == "__main__":
    main()
    sys.exit(0)

"""A batch of crash trials, run as ``python -m tests.crash._batch`` from the repository root.

One long-lived process runs its trials one after the other. For each round of a
trial it forks a child (cheap: the modules are already imported) that opens the store
and drives the trial's run towards completion; the child is SIGKILLed at a random
crash point (``--kill-at``-style: the K-th store call or side effect, by itself) or
after a random delay (by this process, possibly mid-transaction). A last round without
a kill brings the run to completion. This process itself never opens a store, so
forking it is safe. One JSON line per trial goes to ``--out``; the test checks the
store afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import clew
import clew.store._postgres
import clew.store._sqlite
from tests.crash import _scenario

RECOVER_LEASE = 0.3


def child(
    url: str, effects: Path, run_id: str, worker: str, *, use_recover: bool, kill_at: int | None, err: Path
) -> int:
    """Fork a child that drives ``run_id``; returns its pid. The child writes its crash-point count to err.points."""
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        store = clew.open(url)
        _scenario.instrument(store)
        _scenario.arm(kill_at)
        did = _scenario.drive(
            store,
            effects,
            run_id,
            worker_id=worker,
            use_recover=use_recover,
            lease_ttl=RECOVER_LEASE if use_recover else 5,
        )
        Path(f"{err}.points").write_text(json.dumps({"points": _scenario.points_passed(), "did": did}))
        store.close()
    except BaseException:
        err.write_text(traceback.format_exc())
        code = 3
    os._exit(code)


def wait(pid: int, deadline: float | None = None) -> int:
    """Wait for a child; kill it at ``deadline`` (monotonic). Returns its raw wait status."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if deadline is not None and time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1]
        time.sleep(0.001)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--effects", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--trials", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    args = p.parse_args()
    work = args.out.parent / f"{args.prefix}-work"
    work.mkdir(exist_ok=True)

    # Calibrate: how many crash points and how long a whole uninterrupted run takes here.
    started = time.monotonic()
    calib = work / "calibrate"
    status = wait(
        child(
            args.url, args.effects, f"{args.prefix}-calibrate", "calibrate", use_recover=False, kill_at=None, err=calib
        )
    )
    if status != 0:
        print(calib.read_text() if calib.exists() else f"calibration failed: {status}", file=sys.stderr)
        return 1
    duration = time.monotonic() - started
    total_points = json.loads(Path(f"{calib}.points").read_text())["points"]

    with args.out.open("w") as out:
        for t in range(args.trials):
            rng = random.Random(args.seed * 100_003 + t)
            run_id = f"{args.prefix}-{t}"
            use_recover = rng.random() < 0.3
            rounds: list[dict[str, Any]] = []
            consumed = 0
            for r in range(rng.choice((1, 1, 2, 3))):
                worker = f"{run_id}-w{r}" if use_recover else f"{run_id}-w"
                err = work / f"{run_id}-{r}"
                if rng.random() < 0.65:
                    k = rng.randint(1, max(2, total_points - consumed))
                    pid = child(args.url, args.effects, run_id, worker, use_recover=use_recover, kill_at=k, err=err)
                    status = wait(pid, time.monotonic() + 60)
                    spec: dict[str, Any] = {"point": k}
                    consumed += k
                else:
                    delay = rng.uniform(0, duration)
                    pid = child(args.url, args.effects, run_id, worker, use_recover=use_recover, kill_at=None, err=err)
                    status = wait(pid, time.monotonic() + delay)
                    spec = {"delay": round(delay, 4)}
                killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
                if not killed and status != 0:
                    out.write(
                        json.dumps({"run_id": run_id, "error": err.read_text() if err.exists() else status}) + "\n"
                    )
                    return 1
                rounds.append({**spec, "killed": killed})
            err = work / f"{run_id}-final"
            worker = f"{run_id}-final" if use_recover else f"{run_id}-w"
            status = wait(child(args.url, args.effects, run_id, worker, use_recover=use_recover, kill_at=None, err=err))
            if status != 0:
                out.write(json.dumps({"run_id": run_id, "error": err.read_text() if err.exists() else status}) + "\n")
                out.flush()
                return 1
            did = json.loads(Path(f"{err}.points").read_text())["did"]
            out.write(json.dumps({"run_id": run_id, "recover": use_recover, "rounds": rounds, "final": did}) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

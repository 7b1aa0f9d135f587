"""A worker process for the conformance suite's crash, race and lease tests.

Run as a script with ``PYTHONPATH=src`` (it imports only clew)::

    python tests/helpers/child.py crash URL RUN_ID
    python tests/helpers/child.py race  URL RUN_ID DIR NAME ROUNDS
    python tests/helpers/child.py claim URL DIR NAME

``crash`` commits forever, printing each committed step, until it is killed.
``race`` and ``claim`` open the store, touch ``DIR/ready-<NAME>``, then wait. ``race``
waits for ``DIR/go-<round>`` (which holds the parent checkpoint id), commits
on it at once and writes ``DIR/result-<round>-<NAME>``. ``claim`` waits for ``DIR/go``
and claims expired runs until none are left, then prints the ids it got as JSON.
Files are the barrier: both children see the go file within a millisecond.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import clew
from clew.errors import ConflictError


def crash_state(step: int) -> dict[str, Any]:
    """The state after ``step``: checkable from its own content."""
    return {
        "step": step,
        "messages": [{"i": i, "content": f"message {i} " + "lorem ipsum dolor " * (i % 7)} for i in range(step + 1)],
        "scratch": {"last": step, "digits": str(step) * (step % 50)},
    }


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.0005)


def _ready(where: Path, name: str) -> None:
    (where / f"ready-{name}").touch()


def crash(url: str, run_id: str) -> None:
    store = clew.open(url)
    head = store.get_branch(run_id).head
    step = store.get_checkpoint(run_id, head).metadata["step"] if head else -1
    while True:
        step += 1
        store.append_journal(run_id, [("tool", {"step": step, "phase": "intent"})])
        head = store.commit(
            run_id,
            state=crash_state(step),
            parent=head,
            metadata={"step": step},
            journal=[("tool", {"step": step, "phase": "outcome"})],
        ).checkpoint_id
        print(step, flush=True)


def race(url: str, run_id: str, where: str, name: str, rounds: int) -> None:
    store = clew.open(url)
    base = Path(where)
    _ready(base, name)
    for r in range(rounds):
        go = base / f"go-{r}"
        _wait_for(go)
        parent = go.read_text() or None
        try:
            cid = store.commit(
                run_id,
                state={"round": r, "writer": name, "log": [name] * (r + 1)},
                parent=parent,
                metadata={"writer": name},
            ).checkpoint_id
            result: dict[str, Any] = {"won": cid}
        except ConflictError as exc:
            result = {"lost": type(exc).__name__, "message": str(exc)}
        tmp = base / f".result-{r}-{name}"
        tmp.write_text(json.dumps(result))
        os.replace(tmp, base / f"result-{r}-{name}")
    store.close()


def claim(url: str, where: str, name: str) -> None:
    store = clew.open(url)
    _ready(Path(where), name)
    _wait_for(Path(where) / "go")
    got: list[str] = []
    while True:
        runs = store.claim_expired(owner=name, ttl=60, limit=2)
        if not runs:
            break
        got.extend(r.run_id for r in runs)
    store.close()
    print(json.dumps(got), flush=True)


def main(argv: list[str]) -> None:
    cmd, *args = argv
    if cmd == "crash":
        crash(*args)
    elif cmd == "race":
        race(args[0], args[1], args[2], args[3], int(args[4]))
    elif cmd == "claim":
        claim(*args)
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

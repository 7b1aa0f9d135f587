"""A worker process for the restart tests: ``python -m tests.postgres._worker URL EFFECTS NAME RUN_IDS``.

It starts its own runs, then recovers any run whose worker lost it, until every run of
the test is completed. A store error (the server restarting or down) is logged and
backed off from, never fatal. Each step makes one non-idempotent call ("charge") that
records its effect in EFFECTS under its idempotency key, the way a payment service
would; a call whose outcome was lost is reconciled by asking that "service".
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import clew
from clew.errors import ConflictError, StoreError

STEPS = 8
log = logging.getLogger("clew.test.worker")


def charge(effects: Path, key: str, run_id: str, i: int) -> str:
    result = f"charged {run_id}/{i}"
    try:
        fd = os.open(effects / key, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # the same charge made twice: the test fails on this file
        (effects / f"DUPLICATE-{key}-{time.time_ns()}").write_text(result)
        return result
    os.write(fd, result.encode())
    os.close(fd)
    return result


def make_agent(store: clew.Store, effects: Path, name: str) -> clew.Agent[Any]:
    agent = clew.Agent("restarts", state=dict, store=store, worker_id=name, lease_ttl=2)

    def reconcile(info: clew.CallInfo) -> str:
        done = effects / info.idempotency_key
        if done.exists():
            return done.read_text()
        return charge(effects, info.idempotency_key, *info.args)  # it never happened: do it now

    @agent.step(start=True)
    def work(state: dict[str, Any], ctx: clew.Context) -> str | None:
        i = state["i"]
        out = ctx.call(
            "charge",
            lambda run_id, n: charge(effects, ctx.idempotency_key or "", run_id, n),
            ctx.run_id,
            i,
            reconcile=reconcile,
        )
        state["charges"] = [*state["charges"], out]
        time.sleep(0.1)
        state["i"] = i + 1
        return "work" if i + 1 < STEPS else None

    return agent


def main(url: str, effects: Path, name: str, run_ids: list[str], every: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(name)s %(message)s", stream=sys.stdout)
    store = clew.open(url)
    agent = make_agent(store, effects, name)
    todo = list(run_ids)
    while True:
        try:
            while todo:
                try:
                    agent.start({"i": 0, "charges": []}, run_id=todo[0])
                except ConflictError:
                    pass  # made before the store failed: recover() finishes it
                todo.pop(0)
            agent.recover()
            if all(store.get_run(r).status == "completed" for r in every):
                return
            time.sleep(0.2)
        except StoreError as exc:  # the server is restarting or down: back off and carry on
            log.warning("store unavailable (%s: %s); backing off", type(exc).__name__, exc)
            time.sleep(0.5)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4].split(","), sys.argv[5].split(","))

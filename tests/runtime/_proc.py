"""Agents shared by a test and the child processes it starts (``python -c``), and the helper to start them.

A child imports this module by its package path from the repository root, so the
state classes have the same names (``module:qualname``) in both processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pydantic import BaseModel

import clew

ROOT = Path(__file__).resolve().parents[2]


class Order(BaseModel):
    item: str
    charged: str | None = None
    approved_by: str | None = None
    shipped: bool = False


def effects_log(path: Path, name: str, key: str | None) -> None:
    """Append one side effect to a file shared by processes (one write: atomic under O_APPEND)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name} {key} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def effects(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [(ln.split()[0], ln.split()[1]) for ln in path.read_text().splitlines() if ln.strip()]


def order_agent(
    store: clew.Store, log: Path, *, hang: Path | None = None, reconcile: bool = False, **options: object
) -> clew.Agent[Order]:
    """charge (non-idempotent) -> review (interrupt) -> ship.

    With ``hang``, the charge tool writes its side effect, touches ``hang`` and sleeps:
    a process killed then leaves the call's intent without its outcome. With
    ``reconcile``, a lost outcome is found by looking the idempotency key up in ``log``.
    """
    agent = clew.Agent("orders", state=Order, store=store, **options)  # type: ignore[arg-type]

    @agent.step(start=True)
    def charge(state: Order, ctx: clew.Context) -> str:
        def card(item: str) -> str:
            effects_log(log, "charge", ctx.idempotency_key)
            if hang is not None:
                hang.touch()
                time.sleep(60)
            return f"receipt-{item}"

        def lookup(info: clew.CallInfo) -> str:
            if not any(key == info.idempotency_key for _, key in effects(log)):
                return card(*info.args)  # it never happened: do it now, under the same key
            return f"receipt-{info.args[0]}"

        state.charged = ctx.call("card", card, state.item, reconcile=lookup if reconcile else None)
        return "review"

    @agent.step
    def review(state: Order, ctx: clew.Context) -> str:
        state.approved_by = ctx.interrupt({"approve": state.item})["by"]
        return "ship"

    @agent.step
    def ship(state: Order, ctx: clew.Context) -> None:
        state.shipped = True

    return agent


def child(code: str, url: str, **env: str) -> subprocess.Popen[bytes]:
    """Start ``python -c code`` in the repository root with ``URL`` (and ``env``) set."""
    prelude = "import os, sys\nfrom pathlib import Path\nimport clew\nURL = os.environ['URL']\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, "URL": url, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err.decode()}"
    return out.decode()


def kill_when(proc: subprocess.Popen[bytes], marker: Path, timeout: float = 30) -> None:
    """SIGKILL ``proc`` as soon as ``marker`` exists."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early ({proc.returncode}): {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child never reached the marker")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.communicate()

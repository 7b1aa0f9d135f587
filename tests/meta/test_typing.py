"""User code type-checks under ``mypy --strict``: the public API's types are what a user expects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

USER_CODE = """
from typing import assert_type

from pydantic import BaseModel

import clew


class Ticket(BaseModel):
    text: str = ""


store = clew.open("memory://")
agent = clew.Agent("typed", state=Ticket, store=store)


@agent.step(start=True)
def go(state: Ticket, ctx: clew.Context) -> str | None:
    state.text = ctx.call("t", lambda: "x")
    return None


run = agent.start(Ticket())
assert_type(run, clew.Run[Ticket])
forked = agent.fork(run.checkpoint_id, branch="b")
assert_type(forked, clew.Run[Ticket])
print(forked.status, forked.state.text)
rid = agent.fork(run.checkpoint_id, branch="c", run=False)
assert_type(rid, str)
flag: bool = bool(len(rid))
either = agent.fork(run.checkpoint_id, branch="d", run=flag)
assert_type(either, clew.Run[Ticket] | str)
assert_type(agent.replay(run.checkpoint_id, branch="e"), clew.Run[Ticket])


async def main(astore: clew.AsyncStore) -> None:
    aagent = clew.Agent("typed", state=Ticket, store=astore)
    arun = await aagent.afork("x", branch="b")
    assert_type(arun, clew.Run[Ticket])
    assert_type(await aagent.afork("x", branch="c", run=False), str)
"""


def test_user_code_passes_mypy_strict(tmp_path: Path) -> None:
    (tmp_path / "user_code.py").write_text(USER_CODE)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-version", "3.11", "user_code.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr

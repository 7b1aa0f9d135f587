"""The runtime logs what happens to runs under the ``clew`` logger, through standard logging."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import clew


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("clew")]


def test_runs_log_their_life(store: clew.Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clew")
    agent = clew.Agent("logged", state=dict, store=store)
    flaky = {"left": 1}

    def tool() -> str:
        if flaky["left"]:
            flaky["left"] -= 1
            raise ConnectionError("blip")
        return "ok"

    @agent.step(start=True)
    def ask(state: dict, ctx: clew.Context) -> str:
        state["tool"] = ctx.call("tool", tool, retry=clew.Retry(attempts=2, backoff=0))
        state["answer"] = ctx.interrupt("ok?")
        return "end"

    @agent.step
    def end(state: dict, ctx: clew.Context) -> None:
        if state["answer"] == "boom":
            raise ValueError("bad answer")

    run = agent.start({}, run_id="log-1")
    assert run.status == "paused"
    failed = agent.resume("log-1", answer="boom", actor="ann")
    assert failed.status == "failed"
    got = "\n".join(messages(caplog))
    assert "run log-1 started (agent logged)" in got
    assert "call" in got and "tool#0 failed (attempt 1: ConnectionError); retrying" in got
    assert "run log-1 paused" in got
    assert "run log-1 resumed (agent logged, branch main, actor ann)" in got
    assert "run log-1 failed (agent logged, branch main): builtins.ValueError: bad answer" in got
    assert any(r.levelno == logging.WARNING and "failed" in r.getMessage() for r in caplog.records)


def test_recovery_and_queue_are_logged(store: clew.Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clew")
    agent = clew.Agent("logged", state=dict, store=store)
    agent.step(start=True)(lambda state, ctx: None)
    rid = agent.enqueue({"n": 1})
    [done] = agent.recover()
    assert done.run_id == rid and done.status == "completed"
    got = "\n".join(messages(caplog))
    assert f"run {rid} queued" in got and f"run {rid} (branch main) recovered by {agent.worker_id}" in got
    assert f"run {rid} completed" in got


def test_silent_unless_configured(tmp_path: object) -> None:
    code = (
        "import clew\n"
        "agent = clew.Agent('quiet', state=dict, store=clew.open('memory://'))\n"
        "@agent.step(start=True)\n"
        "def boom(state, ctx):\n"
        "    raise ValueError('x')\n"
        "assert agent.start({}).status == 'failed'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""  # a failed run logs a warning, but no handler is configured

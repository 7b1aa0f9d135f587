"""Fixtures of the privacy suite: keyrings, and a run that spreads a marker everywhere it can."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import pytest

import clew
from clew.codec import Codec, Keyring


@pytest.fixture
def keyring() -> Keyring:
    return Keyring({"k1": Keyring.generate()})


@pytest.fixture
def marker() -> str:
    return f"MARKER-{uuid.uuid4().hex[:16]}"


def spread(store: clew.Store, marker: str, run_id: str = "r", *, subject: str | None = None) -> None:
    """A run that puts ``marker`` in a state field (small and zstd-sized), a tool call's input and
    result, an interrupt payload, the answer, a retried step's error message, a label and run
    metadata: every place a user's data can reach."""
    agent = clew.Agent("spread", state=dict, store=store)
    tries = {"n": 0}

    @agent.step(start=True, retry=clew.Retry(attempts=2, backoff=0))
    def gather(state: dict[str, Any], ctx: clew.Context) -> str:
        state["note"] = marker
        state["history"] = [f"line {i}: {marker} said hello again" for i in range(200)]
        state["found"] = ctx.call("lookup", lambda q: {"hit": q}, f"who is {marker}")
        tries["n"] += 1
        if tries["n"] == 1:
            raise ValueError(f"customer {marker} not found")
        state["answer"] = ctx.interrupt({"confirm": marker})
        return "done"

    @agent.step
    def done(state: dict[str, Any], ctx: clew.Context) -> None:
        return None

    run = agent.start({}, run_id=run_id, labels={"ticket": marker}, subject=subject or f"subject-of-{marker}")
    assert run.status == "paused"
    assert agent.resume(run_id, answer=f"yes, {marker}").status == "completed"
    store.update_run(run_id, metadata={**store.get_run(run_id).metadata, "note": marker})


def encrypted_codec(keyring: Keyring, **options: Any) -> Codec:
    return Codec(keyring=keyring, **options)


@pytest.fixture
def compile_default_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new SQLite connection starts with secure_delete off, as upstream SQLite builds do
    (Debian's turns it on): clew must turn it on itself."""
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real(*args, **kwargs)
        conn.execute("PRAGMA secure_delete=OFF")
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)

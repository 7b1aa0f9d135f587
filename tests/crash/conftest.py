"""Shared parts of the crash suite: trial counts, the reference run, the per-run checks."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clew
from tests.crash import _scenario

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TRIALS = {"sqlite": 100, "postgres": 40}


def trials(backend: str) -> int:
    """Trials per backend: the default, times ``CLEW_CRASH_TRIALS`` (a multiplier, e.g. ``4``)."""
    factor = float(os.environ.get("CLEW_CRASH_TRIALS", "1") or "1")
    return max(1, round(DEFAULT_TRIALS[backend] * factor))


def module(name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """Start ``python -m tests.crash.<name> args...`` in the repository root."""
    return subprocess.Popen(
        [sys.executable, "-m", f"tests.crash.{name}", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@dataclass(frozen=True)
class Reference:
    """What an uninterrupted run does."""

    state: dict[str, Any]
    steps: list[str]
    keys: dict[str, int]  # tool -> distinct idempotency keys


def reference(tmp: Path, *, interactive: bool = True) -> Reference:
    effects = tmp / "reference-effects"
    effects.mkdir(parents=True, exist_ok=True)
    with clew.open("memory://") as store:
        assert "resume" not in _scenario.drive(store, effects, "ref", worker_id="ref", interactive=interactive)
        head = store.get_branch("ref").head
        assert head is not None
        history = store.list_checkpoints("ref", limit=1000).items
        state = _scenario.make_agent(store, effects).state_at(head)
    per_key = _scenario.Effects(effects, "ref").per_key()
    assert all(n == 1 for counts in per_key.values() for n in counts.values())
    return Reference(
        state=state.model_dump(),
        steps=[c.metadata["step"] for c in reversed(history) if c.kind == "step"],
        keys={tool: len(counts) for tool, counts in per_key.items() if not tool.endswith("!")},
    )


def check_run(store: clew.Store, effects: Path, run_id: str, ref: Reference) -> Counter[str]:
    """Everything a crashed-and-resumed run must satisfy; returns the kinds of its checkpoints."""
    record = store.get_run(run_id)
    assert record.status == "completed", (run_id, record)
    # (a lease may outlive the run: a worker killed between its last commit and releasing it)
    head = store.get_branch(run_id).head
    assert head is not None
    agent = _scenario.make_agent(store, effects)
    # The final state equals an uninterrupted run's.
    assert agent.state_at(head).model_dump() == ref.state, run_id
    # No checkpoint lost or duplicated: a clean chain, each step's checkpoint once, in order.
    history = store.list_checkpoints(run_id, limit=1000).items
    for newer, older in itertools.pairwise(history):
        assert newer.parent_id == older.checkpoint_id and newer.seq > older.seq, run_id
    assert history[-1].parent_id is None and history[-1].kind == "start", run_id
    oldest_first = list(reversed(history))
    assert [c.metadata["step"] for c in oldest_first if c.kind == "step"] == ref.steps, run_id
    kinds = Counter(c.kind for c in history)
    assert kinds["start"] == 1 and kinds["interrupt"] == (1 if "review" in ref.steps else 0), (run_id, kinds)
    assert set(kinds) <= {"start", "step", "interrupt", "unknown_outcome"}, (run_id, kinds)
    assert len({c.checkpoint_id for c in history}) == len(history)
    # Every byte checks out, and nothing is left pending.
    report = store.verify(run_id)
    assert report.ok, (run_id, report.problems)
    assert store.list_journal(run_id, pending_on="main") == [], run_id
    # Every non-idempotent call ran exactly once; idempotent ones kept their key across crashes.
    per_key = _scenario.Effects(effects, run_id).per_key()
    journal_keys = {  # an intent names its key; so does an idempotent call's one entry with_checkpoint
        e.data["idempotency_key"]
        for e in store.list_journal(run_id)
        if e.kind in ("call.intent", "call.outcome") and "idempotency_key" in e.data
    }
    for tool, distinct in ref.keys.items():
        seen = per_key.get(tool, Counter())
        assert len(seen) == distinct, (run_id, tool, seen)
        if tool in _scenario.NON_IDEMPOTENT:
            assert set(seen.values()) == {1}, (run_id, tool, seen)
        assert set(seen) <= journal_keys, (run_id, tool)
    kinds["stale_refused"] = sum(sum(c.values()) for t, c in per_key.items() if t.endswith("~stale"))
    return kinds

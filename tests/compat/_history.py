"""A deterministic history for the release-compatibility test, written with the public API only.

``tests/compat/release-0.1.db`` was made by running :func:`write` with clew 0.1 (the
format before trees of maps): ``python -m tests.compat._history PATH`` under that
release. The test reads the file with the current code and compares every checkpoint
with :func:`expected`.
"""

from __future__ import annotations

import random
import sys
from typing import Any

RUN_ID = "compat-run"
STEPS = 30
FORK_AT = 12


def _text(rnd: random.Random, n: int) -> str:
    words = ["refund", "order", "invoice", "the", "a", "customer"]
    words += ["billing", "status", "policy", "search", "result", "answer"]
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < n:
        out.append(rnd.choice(words) if rnd.random() > 0.1 else f"#{rnd.randint(1000, 99999)}")
    return " ".join(out)[:n]


def states() -> list[tuple[str, int | None, dict[str, Any], list[tuple[str, Any]]]]:
    """``(branch, parent index, state, journal)`` of each checkpoint, in commit order."""
    rnd = random.Random(2024)
    out: list[tuple[str, int | None, dict[str, Any], list[tuple[str, Any]]]] = []
    messages: list[Any] = []
    results: dict[str, Any] = {}
    for step in range(STEPS):
        messages = [
            *messages,
            {"role": "user", "content": _text(rnd, 300)},
            {"role": "assistant", "content": _text(rnd, 300)},
        ]
        results = {**results, f"call-{step:03d}": {"output": _text(rnd, 600), "step": step}}
        state = {
            "messages": messages,
            "results": results,  # grows past 4 KB: a tree in the new format, one blob in the old
            "profile": {"name": "Ada", "tags": ["vip", "eu"], "since": step // 10},
            "step": step,
        }
        journal = [("call", {"tool": "kb", "args": [step], "result": results[f"call-{step:03d}"]})]
        out.append(("main", step - 1 if step else None, state, journal))
    forked = dict(out[FORK_AT][2])
    forked["profile"] = {"name": "Ada", "tags": ["vip"], "since": 99}
    out.append(("alt", FORK_AT, forked, [("edit", {"actor": "ops", "reason": "test"})]))
    return out


def write(store: Any) -> list[str]:
    """Commit :func:`states` to ``store``; the checkpoint ids in the same order."""
    store.create_run(RUN_ID, agent="compat")
    ids: list[str] = []
    for branch, parent, state, journal in states():
        if branch != "main" and branch not in {b.name for b in store.list_branches(RUN_ID)}:
            store.fork(RUN_ID, checkpoint_id=ids[parent], branch=branch)  # type: ignore[index]
        if branch == "main" and journal:
            store.append_journal(RUN_ID, branch=branch, entries=journal[:1])
            journal = []
        ids.append(
            store.commit(
                RUN_ID,
                branch=branch,
                parent=ids[parent] if parent is not None else None,
                state=state,
                journal=journal,
                metadata={"n": len(ids)},
            ).checkpoint_id
        )
    return ids


if __name__ == "__main__":
    import clew

    with clew.open(f"sqlite:///{sys.argv[1]}") as s:
        write(s)

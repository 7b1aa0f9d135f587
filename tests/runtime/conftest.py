"""Helpers of the runtime suite: tools that count their side effects, simulated crashes."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import clew


class SimulatedCrash(BaseException):
    """Raised inside a step or tool to stop a run dead, the way a killed process would.

    It is a ``BaseException`` so that neither the step's retry policy nor the call's
    catches it: the intent of the call in flight stays in the journal without its
    outcome, as after a SIGKILL (the tests in ``tests/crash/`` kill real processes).
    """


class Tools:
    """Fake external services: every call is recorded with its ``ctx.idempotency_key``."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any, str | None]] = []
        self.ctx: clew.Context | None = None
        self._lock = threading.Lock()

    def record(self, name: str, arg: Any = None) -> None:
        key = self.ctx.idempotency_key if self.ctx is not None else None
        with self._lock:
            self.log.append((name, arg, key))

    def count(self, name: str | None = None) -> int:
        return sum(1 for n, _, _ in self.log if name is None or n == name)

    def keys(self, name: str) -> list[str | None]:
        return [k for n, _, k in self.log if n == name]

    def counts(self) -> Counter[str]:
        return Counter(n for n, _, _ in self.log)

    def tool(self, name: str, result: Callable[[Any], Any] | None = None) -> Callable[..., Any]:
        """A tool that records its call and returns ``result(arg)`` (``f"{name}:{arg}"`` by default)."""

        def fn(arg: Any = None) -> Any:
            self.record(name, arg)
            return result(arg) if result else f"{name}:{arg}"

        fn.__name__ = name
        return fn


@pytest.fixture
def tools() -> Tools:
    return Tools()


def kinds(history: list[clew.CheckpointRecord]) -> list[tuple[str, Any]]:
    """(kind, step) of each checkpoint, oldest first."""
    return [(c.kind, c.metadata.get("step")) for c in reversed(history)]


def journal(store: clew.Store, run_id: str, kind: str | None = None) -> list[clew.JournalEntry]:
    return [e for e in store.list_journal(run_id) if kind is None or e.kind == kind]


def assert_chain(history: list[clew.CheckpointRecord]) -> None:
    """Newest first, each checkpoint's parent is the next one, seqs strictly decrease."""
    for newer, older in itertools.pairwise(history):
        assert newer.parent_id == older.checkpoint_id
        assert newer.seq > older.seq
    assert history[-1].parent_id is None

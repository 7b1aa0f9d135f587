"""Counting what a store sends: statements, batches (round trips on PostgreSQL), transactions."""

from __future__ import annotations

from typing import Any

import clew


class Counter:
    """Wraps ``store._execute`` (every operation goes through it) and counts.

    A batch is what an operation yields at once: one round trip on PostgreSQL, whose
    runner pipelines it. An ``executemany`` counts as one statement.
    """

    def __init__(self, store: clew.Store) -> None:
        self.statements = self.batches = self.transactions = 0
        self.names: list[str] = []
        self.sql: list[str] = []
        real = store._execute  # type: ignore[attr-defined]

        def execute(op: Any, *, write: bool) -> Any:
            def counted() -> Any:
                answer = None
                sent = False
                while True:
                    try:
                        q = op.send(answer) if sent else next(op)
                    except StopIteration as stop:
                        return stop.value
                    sent = True
                    batch = q if isinstance(q, list) else [q]
                    self.statements += len(batch)
                    self.batches += 1
                    self.names.extend(one.sql.split()[0] for one in batch)
                    self.sql.extend(one.sql for one in batch)
                    answer = yield q

            self.transactions += 1
            return real(counted(), write=write)

        store._execute = execute  # type: ignore[attr-defined, method-assign]

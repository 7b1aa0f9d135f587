"""Every statement clew sends is scoped to one run by its key, except a named few.

The schema is keyed by the run first (``rk``) so that it can be distributed by run
(Citus, or any sharded PostgreSQL) without change: a statement that names one run's
key goes to one shard. This test holds every statement of both dialects to that, and
names the few that look across runs, with why.
"""

from __future__ import annotations

import re

import pytest

from clew.store._sql import POSTGRES_DIALECT, SQLITE_DIALECT

RUN_TABLES = re.compile(r"\bclew_(runs|branches|checkpoints|blobs|journal)\b")
BY_RUN_KEY = re.compile(r"\brk\s*=\s*(\?|%s|clew_runs\.rk)")
INSERT_BY_RUN_KEY = re.compile(r"^\s*INSERT INTO clew_\w+\s*\(\s*rk\b")

ACROSS_RUNS = {
    "run_key": "a run id to its key: clew_runs is small and can be a reference table",
    "get_run": "by run id, as run_key",
    "insert_run": "makes the key",
    "label_clause": "a filter of list_runs, which lists across runs by design",
    "find_checkpoint": "a checkpoint by id alone, through its own index: one query to every shard",
    "claim_expired": "recovery looks for expired leases in every run: one query to every shard",
    "live_leases": "an agent's running branches with a live lease (max_running): one query to every shard",
}


@pytest.mark.parametrize("dialect", [SQLITE_DIALECT, POSTGRES_DIALECT], ids=lambda d: d.name)
def test_every_statement_on_run_data_names_one_run(dialect: object) -> None:
    loose = []
    for name, sql in sorted(dialect.sql.items()):  # type: ignore[attr-defined]
        if not RUN_TABLES.search(sql) or name in ACROSS_RUNS:
            continue
        if not (BY_RUN_KEY.search(sql) or INSERT_BY_RUN_KEY.search(sql)):
            loose.append(name)
    assert loose == [], f"statements not scoped to one run: {loose}; scope them by rk or list them with a reason"


def test_the_cross_run_list_names_real_statements() -> None:
    assert set(ACROSS_RUNS) <= set(SQLITE_DIALECT.sql) & set(POSTGRES_DIALECT.sql)

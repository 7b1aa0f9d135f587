"""Helpers of the PostgreSQL suite: a schema per test, an admin connection, backends to kill."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

TERMINATE = (
    "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE application_name = %s AND pid <> pg_backend_pid()"
)


def new_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def admin(server: str) -> psycopg.Connection[Any]:
    return psycopg.connect(server, autocommit=True)


def terminate(server: str, app: str) -> int:
    """Kill every server process of the connections named ``app`` and wait until they
    have exited (``pg_terminate_backend`` only signals them); returns how many."""
    with admin(server) as conn:
        pids = [row[0] for row in conn.execute(TERMINATE, (app,)).fetchall()]
        deadline = time.monotonic() + 10.0
        while pids:
            left = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()
            if not left or left[0] == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"backends {pids} still alive 10 s after pg_terminate_backend")
            time.sleep(0.01)
        return len(pids)


def table(server: str, schema: str, name: str) -> str:
    """A clew table's qualified name (tables carry a ``clew_`` prefix from schema 4 on)."""
    with admin(server) as conn:
        for candidate in (f"clew_{name}", name):
            found = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".{candidate}',)).fetchone()
            if found and found[0]:
                return f'"{schema}".{candidate}'
    raise AssertionError(f"no {name} table in schema {schema}")


def slow_commits(server: str, schema: str, seconds: float) -> None:
    """Make every COMMIT that writes a checkpoint sleep ``seconds`` (a deferred trigger runs at COMMIT)."""
    target = table(server, schema, "checkpoints")
    with admin(server) as conn:
        conn.execute(
            f'CREATE FUNCTION "{schema}".slow_commit() RETURNS trigger LANGUAGE plpgsql AS '
            f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$"
        )
        conn.execute(
            f"CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON {target} DEFERRABLE INITIALLY DEFERRED "
            f'FOR EACH ROW EXECUTE FUNCTION "{schema}".slow_commit()'
        )


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def committing(server: str, app: str) -> list[int]:
    """Server processes of ``app`` that are inside COMMIT (sleeping in the deferred trigger)."""
    with admin(server) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query = 'COMMIT' "
            "AND wait_event = 'PgSleep'",
            (app,),
        ).fetchall()
    return [r[0] for r in rows]


def busy(server: str, app: str) -> list[int]:
    """Server processes of ``app`` still running a statement (an orphaned COMMIT among them)."""
    with admin(server) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active'", (app,)
        ).fetchall()
    return [r[0] for r in rows]

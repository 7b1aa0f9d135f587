"""Limits: an exhausted pool, statement_timeout and lock_timeout from the URL, claims that never wait."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import clew
from clew.errors import StoreError, StoreUnavailableError
from tests.conftest import _drop_schema, pg_url, pgbouncer_url
from tests.postgres._support import admin, new_name, table


@pytest.fixture
def server_schema() -> Iterator[tuple[str, str]]:
    server, schema = pg_url(), new_name()
    yield server, schema
    _drop_schema(server, schema)


def _front(server: str, via: str) -> str:
    return server if via == "direct" else pgbouncer_url(via)


def _url(server: str, schema: str, via: str, extra: str = "") -> str:
    pooler = "" if via == "direct" else f"&pooler={via}"
    return f"{_front(server, via)}?schema={schema}{pooler}{extra}"


class RowLock:
    """Another transaction holding a run's row lock (as a long commit would)."""

    def __init__(self, server: str, schema: str, run_id: str, *, branch: str | None = None) -> None:
        self.conn = admin(server)
        self.conn.autocommit = False
        runs = table(server, schema, "runs")
        self.conn.execute(f"SELECT 1 FROM {runs} WHERE run_id = %s FOR UPDATE", (run_id,))
        if branch is not None:  # the lease lives on the branch's row
            branches = table(server, schema, "branches")
            self.conn.execute(
                f"SELECT 1 FROM {branches} WHERE name = %s AND rk = (SELECT rk FROM {runs} WHERE run_id = %s) "
                "FOR UPDATE",
                (branch, run_id),
            )

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def test_an_exhausted_pool_says_so_after_pool_timeout(server_schema: tuple[str, str]) -> None:
    server, schema = server_schema
    with clew.open(f"{server}?schema={schema}&pool_max=2&pool_timeout=0.5") as store:
        run = store.create_run(agent="p", state={"n": 0})
        other = store.create_run(agent="p", state={"n": 0})
        head = store.get_branch(run.run_id).head
        lock = RowLock(server, schema, run.run_id)
        results: list[Any] = []

        def commit() -> None:
            try:
                results.append(store.commit(run.run_id, state={"n": 1}, parent=head))
            except Exception as exc:
                results.append(exc)

        threads = [threading.Thread(target=commit) for _ in range(2)]
        for t in threads:
            t.start()
        # Both of the pool's connections are now waiting on the row lock.
        deadline = time.monotonic() + 10
        while store._pool.get_stats().get("pool_available", 1) and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
        with pytest.raises(StoreUnavailableError) as err:
            store.get_run(other.run_id)
        message = str(err.value)
        assert "all 2 connections" in message and "pool_max=2" in message
        assert "pool_timeout=0.5" in message and "raise pool_max" in message
        lock.release()
        for t in threads:
            t.join()
        assert sum(1 for r in results if isinstance(r, clew.CheckpointRecord)) == 1  # one won the head
        assert store.load_state(other.run_id, store.get_branch(other.run_id).head) == {"n": 0}


@pytest.mark.parametrize("via", ["direct", "transaction", "session"])
def test_statement_timeout_from_the_url_is_honoured(server_schema: tuple[str, str], via: str) -> None:
    server, schema = server_schema
    with clew.open(_url(server, schema, via, "&statement_timeout=300ms")) as store:
        run = store.create_run(agent="t", state={"n": 0})
        head = store.get_branch(run.run_id).head
        lock = RowLock(server, schema, run.run_id)
        try:
            with pytest.raises(StoreError, match="statement_timeout is 300ms"):
                store.commit(run.run_id, state={"n": 1}, parent=head)
        finally:
            lock.release()
        assert store.get_branch(run.run_id).head == head  # the last good checkpoint stays the head
        assert store.load_state(run.run_id, head) == {"n": 0}
        ckpt = store.commit(run.run_id, state={"n": 1}, parent=head)  # and the store works on
        assert store.get_branch(run.run_id).head == ckpt.checkpoint_id


@pytest.mark.parametrize("via", ["direct", "transaction", "session"])
def test_lock_timeout_from_the_url_is_honoured(server_schema: tuple[str, str], via: str) -> None:
    server, schema = server_schema
    with clew.open(_url(server, schema, via, "&lock_timeout=200ms")) as store:
        run = store.create_run(agent="t", state={"n": 0})
        head = store.get_branch(run.run_id).head
        lock = RowLock(server, schema, run.run_id)
        try:
            with pytest.raises(StoreError, match="lock_timeout 200ms"):
                store.commit(run.run_id, state={"n": 1}, parent=head)
        finally:
            lock.release()
        assert store.load_state(run.run_id, head) == {"n": 0}


def test_claim_expired_never_waits_behind_a_long_transaction(server_schema: tuple[str, str]) -> None:
    """A run whose row another transaction holds is skipped (SKIP LOCKED), not waited for."""
    server, schema = server_schema
    with clew.open(f"{server}?schema={schema}&lock_timeout=200ms") as store:
        runs = [store.create_run(agent="c", lease_owner="gone", lease_ttl=0.01) for _ in range(3)]
        time.sleep(0.05)  # every lease has expired
        lock = RowLock(server, schema, runs[0].run_id, branch="main")
        try:
            claimed = store.claim_expired(owner="me", ttl=30)  # would hit lock_timeout if it waited
        finally:
            lock.release()
        assert {r.run_id for r in claimed} == {runs[1].run_id, runs[2].run_id}
        assert {r.run_id for r in store.claim_expired(owner="me", ttl=30)} == {runs[0].run_id}


def _backends(server: str, app: str) -> set[int]:
    with admin(server) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchall()
    return {int(r[0]) for r in rows}


def test_a_connection_that_moved_a_big_value_is_replaced(server_schema: tuple[str, str]) -> None:
    """libpq keeps its buffers as big as the biggest message until the connection closes:
    after a big value went through, the pool makes a new connection instead."""
    server, schema = server_schema
    app = new_name()
    with clew.open(f"{server}?schema={schema}&pool_min=1&pool_max=1&application_name={app}") as store:
        run = store.create_run(agent="big", state={"n": 0})
        head = store.get_branch(run.run_id).head
        first = _backends(server, app)
        assert len(first) == 1
        store.get_branch(run.run_id)  # a small operation keeps its connection
        assert _backends(server, app) == first
        big = os.urandom(2 << 20)
        ckpt = store.commit(run.run_id, state={"big": big}, parent=head)
        second = _wait_for_backend(server, app, first)
        reader = clew.open(f"{server}?schema={schema}&pool_min=1&pool_max=1&application_name={app}r")
        with reader:
            before = _wait_for_backend(server, f"{app}r", set())
            assert reader.load_state(run.run_id, ckpt.checkpoint_id) == {"big": big}
            _wait_for_backend(server, f"{app}r", before)
        assert store.get_branch(run.run_id).head == ckpt.checkpoint_id
        assert _backends(server, app) == second


def _wait_for_backend(server: str, app: str, old: set[int]) -> set[int]:
    """The one backend of ``app`` once it is not one of ``old`` (the pool reconnects in the background)."""
    for _ in range(200):
        now = _backends(server, app)
        if len(now) == 1 and not now & old:
            return now
        time.sleep(0.05)
    raise AssertionError(f"backends of {app}: {_backends(server, app)}, before {old}")

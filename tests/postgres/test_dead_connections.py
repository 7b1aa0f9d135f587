"""Connections that die between operations: killed backends, idle timeouts. The user never sees it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

import clew
from tests.conftest import _drop_schema, pg_url
from tests.postgres._proxy import Relay
from tests.postgres._support import new_name, terminate


@pytest.fixture
def server_schema() -> Iterator[tuple[str, str]]:
    server, schema = pg_url(), new_name()
    yield server, schema
    _drop_schema(server, schema)


def test_backends_killed_between_operations_are_replaced_unseen(
    server_schema: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, schema = server_schema
    app = new_name("clew_kill")
    caplog.set_level(logging.WARNING, logger="clew.store")
    with clew.open(f"{server}?schema={schema}&application_name={app}&pool_max=2") as store:
        run = store.create_run(agent="kill", state={"n": 0})
        head = store.get_branch(run.run_id).head
        kills = 0
        for n in range(1, 6):
            kills += terminate(server, app)
            ckpt = store.commit(run.run_id, state={"n": n}, parent=head)  # a commit that had not started
            kills += terminate(server, app)
            assert store.load_state(run.run_id, ckpt.checkpoint_id) == {"n": n}  # a read
            kills += terminate(server, app)
            assert store.get_branch(run.run_id).head == ckpt.checkpoint_id
            head = ckpt.checkpoint_id
        assert kills >= 15  # each kill found a live backend to kill
        assert len(store.list_checkpoints(run.run_id)) == 6  # nothing written twice
        assert store.verify(run.run_id).ok
    assert "running the operation again on a fresh connection" in caplog.text


def test_async_store_replaces_killed_backends_unseen(server_schema: tuple[str, str]) -> None:
    import asyncio

    server, schema = server_schema
    app = new_name("clew_akill")

    async def main() -> None:
        store = await clew.open_async(f"{server}?schema={schema}&application_name={app}")
        try:
            run = await store.create_run(agent="kill", state={"n": 0})
            head = (await store.get_branch(run.run_id)).head
            for n in range(1, 4):
                assert terminate(server, app) >= 1
                ckpt = await store.commit(run.run_id, state={"n": n}, parent=head)
                assert terminate(server, app) >= 1
                assert await store.load_state(run.run_id, ckpt.checkpoint_id) == {"n": n}
                head = ckpt.checkpoint_id
            assert len(await store.list_checkpoints(run.run_id)) == 4
        finally:
            await store.close()

    asyncio.run(main())


def test_idle_session_timeout_of_one_second_is_survived(server_schema: tuple[str, str]) -> None:
    """The server ends sessions idle for 1 s; every operation still succeeds.

    (The server arms that timer only when a session goes idle after a query outside a
    pipeline, so not every pooled session is ended: which ones is up to timing. The
    proxy test below drops every idle connection, deterministically.)"""
    server, schema = server_schema
    url = f"{server}?schema={schema}&options=-c%20idle_session_timeout%3D1000&pool_min=2&pool_max=2"
    with clew.open(url) as store:
        run = store.create_run(agent="idle", state={"n": 0})
        head = store.get_branch(run.run_id).head
        for n in range(1, 4):
            time.sleep(1.3)  # past idle_session_timeout: the server has closed every pooled connection
            ckpt = store.commit(run.run_id, state={"n": n}, parent=head)
            time.sleep(1.3)
            assert store.load_state(run.run_id, ckpt.checkpoint_id) == {"n": n}
            head = ckpt.checkpoint_id
        # the setting is in force (on a live connection: the store's own check finds one)
        with store._health.connection(store._pool, store._usage, ping=True) as conn:  # type: ignore[attr-defined]
            assert conn.execute("SHOW idle_session_timeout").fetchone() == ("1s",)
        assert store.verify(run.run_id).ok


def test_a_proxy_dropping_idle_connections_is_survived(server_schema: tuple[str, str]) -> None:
    """Proxies and NATs (Cloud SQL, Supabase, load balancers) drop idle TCP connections silently."""
    server, schema = server_schema
    relay = Relay(server, idle_timeout=2.0)
    try:
        with clew.open(f"{relay.url}?schema={schema}&pool_min=2&pool_max=2") as store:
            run = store.create_run(agent="idle", state={"n": 0})
            head = store.get_branch(run.run_id).head
            for n in range(1, 3):
                time.sleep(2.3)
                ckpt = store.commit(run.run_id, state={"n": n}, parent=head)
                time.sleep(2.3)
                assert store.load_state(run.run_id, ckpt.checkpoint_id) == {"n": n}
                head = ckpt.checkpoint_id
            replaced = store._health.replaced  # type: ignore[attr-defined]  # found dead before use
            assert relay.dropped_idle >= 4  # the relay did drop them...
            assert replaced >= 4  # ...and the ping before use found each
            assert store.verify(run.run_id).ok
    finally:
        relay.close()


def test_keepalives_are_on_unless_the_url_says_otherwise(server_schema: tuple[str, str]) -> None:
    server, schema = server_schema
    with clew.open(f"{server}?schema={schema}") as store, store._pool.connection() as conn:  # type: ignore[attr-defined]
        assert conn.info.get_parameters().get("keepalives") == "1"
        assert conn.info.get_parameters().get("keepalives_idle") == "30"
    with clew.open(f"{server}?schema={schema}&keepalives_idle=7") as s2, s2._pool.connection() as conn:  # type: ignore[attr-defined]
        assert conn.info.get_parameters().get("keepalives_idle") == "7"

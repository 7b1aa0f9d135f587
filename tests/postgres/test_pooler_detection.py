"""A pooler found when connecting: a URL that forgot ``?pooler=`` still works through pgbouncer.

pgbouncer hands each client a cancel key of its own (it must, to route cancel
requests), so the server process named at connection is not the one that answers
``pg_backend_pid()``; a direct connection, or one through a plain TCP relay, gets the
server's own key. pgbouncer also refuses (or, told to, drops) the startup options a
direct connection sends the schema and timeouts in. Either sign switches a store with
``pooler=auto`` (the default) to transaction-mode rules, which are safe in both modes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import clew
from clew.errors import ConfigError
from tests._pg import start_pgbouncer
from tests.conftest import _drop_schema, pg_url, pgbouncer_url
from tests.postgres._proxy import Relay
from tests.postgres._support import admin, new_name, table


@pytest.fixture
def schema() -> Iterator[str]:
    name = new_name()
    yield name
    _drop_schema(pg_url(), name)


def _work(url: str, n: int = 12) -> None:
    """Two stores taking turns: more than psycopg's prepare threshold (5) of each query,
    on more server connections than one, as in transaction mode."""
    with clew.open(url, pool_max=3) as one, clew.open(url, pool_max=3) as two:
        run = one.create_run(agent="detect", state={"n": 0})
        head = one.get_branch(run.run_id).head
        for i in range(n):
            store = one if i % 2 else two
            assert head is not None
            head = store.commit(run.run_id, state={"n": i + 1}, parent=head).checkpoint_id
            assert store.load_state(run.run_id, head) == {"n": i + 1}
            store.append_journal(run.run_id, [("step", {"i": i})])
        assert two.verify(run.run_id).ok


def _rows_in(schema: str) -> int:
    with admin(pg_url()) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table(pg_url(), schema, 'runs')}").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("mode", ["transaction", "session"])
@pytest.mark.parametrize("with_schema", [True, False], ids=["schema", "no-schema"])
def test_a_pooler_is_found_when_the_url_does_not_name_it(
    mode: str, with_schema: bool, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    front = pgbouncer_url(mode)
    url = f"{front}?schema={schema}" if with_schema else front
    if not with_schema:  # tables in the public schema: make them in a database of the test's own
        with admin(pg_url()) as conn:
            conn.execute(f'CREATE DATABASE "{schema}"')
        url = f"{front.rsplit('/', 1)[0]}/{schema}"
    try:
        with caplog.at_level(logging.INFO, logger="clew.store"), clew.open(url) as store:
            assert store.opts.pooler == "transaction"
        assert "through a connection pooler" in caplog.text and "?pooler=transaction" in caplog.text
        _work(url)
        if with_schema:
            assert _rows_in(schema) == 1  # the schema was honoured through the pooler
    finally:
        if not with_schema:
            with admin(pg_url()) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{schema}" WITH (FORCE)')


def test_a_pooler_that_drops_startup_options_is_found_and_the_schema_honoured(schema: str) -> None:
    """Told to ignore the ``options`` startup parameter, pgbouncer connects without a word,
    and a store that sent its schema there would write to ``public``."""
    front = start_pgbouncer(pg_url(), "transaction", ignore_startup_parameters="options")
    url = f"{front}?schema={schema}"
    with clew.open(url) as store:
        assert store.opts.pooler == "transaction"
    _work(url)
    assert _rows_in(schema) == 1


def test_a_direct_server_and_a_tcp_relay_are_not_taken_for_poolers(schema: str) -> None:
    relay = Relay(pg_url())
    try:
        for front in (pg_url(), relay.url):
            with clew.open(f"{front}?schema={schema}") as store:
                assert store.opts.pooler == "auto" and store.opts.direct  # settings go in the startup packet
                run = store.create_run(agent="direct", state={"n": 1})
                assert store.load_state(run.run_id, store.get_branch(run.run_id).head) == {"n": 1}
    finally:
        relay.close()


def test_saying_pooler_none_to_a_pooler_names_the_fix(schema: str) -> None:
    with pytest.raises(ConfigError, match=r"unsupported startup parameter.*add \?pooler=transaction"):
        clew.open(f"{pgbouncer_url('transaction')}?schema={schema}&pooler=none")


async def test_the_async_store_finds_a_pooler_too(schema: str) -> None:
    store = await clew.open_async(f"{pgbouncer_url('transaction')}?schema={schema}")
    try:
        assert store.opts.pooler == "transaction"
        run = await store.create_run(agent="detect", state={"n": 1})
        head = (await store.get_branch(run.run_id)).head
        assert head is not None and await store.load_state(run.run_id, head) == {"n": 1}
    finally:
        await store.close()

"""Store URLs: libpq's options pass through, clew's are taken out, unknown ones are refused;
SQLite's mode=ro; $CLEW_URL."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import clew
from clew.errors import ConfigError, SchemaVersionError, StoreError, StoreUnavailableError
from tests.conftest import _drop_schema, pg_url


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    import uuid

    server, schema = pg_url(), f"t_{uuid.uuid4().hex[:12]}"
    yield server, schema
    _drop_schema(server, schema)


def _session(store: clew.Store, sql: str) -> object:
    with store._pool.connection() as conn, conn.transaction():  # type: ignore[attr-defined]  # the store's own
        return conn.execute(sql).fetchone()[0]


# -- PostgreSQL -------------------------------------------------------------------


def test_libpq_options_pass_through(pg_schema: tuple[str, str]) -> None:
    server, schema = pg_schema
    url = (
        f"{server}?schema={schema}&sslmode=disable&application_name=clew-urls&connect_timeout=5"
        "&options=-c%20work_mem%3D7MB"
    )
    with clew.open(url) as store:
        run = store.create_run(agent="u", state={"n": 1})
        assert _session(store, "SHOW application_name") == "clew-urls"
        assert _session(store, "SHOW work_mem") == "7MB"  # the user's options, next to clew's search_path
        assert _session(store, "SHOW search_path") == schema
        # The store's URL opens it again, every option kept.
        with clew.open(store.url) as again:
            assert again.get_run(run.run_id).agent == "u"
            assert _session(again, "SHOW application_name") == "clew-urls"


def test_sslmode_require_reaches_libpq(pg_schema: tuple[str, str]) -> None:
    server, schema = pg_schema
    probe = pg_url()
    import psycopg

    with psycopg.connect(probe) as conn:
        ssl_on = conn.execute("SHOW ssl").fetchone()[0] == "on"  # type: ignore[index]
    if ssl_on:
        with clew.open(f"{server}?schema={schema}&sslmode=require") as store:
            assert store.create_run(agent="u").agent == "u"
    else:  # libpq refuses the server without SSL: the option did reach it
        with pytest.raises(StoreUnavailableError, match="SSL"):
            clew.open(f"{server}?schema={schema}&sslmode=require")


def test_async_open_takes_the_same_options(pg_schema: tuple[str, str]) -> None:
    import asyncio

    server, schema = pg_schema

    async def main() -> None:
        store = await clew.open_async(f"{server}?schema={schema}&application_name=clew-async&pool_max=3")
        try:
            run = await store.create_run(agent="a")
            assert (await store.get_run(run.run_id)).agent == "a"
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("pool_maxx=3", 'invalid URI query parameter: "pool_maxx"'),
        ("pool_max=abc", "pool_max='abc' must be a whole number"),
        ("pool_max=0", "must be at least 1"),
        ("pool_min=5&pool_max=2", "pool_min=5 is more than pool_max=2"),
        ("pool_timeout=-1", "more than 0 seconds"),
        ("pooler=bouncy", "pooler='bouncy' must be one of auto, none, session, transaction"),
        ("statement_timeout=soon", "must be a duration"),
        ("lock_timeout=5%20parsecs", "must be a duration"),
        ("mode=rx", "mode='rx' must be 'ro'"),
        ("schema=no-dashes", "letters, digits and underscores"),
        ("replica=mysql://x", "must be a postgresql:// URL"),
        ("sslmode=sometimes", "sslmode"),
    ],
)
def test_bad_postgres_options_are_config_errors(query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")) as err:
        clew.open(f"postgresql://postgres@127.0.0.1:1/x?{query}")
    if "pool_maxx" in query:
        assert "clew's own options are schema, pool_min, pool_max" in str(err.value)


def test_unknown_keyword_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown PostgreSQL store option.*pool_size"):
        clew.open("postgresql://postgres@127.0.0.1:1/x", pool_size=3)
    with pytest.raises(ConfigError, match=r"unknown option.*journal"):
        clew.open("memory://", journal="wal")


def test_a_pooler_refusing_startup_options_is_named(pg_schema: tuple[str, str]) -> None:
    from tests.conftest import pgbouncer_url

    _, schema = pg_schema
    with pytest.raises(ConfigError, match=r"add \?pooler=transaction"):
        clew.open(f"{pgbouncer_url('transaction')}?schema={schema}&pooler=none")
    with clew.open(f"{pgbouncer_url('transaction')}?schema={schema}") as store:  # pooler=auto finds it
        assert store.opts.pooler == "transaction"


def test_read_only_postgres_never_creates_nor_writes(pg_schema: tuple[str, str]) -> None:
    server, schema = pg_schema
    with pytest.raises(StoreError, match=r"no clew tables.*never creates them"):
        clew.open(f"{server}?schema={schema}&mode=ro")
    import psycopg

    with psycopg.connect(server) as conn:
        found = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        assert found is not None and found[0] == 0  # the mistyped schema was not created
    with clew.open(f"{server}?schema={schema}") as store:
        run = store.create_run(agent="ro", state={"n": 1})
    with clew.open(f"{server}?schema={schema}&mode=ro") as ro:
        head = ro.get_branch(run.run_id).head
        assert ro.load_state(run.run_id, head) == {"n": 1}
        with pytest.raises(ConfigError, match="read-only"):
            ro.create_run(agent="nope")


def test_read_only_stores_read_from_the_replica(pg_schema: tuple[str, str]) -> None:
    """Read commands go to ``replica=``; writes stay on the primary. Here the "replica" is
    the same server reached under another application_name, to see which one answers."""
    from urllib.parse import quote

    server, schema = pg_schema
    with clew.open(f"{server}?schema={schema}") as store:
        run = store.create_run(agent="r", state={"n": 1})
    replica = quote(f"{server}?application_name=clew-replica", safe="")
    with clew.open(f"{server}?schema={schema}&mode=ro&replica={replica}") as ro:
        assert ro.get_run(run.run_id).agent == "r"
        assert _session(ro, "SHOW application_name") == "clew-replica"
        assert _session(ro, "SHOW transaction_read_only") == "on"
    with clew.open(f"{server}?schema={schema}&replica={replica}") as rw:  # not read-only: the primary
        assert _session(rw, "SHOW application_name") != "clew-replica"


# -- SQLite -----------------------------------------------------------------------


def test_sqlite_busy_timeout_must_be_a_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"busy_timeout='abc'.*number of seconds"):
        clew.open(f"sqlite:///{tmp_path}/x.db?busy_timeout=abc")
    assert not (tmp_path / "x.db").exists()
    with clew.open(f"sqlite:///{tmp_path}/x.db?busy_timeout=2.5&synchronous=full") as store:
        assert store.create_run(agent="s").agent == "s"


def test_sqlite_unknown_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown option.*sslmode.*SQLite stores take synchronous"):
        clew.open(f"sqlite:///{tmp_path}/x.db?sslmode=require")
    with pytest.raises(ConfigError, match="mode='rwc'"):
        clew.open(f"sqlite:///{tmp_path}/x.db?mode=rwc")
    with pytest.raises(ConfigError, match="cannot be opened read-only"):
        clew.open("memory://?mode=ro")
    assert list(tmp_path.iterdir()) == []


def test_sqlite_read_only_never_creates_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        clew.open(f"sqlite:///{path}?mode=ro")
    assert not path.exists()


def test_sqlite_read_only_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with clew.open(f"sqlite:///{path}") as store:
        run = store.create_run(agent="s", state={"n": 1})
    before = path.stat().st_mtime_ns
    with clew.open(f"sqlite:///{path}?mode=ro") as ro:
        head = ro.get_branch(run.run_id).head
        assert ro.load_state(run.run_id, head) == {"n": 1}
        assert [r.run_id for r in ro.list_runs().items] == [run.run_id]
        with pytest.raises(ConfigError, match="read-only"):
            ro.create_run(agent="nope")
    assert path.stat().st_mtime_ns == before


def test_sqlite_read_only_never_migrates(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with clew.open(f"sqlite:///{path}") as store:
        store.create_run(agent="s")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE clew_schema SET version = version - 1 WHERE version = (SELECT max(version) FROM clew_schema)")
    conn.commit()
    version = conn.execute("SELECT max(version) FROM clew_schema").fetchone()[0]
    conn.close()
    with pytest.raises(SchemaVersionError, match="open it read-write once to migrate"):
        clew.open(f"sqlite:///{path}?mode=ro")
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(version) FROM clew_schema").fetchone()[0] == version  # untouched
    conn.close()


def test_sqlite_read_only_refuses_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="holds no clew store"):
        clew.open(f"sqlite:///{path}?mode=ro")
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["notes"]
    conn.close()


def test_cli_read_commands_never_create_a_missing_file(tmp_path: Path) -> None:
    from clew.cli import main

    path = tmp_path / "typo.db"
    assert main(["runs", "--db", str(path)]) == 3  # NotFoundError: the path names no database
    assert not path.exists()


# -- $CLEW_URL --------------------------------------------------------------------


def test_open_without_a_url_uses_clew_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEW_URL", f"sqlite:///{tmp_path}/env.db")
    with clew.open() as store:
        store.create_run(agent="env")
    assert (tmp_path / "env.db").exists()
    monkeypatch.delenv("CLEW_URL")
    with pytest.raises(ConfigError, match=r"pass one to clew.open\(url\) or set \$CLEW_URL"):
        clew.open()


def test_open_async_without_a_url_uses_clew_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    monkeypatch.setenv("CLEW_URL", f"sqlite:///{tmp_path}/aenv.db")

    async def main() -> None:
        store = await clew.open_async()
        try:
            await store.create_run(agent="env")
        finally:
            await store.close()

    asyncio.run(main())
    assert (tmp_path / "aenv.db").exists()


def test_the_langgraph_saver_takes_libpq_options(pg_schema: tuple[str, str]) -> None:
    from clew.integrations.langgraph import ClewSaver

    server, schema = pg_schema
    with ClewSaver.from_url(f"{server}?schema={schema}&sslmode=disable&application_name=clew-saver") as saver:
        assert list(saver.list({"configurable": {"thread_id": "t"}})) == []


def test_a_three_slash_url_meant_as_absolute_says_how_to_write_it(tmp_path: Path, monkeypatch: Any) -> None:
    """sqlite:///tmp/x.db is tmp/x.db under the working directory (as in SQLAlchemy); when
    that directory is missing but /tmp is there, the error names the four-slash form."""
    target = tmp_path / "data"
    target.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    meant = f"{target}/x.db".lstrip("/")
    with pytest.raises(StoreUnavailableError, match=rf"write sqlite:////{re.escape(meant)} \(four slashes\)"):
        clew.open(f"sqlite:///{meant}")
    assert list(work.iterdir()) == [] and list(target.iterdir()) == []
    with clew.open(f"sqlite:////{meant}") as store:  # the form it names works
        store.create_run(agent="s", state={"n": 1})
    assert (target / "x.db").exists()

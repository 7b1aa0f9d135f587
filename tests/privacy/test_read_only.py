"""Read-only stores (?mode=ro): every read API and CLI read command works, nothing migrates or writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import clew
from clew.cli import main
from clew.errors import ConfigError
from tests.privacy.conftest import spread


def read_everything(store: clew.Store, run_id: str) -> None:
    run = store.get_run(run_id)
    assert run.run_id == run_id and store.list_runs().items[0].run_id == run_id
    branches = store.list_branches(run_id)
    head = store.get_branch(run_id).head
    assert head is not None and branches
    c = store.get_checkpoint(run_id, head)
    assert store.find_checkpoint(head).checkpoint_id == c.checkpoint_id
    assert store.load_state(run_id, head)["note"] == "MARKER-ro-1"
    assert len(store.list_checkpoints(run_id).items) >= 3
    assert store.list_journal(run_id)
    assert store.verify(run_id).ok


@pytest.fixture
def ro_url(shared_stores: Any) -> Iterator[str]:
    """The test database's URL with ?mode=ro; on PostgreSQL, as a role that may only SELECT."""
    spread(shared_stores.open(), "MARKER-ro-1", "r")
    if shared_stores.backend == "sqlite":
        yield f"{shared_stores.url}?mode=ro"
        return
    import psycopg

    role = f"clew_ro_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(shared_stores.pg, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA {shared_stores.schema} TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {shared_stores.schema} TO {role}")
    base = shared_stores.pg.replace("postgres@", f"{role}@", 1)
    assert base != shared_stores.pg, "the test server URL names no user to replace"
    try:
        yield f"{base}?schema={shared_stores.schema}&mode=ro"
    finally:
        with psycopg.connect(shared_stores.pg, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_every_read_works_read_only(ro_url: str) -> None:
    with clew.open(ro_url) as store:
        read_everything(store, "r")
        with pytest.raises(ConfigError, match="mode=ro"):
            store.create_run("new", agent="a")
        with pytest.raises(ConfigError):
            store.erase("r")
        with pytest.raises(ConfigError):
            store.update_run("r", metadata={})
        assert store.migrate() > 0  # a version check, never a migration
        agent = clew.Agent("spread", state=dict, store=store)
        assert agent.state_at(store.get_branch("r").head or "")["note"] == "MARKER-ro-1"
        assert agent.history("r")
    with clew.open(ro_url) as again:  # reopening read-only never writes either
        assert again.get_run("r").run_id == "r"


async def test_async_reads_read_only(ro_url: str) -> None:
    store = await clew.open_async(ro_url)
    try:
        head = (await store.get_branch("r")).head
        assert head is not None and (await store.load_state("r", head))["note"] == "MARKER-ro-1"
        with pytest.raises(ConfigError):
            await store.create_run("new", agent="a")
    finally:
        await store.close()


def test_cli_reads_read_only(ro_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["runs"], ["history", "r"], ["show", "r"], ["verify", "r"], ["export", "r"]):
        assert main([*args, "--store", ro_url, *(["--json"] if args[0] != "export" else [])]) == 0, args
    out = capsys.readouterr().out
    assert "MARKER-ro-1" in out
    assert main(["erase", "r", "--store", ro_url]) == 2
    assert "read-only" in capsys.readouterr().err


def test_a_read_only_store_never_migrates(tmp_path: Any) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(clew.errors.StoreError, match="no clew store"):
        clew.open(f"sqlite:///{path}?mode=ro")
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["t"]
    conn.close()
    with pytest.raises(ConfigError, match="read-only"):
        clew.open(f"sqlite:///{path}?mode=rwx")
    with pytest.raises(ConfigError, match="memory"):
        clew.open("memory://?mode=ro")
    with pytest.raises(clew.errors.StoreUnavailableError):
        clew.open(f"sqlite:///{tmp_path / 'missing.db'}?mode=ro")

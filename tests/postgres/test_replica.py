"""Read-only stores on a real streaming replica (``pg_basebackup -R`` of a throwaway primary)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest

import clew
from clew.errors import ConfigError
from tests import _pg
from tests.conftest import IN_CI


@pytest.fixture
def primary_and_replica() -> Iterator[tuple[_pg.Cluster, _pg.Cluster]]:
    try:
        primary = _pg.Cluster()
        replica = primary.standby()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        if IN_CI:
            pytest.fail(f"a throwaway primary and replica are required under CI=true: {exc}")
        pytest.skip(f"cannot start a throwaway primary and replica: {exc}")
    yield primary, replica
    replica.remove()
    primary.remove()


def test_read_commands_read_from_the_replica(primary_and_replica: tuple[_pg.Cluster, _pg.Cluster]) -> None:
    primary, replica = primary_and_replica
    with psycopg.connect(replica.url) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)  # a real standby
    with clew.open(f"{primary.url}?schema=agents") as store:
        run = store.create_run(agent="r", state={"n": 1})
        head = store.get_branch(run.run_id).head
    url = f"{primary.url}?schema=agents&mode=ro&replica={quote(replica.url, safe='')}"
    deadline = time.monotonic() + 30
    while True:  # the replica replays the primary's WAL a moment later
        try:
            ro = clew.open(url)
            break
        except clew.errors.StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with ro:
        while time.monotonic() < deadline:
            try:
                if ro.get_branch(run.run_id).head == head:
                    break
            except clew.errors.NotFoundError:
                pass  # not replayed yet
            time.sleep(0.1)
        assert ro.load_state(run.run_id, head) == {"n": 1}
        assert [r.run_id for r in ro.list_runs().items] == [run.run_id]
        assert ro.verify(run.run_id).ok
        with pytest.raises(ConfigError, match="read-only"):
            ro.create_run(agent="nope")
    # The CLI's read commands take the same URL.
    from clew.cli import main

    assert main(["runs", "--store", url, "--json"]) == 0
    # A read-write store given the replica URL still writes to the primary.
    with clew.open(f"{primary.url}?schema=agents&replica={quote(replica.url, safe='')}") as rw:
        assert rw.create_run(agent="w").agent == "w"

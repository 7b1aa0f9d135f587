"""A connection that dies during COMMIT: the outcome is unknown, and the store settles it.

A deferred trigger makes COMMIT sleep, so the test can act while the server is inside
it: kill the server process (the transaction is rolled back), or cut the client's side
of the connection (the server completes the COMMIT it already received).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import clew
from clew.errors import CommitUnknownError, StoreUnavailableError
from tests.conftest import _drop_schema, pg_url
from tests.postgres._proxy import Relay
from tests.postgres._support import busy, committing, new_name, slow_commits, terminate, wait_for


@pytest.fixture
def server_schema() -> Iterator[tuple[str, str]]:
    server, schema = pg_url(), new_name()
    yield server, schema
    _drop_schema(server, schema)


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def body() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=body)
    t.start()
    return t, out


def test_a_commit_killed_inside_commit_is_settled_as_not_written_and_made_again(
    server_schema: tuple[str, str],
) -> None:
    server, schema = server_schema
    app = new_name("clew_commit")
    with clew.open(f"{server}?schema={schema}&application_name={app}") as store:
        run = store.create_run(agent="c", state={"n": 0})
        first = store.get_branch(run.run_id).head
        slow_commits(server, schema, 1.0)
        t, out = _in_thread(lambda: store.commit(run.run_id, state={"n": 1}, parent=first))
        pids = wait_for(lambda: committing(server, app), "the commit to be inside COMMIT")
        assert terminate(server, app) >= len(pids)  # the server process dies mid-COMMIT: rolled back
        t.join()
        assert "error" not in out, out.get("error")
        ckpt = out["value"]
        assert store.get_branch(run.run_id).head == ckpt.checkpoint_id
        assert {c.checkpoint_id for c in store.list_checkpoints(run.run_id)} == {first, ckpt.checkpoint_id}
        assert store.load_state(run.run_id, ckpt.checkpoint_id) == {"n": 1}
        assert store.verify(run.run_id).ok


def test_a_commit_whose_answer_was_lost_is_settled_as_written(server_schema: tuple[str, str]) -> None:
    """The client's side is cut while the server is inside COMMIT: the server commits anyway.
    The store re-reads (waiting on the run's row lock for the orphaned COMMIT to end) and
    returns the checkpoint instead of writing it twice."""
    server, schema = server_schema
    app = new_name("clew_commit")
    relay = Relay(server)
    try:
        with clew.open(f"{relay.url}?schema={schema}&application_name={app}") as store:
            run = store.create_run(agent="c", state={"n": 0})
            first = store.get_branch(run.run_id).head
            slow_commits(server, schema, 1.0)
            t, out = _in_thread(lambda: store.commit(run.run_id, state={"n": 1}, parent=first))
            wait_for(lambda: committing(server, app), "the commit to be inside COMMIT")
            assert relay.cut_clients() >= 1
            t.join()
            assert "error" not in out, out.get("error")
            ckpt = out["value"]
            assert store.get_branch(run.run_id).head == ckpt.checkpoint_id
            assert len(store.list_checkpoints(run.run_id)) == 2  # written once
            assert store.load_state(run.run_id, ckpt.checkpoint_id) == {"n": 1}
            assert store.verify(run.run_id).ok
    finally:
        relay.close()


def test_commit_unknown_error_when_the_server_stays_out_of_reach(server_schema: tuple[str, str]) -> None:
    server, schema = server_schema
    app = new_name("clew_commit")
    relay = Relay(server)
    try:
        with clew.open(f"{relay.url}?schema={schema}&application_name={app}&pool_timeout=1") as store:
            run = store.create_run(agent="c", state={"n": 0})
            first = store.get_branch(run.run_id).head
            slow_commits(server, schema, 1.0)
            t, out = _in_thread(lambda: store.commit(run.run_id, state={"n": 1}, parent=first))
            wait_for(lambda: committing(server, app), "the commit to be inside COMMIT")
            relay.refusing = True  # no new connection gets through: the store cannot settle it
            relay.cut_clients()
            t.join()
            err = out.get("error")
            assert isinstance(err, CommitUnknownError)
            assert isinstance(err, StoreUnavailableError)  # an `except StoreUnavailableError` catches it
            assert "may or may not have committed" in str(err)
            assert "get_branch" in str(err)  # how to find out
        relay.refusing = False
        # The server finishes the COMMIT it received on its own time (a second in the
        # trigger, and more on a loaded machine): a read before that still sees `first`.
        wait_for(lambda: not busy(server, app), "the orphaned COMMIT to end")
        # Finding out as the message says, once the server answers again (a fresh store:
        # the old pool may still be backing off from its failed reconnections).
        with clew.open(f"{relay.url}?schema={schema}") as again:
            head = again.get_branch(run.run_id).head
            assert head is not None and head != first  # the server did complete the COMMIT
            assert again.load_state(run.run_id, head) == {"n": 1}
            assert again.load_state(run.run_id, first) == {"n": 0}  # the last good checkpoint loads
            assert again.verify(run.run_id).ok
    finally:
        relay.close()


def test_other_writes_dying_in_commit_raise_commit_unknown(server_schema: tuple[str, str]) -> None:
    """Writes other than a checkpoint commit are not settled by the store: the caller is told."""
    server, schema = server_schema
    app = new_name("clew_commit")
    with clew.open(f"{server}?schema={schema}&application_name={app}") as store:
        run = store.create_run(agent="c", state={"n": 0})
        slow_commits(server, schema, 1.0)
        # A fork writes its first checkpoint too (the deferred trigger fires at its COMMIT).
        head = store.get_branch(run.run_id).head
        t, out = _in_thread(lambda: store.fork(run.run_id, checkpoint_id=head, branch="alt", state={"n": 5}))
        wait_for(lambda: committing(server, app), "the fork to be inside COMMIT")
        terminate(server, app)
        t.join()
        assert isinstance(out.get("error"), CommitUnknownError), out
        assert store.get_branch(run.run_id).head == head  # main is untouched and loads
        assert store.load_state(run.run_id, head) == {"n": 0}


def test_the_async_store_settles_a_commit_killed_inside_commit(server_schema: tuple[str, str]) -> None:
    import asyncio

    server, schema = server_schema
    app = new_name("clew_acommit")

    async def main() -> None:
        store = await clew.open_async(f"{server}?schema={schema}&application_name={app}")
        try:
            run = await store.create_run(agent="c", state={"n": 0})
            first = (await store.get_branch(run.run_id)).head
            assert first is not None
            slow_commits(server, schema, 1.0)

            def killer() -> None:
                wait_for(lambda: committing(server, app), "the commit to be inside COMMIT")
                terminate(server, app)

            t = threading.Thread(target=killer)
            t.start()
            ckpt = await store.commit(run.run_id, state={"n": 1}, parent=first)
            t.join()
            assert (await store.get_branch(run.run_id)).head == ckpt.checkpoint_id
            assert len(await store.list_checkpoints(run.run_id)) == 2
            assert await store.load_state(run.run_id, ckpt.checkpoint_id) == {"n": 1}
        finally:
            await store.close()

    asyncio.run(main())

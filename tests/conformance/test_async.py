"""The async twin: the same interface, and a representative run of it on every backend."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import pytest

import clew
from clew.errors import ConflictError, LeaseError, NotFoundError, RunLockedError
from clew.store import AsyncStore, Store


def _public(cls: type) -> dict[str, Any]:
    return {name: getattr(cls, name) for name in dir(cls) if not name.startswith("_")}


def test_store_and_async_store_have_the_same_methods_and_signatures() -> None:
    sync, asyn = _public(Store), _public(AsyncStore)
    assert sorted(sync) == sorted(asyn)
    assert len(sync) >= 20
    for name, member in sync.items():
        twin = asyn[name]
        if isinstance(member, property):
            assert isinstance(twin, property), name
            continue
        assert inspect.iscoroutinefunction(twin), f"AsyncStore.{name} must be async"
        assert not inspect.iscoroutinefunction(member), f"Store.{name} must not be async"
        assert inspect.signature(member) == inspect.signature(twin), name
        assert (member.__doc__ or "").strip() and (twin.__doc__ or "").strip(), f"{name} lacks a docstring"
    # The context-manager protocols match too.
    assert inspect.signature(Store.__exit__) == inspect.signature(AsyncStore.__aexit__)


def test_backends_add_no_public_methods() -> None:
    from clew.store._postgres import AsyncPostgresStore, PostgresStore
    from clew.store._sqlite import AsyncSQLiteStore, SQLiteStore

    allowed = {"checkpoint_wal", "path", "schema", "url", "open", "sync_store"}
    for cls, base in (
        (SQLiteStore, Store),
        (PostgresStore, Store),
        (AsyncSQLiteStore, AsyncStore),
        (AsyncPostgresStore, AsyncStore),
    ):
        extra = set(_public(cls)) - set(_public(base)) - allowed
        assert not extra, f"{cls.__name__} adds {extra}: add them to the interface (and the twin) instead"


async def test_async_commit_load_list(astore: clew.AsyncStore) -> None:
    run = await astore.create_run(agent="async", labels={"k": "v"})
    assert await astore.get_run(run.run_id) == run
    assert [r.run_id for r in await astore.list_runs(labels={"k": "v"})] == [run.run_id]
    parent = None
    states = []
    for i in range(5):
        state = {"i": i, "messages": [{"n": j, "text": "x" * j} for j in range(i * 30)], "t": (i, "tuple")}
        parent = (await astore.commit(run.run_id, state=state, parent=parent, metadata={"i": i})).checkpoint_id
        states.append((parent, state))
    for cid, state in states:
        assert await astore.load_state(run.run_id, cid) == state
    page = await astore.list_checkpoints(run.run_id, limit=3)
    rest = await astore.list_checkpoints(run.run_id, limit=3, cursor=page.next_cursor)
    assert [c.metadata["i"] for c in [*page, *rest]] == [4, 3, 2, 1, 0]
    assert (await astore.get_branch(run.run_id)).head == parent
    assert (await astore.verify(run.run_id)).ok
    await astore.fork(run.run_id, checkpoint_id=states[1][0], branch="alt")
    assert [b.name for b in await astore.list_branches(run.run_id)] == ["main", "alt"]
    await astore.append_journal(run.run_id, [("tool", {"q": 1})])
    c = await astore.commit(run.run_id, state={"done": True}, parent=parent, status="completed")
    assert [e.data for e in await astore.list_journal(run.run_id, checkpoint_id=c.checkpoint_id)] == [{"q": 1}]
    assert (await astore.get_branch(run.run_id)).status == "completed"
    assert (await astore.get_run(run.run_id)).status == "running"  # branch alt has not finished
    with pytest.raises(NotFoundError):
        await astore.load_state(run.run_id, "nope")
    report = await astore.delete_run(run.run_id)
    assert report.checkpoints == 6


async def test_async_conflict(astore: clew.AsyncStore) -> None:
    run = (await astore.create_run(agent="async")).run_id
    c1 = await astore.commit(run, state={"n": 1}, parent=None)
    results = await asyncio.gather(
        *(astore.commit(run, state={"n": 2, "w": i}, parent=c1.checkpoint_id) for i in range(4)),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, clew.CheckpointRecord)]
    assert len(won) == 1 and all(isinstance(r, ConflictError) for r in results if r not in won), results
    assert (await astore.get_branch(run)).head == won[0].checkpoint_id
    with pytest.raises(ConflictError):
        await astore.commit(run, state={"n": 3}, parent=c1.checkpoint_id)


async def test_async_lease(astore: clew.AsyncStore) -> None:
    run = (await astore.create_run(agent="async")).run_id
    expires = (await astore.acquire_lease(run, owner="A", ttl=1.0)).expires_at
    with pytest.raises(RunLockedError):
        await astore.acquire_lease(run, owner="B", ttl=10)
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)
    await astore.acquire_lease(run, owner="B", ttl=10)
    with pytest.raises(LeaseError):
        await astore.renew_lease(run, owner="A", ttl=10)
    assert await astore.release_lease(run, owner="B") is True
    other = (await astore.create_run(agent="async", lease_owner="dead", lease_ttl=0.01)).run_id
    await asyncio.sleep(0.05)
    claimed = await astore.claim_expired(owner="C", ttl=10)
    assert {r.run_id for r in claimed} == {run, other}


async def test_async_store_does_not_block_the_event_loop(astore: clew.AsyncStore) -> None:
    run = (await astore.create_run(agent="async")).run_id
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    parent = None
    for i in range(20):
        state = {"messages": [{"n": j, "text": "lorem ipsum " * 20} for j in range(i * 50)]}
        parent = (await astore.commit(run, state=state, parent=parent)).checkpoint_id
    done.set()
    await task
    assert ticks > 5  # the loop ran while the store worked (a blocking store gives 1)


async def test_async_close_is_idempotent(astore: clew.AsyncStore) -> None:
    await astore.close()
    await astore.close()

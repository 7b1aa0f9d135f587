"""``ClewSaver``: LangGraph's ``BaseCheckpointSaver`` on a clew store.

Every operation is a flow of store calls (:mod:`._flows`), run here by a sync
driver on a :class:`~clew.Store` or an async driver on an :class:`~clew.AsyncStore`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

import clew
from clew.errors import ClewError, ConfigError
from clew.integrations.langgraph import _core as c
from clew.integrations.langgraph import _flows as f
from clew.integrations.langgraph import _mapping as m
from clew.integrations.langgraph import _rewrite as rw
from clew.store import AsyncSQLiteStore, AsyncStore, Store

T = TypeVar("T")
StoreCall = Callable[[c.Call], Any]
AStoreCall = Callable[[c.Call], Awaitable[Any]]


def _drive(flow: c.Flow[T], run: StoreCall) -> T:
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # the flow's declared result
        send, error = None, None
        try:
            send = run(step)
        except ClewError as exc:
            error = exc


async def _adrive(flow: c.Flow[T], run: AStoreCall) -> T:
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # the flow's declared result
        send, error = None, None
        try:
            send = await run(step)
        except ClewError as exc:
            error = exc


def _iterate(stream: c.Stream, run: StoreCall) -> Iterator[Any]:
    send: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                step = stream.throw(error) if error is not None else stream.send(send)
            except StopIteration:
                return
            send, error = None, None
            if isinstance(step, c.Emit):
                yield step.value
                continue
            try:
                send = run(step)
            except ClewError as exc:
                error = exc
    finally:
        stream.close()


async def _aiterate(stream: c.Stream, run: AStoreCall) -> AsyncIterator[Any]:
    send: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                step = stream.throw(error) if error is not None else stream.send(send)
            except StopIteration:
                return
            send, error = None, None
            if isinstance(step, c.Emit):
                yield step.value
                continue
            try:
                send = await run(step)
            except ClewError as exc:
                error = exc
    finally:
        stream.close()


class _RunLocks:
    """One lock per thread namespace (run), shared by sync and async callers.

    A run's ``put`` and ``put_writes`` go one at a time whatever the caller's style,
    so a write cannot slip between a checkpoint's commit and the lookup of its head.
    Async callers never block the event loop: they poll the lock. Locks of different
    runs are never shared, so a sync subgraph inside an async node cannot wait on
    its parent's lock.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list[Any]] = {}  # run -> [lock, users]

    def _enter(self, run: str) -> threading.Lock:
        with self._guard:
            entry = self._locks.setdefault(run, [threading.Lock(), 0])
            entry[1] += 1
            return entry[0]  # type: ignore[no-any-return]  # [lock, users]

    def _leave(self, run: str) -> None:
        with self._guard:
            entry = self._locks[run]
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[run]

    @contextmanager
    def hold(self, run: str) -> Iterator[None]:
        lock = self._enter(run)
        try:
            with lock:
                yield
        finally:
            self._leave(run)

    @asynccontextmanager
    async def ahold(self, run: str) -> AsyncIterator[None]:
        lock = self._enter(run)
        try:
            delay = 0.0005
            while not lock.acquire(blocking=False):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.02)
            try:
                yield
            finally:
                lock.release()
        finally:
            self._leave(run)


class ClewSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer that keeps threads as clew runs.

    Channel values are stored in clew's content-addressed, chunked state, so a
    thread whose message list grows by a few messages a step costs storage in
    proportion to what it adds, and each checkpoint is sealed in the run's hash chain
    (``clew verify``). Sync methods run on ``store``, async ones on ``astore``; give
    one or both (open on the same database). Every saver serves both kinds of call:
    with ``astore`` alone, sync calls use its SQLite connection or a sync pool on its
    PostgreSQL database (opened on first use, closed by :meth:`close`); with ``store``
    alone, async calls run its operations on a worker thread. ``from_url`` /
    ``afrom_url`` open them.

    Args:
        store: a :class:`~clew.Store`, for ``invoke``, ``get_state``...
        astore: an :class:`~clew.AsyncStore`, for ``ainvoke``, ``aget_state``...
        serde: LangGraph serializer for the rare value clew's codec cannot encode.
        on_conflict: when a writer finds that another writer moved the thread past
            the checkpoint it worked from: ``"raise"`` a
            :class:`~clew.errors.ConflictError` (the default), or ``"fork"``: keep
            its checkpoint on a new branch ``conflict-<checkpoint id>``.
        verify_reads: re-hash a thread's whole run (``Store.verify``) before
            returning any of it, so a changed byte in a pending write raises
            :class:`~clew.errors.IntegrityError` on read too. Checkpoint seals and
            state blobs are checked on every read regardless.

    Example::

        with ClewSaver.from_url("sqlite:///agent.db") as saver:
            graph = builder.compile(checkpointer=saver)
            graph.invoke({"messages": [...]}, {"configurable": {"thread_id": "t1"}})
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        astore: AsyncStore | None = None,
        serde: SerializerProtocol | None = None,
        on_conflict: Literal["raise", "fork"] = "raise",
        verify_reads: bool = False,
    ) -> None:
        if store is None and astore is None:
            raise ConfigError("ClewSaver needs a store: ClewSaver(clew.open(url)) or ClewSaver(astore=...)")
        if on_conflict not in ("raise", "fork"):
            raise ConfigError(f"on_conflict must be 'raise' or 'fork', not {on_conflict!r}")
        super().__init__(serde=serde)
        if store is None and isinstance(astore, AsyncSQLiteStore):
            store = astore.sync_store  # the same database (memory:// included), no second connection
        self.store = store
        self.astore = astore
        self._ctx = c.Ctx(self.serde, c.Memory(), on_conflict, verify_reads)
        self._locks = _RunLocks()
        self._opened: Store | None = None  # a sync store this saver opened itself, closed by close()
        self._opening = threading.Lock()

    @classmethod
    @contextmanager
    def from_url(cls, url: str, **options: Any) -> Iterator[ClewSaver]:
        """Open a store with :func:`clew.open` and a saver on it; closes the store on exit."""
        with clew.open(url) as store:
            saver = cls(store, **options)
            try:
                yield saver
            finally:
                saver.close()

    @classmethod
    @asynccontextmanager
    async def afrom_url(cls, url: str, **options: Any) -> AsyncIterator[ClewSaver]:
        """Open an async store with :func:`clew.open_async` and a saver on it; closes it on exit.

        The saver serves sync calls too (``subgraph.invoke`` inside an async node,
        ``asyncio.to_thread(graph.get_state)``): on SQLite and ``memory://`` through
        the same connection, on PostgreSQL through a sync pool opened on first use.
        """
        astore = await clew.open_async(url)
        try:
            saver = cls(astore=astore, **options)
            try:
                yield saver
            finally:
                saver.close()
        finally:
            await astore.close()

    def close(self) -> None:
        """Close what the saver opened itself (a sync pool for an async PostgreSQL store).

        The stores given to it stay open: they are the caller's.
        """
        with self._opening:
            opened, self._opened = self._opened, None
        if opened is not None:
            opened.close()

    # -- plumbing ------------------------------------------------------------
    def _sync(self) -> StoreCall:
        store = self.store or self._opened
        if store is None:
            assert self.astore is not None  # one of the two is always given
            with self._opening:  # an async store without a sync twin: open one on its database
                if self._opened is None:
                    self._opened = clew.open(self.astore.url, codec=self.astore.codec)
                    weakref.finalize(self, self._opened.close)  # closed with the saver if close() is never called
                store = self._opened
        return lambda step: getattr(store, step.method)(*step.args, **step.kwargs)

    def _async(self) -> AStoreCall:
        if self.astore is not None:
            astore = self.astore
            return lambda step: getattr(astore, step.method)(*step.args, **step.kwargs)
        store = self.store
        assert store is not None  # one of the two is always given
        # A sync store only: each call runs on a worker thread, so the event loop never blocks.
        return lambda step: asyncio.to_thread(getattr(store, step.method), *step.args, **step.kwargs)

    @staticmethod
    def _run(config: RunnableConfig) -> str:
        """The lock key of a config's thread namespace: one per namespace, so a subgraph never waits on its parent."""
        thread, ns, _ = m.parse_config(config)
        return m.legacy_run_id(thread, ns)

    # -- sync ----------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the thread's latest; None if there is none."""
        return _drive(f.get_tuple(self._ctx, config), self._sync())

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 - LangGraph's name
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first, across every branch of the thread."""
        yield from _iterate(f.list_checkpoints(self._ctx, config, filter, before, limit), self._sync())

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Commit a checkpoint on the branch its parent heads (see ``docs/langgraph.md``)."""
        run = self._sync()
        with self._locks.hold(self._run(config)):
            return _drive(f.put(self._ctx, config, checkpoint, metadata), run)

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Record a task's writes against the checkpoint ``config`` names, as a journal entry."""
        writes = m.copy_writes(writes)
        run = self._sync()
        stored = _drive(f.probe_writes(self._ctx, config), run)
        with self._locks.hold(self._run(config)):
            _drive(f.put_writes(self._ctx, config, writes, task_id, task_path, stored), run)

    def delete_thread(self, thread_id: str) -> None:
        """Delete every run (namespace) of a thread."""
        _drive(f.delete_thread(self._ctx, str(thread_id)), self._sync())

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints made by LangGraph runs ``run_ids``; the threads are rebuilt."""
        _drive(rw.delete_for_runs(self._ctx, run_ids), self._sync())

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread, with its branches and writes, to a thread that has no checkpoints."""
        _drive(rw.copy_thread(self._ctx, str(source_thread_id), str(target_thread_id)), self._sync())

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only each namespace's latest checkpoint (``keep_latest``) or ``delete`` all."""
        _drive(rw.prune(self._ctx, thread_ids, strategy), self._sync())

    # -- async ---------------------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """See :meth:`get_tuple`."""
        return await _adrive(f.get_tuple(self._ctx, config), self._async())

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 - LangGraph's name
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """See :meth:`list`."""
        async for item in _aiterate(f.list_checkpoints(self._ctx, config, filter, before, limit), self._async()):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """See :meth:`put`."""
        run = self._async()
        async with self._locks.ahold(self._run(config)):
            return await _adrive(f.put(self._ctx, config, checkpoint, metadata), run)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """See :meth:`put_writes`."""
        writes = m.copy_writes(writes)
        run = self._async()
        stored = await _adrive(f.probe_writes(self._ctx, config), run)
        async with self._locks.ahold(self._run(config)):
            await _adrive(f.put_writes(self._ctx, config, writes, task_id, task_path, stored), run)

    async def adelete_thread(self, thread_id: str) -> None:
        """See :meth:`delete_thread`."""
        await _adrive(f.delete_thread(self._ctx, str(thread_id)), self._async())

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """See :meth:`delete_for_runs`."""
        await _adrive(rw.delete_for_runs(self._ctx, run_ids), self._async())

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """See :meth:`copy_thread`."""
        await _adrive(rw.copy_thread(self._ctx, str(source_thread_id), str(target_thread_id)), self._async())

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """See :meth:`prune`."""
        await _adrive(rw.prune(self._ctx, thread_ids, strategy), self._async())

    # -- versions ------------------------------------------------------------
    def get_next_version(self, current: int | str | None, channel: None) -> Any:
        """Integer channel versions (compact); a thread with string versions keeps them."""
        if isinstance(current, str):
            return f"{int(current.split('.')[0]) + 1:032}.{random.random():016}"  # noqa: S311 - not secret
        return 1 if current is None else current + 1

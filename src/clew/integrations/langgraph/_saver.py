"""``ClewSaver``: LangGraph's ``BaseCheckpointSaver`` on a clew store.

Every operation is a flow of store calls (:mod:`._flows`), run here by a sync
driver on a :class:`~clew.Store` or an async driver on an :class:`~clew.AsyncStore`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
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
from clew.store import AsyncStore, Store

T = TypeVar("T")
_STRIPES = 64


def _drive(flow: c.Flow[T], store: Store) -> T:
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # the flow's declared result
        send, error = None, None
        try:
            send = getattr(store, step.method)(*step.args, **step.kwargs)
        except ClewError as exc:
            error = exc


async def _adrive(flow: c.Flow[T], store: AsyncStore) -> T:
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # the flow's declared result
        send, error = None, None
        try:
            send = await getattr(store, step.method)(*step.args, **step.kwargs)
        except ClewError as exc:
            error = exc


def _iterate(stream: c.Stream, store: Store) -> Iterator[Any]:
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
                send = getattr(store, step.method)(*step.args, **step.kwargs)
            except ClewError as exc:
                error = exc
    finally:
        stream.close()


async def _aiterate(stream: c.Stream, store: AsyncStore) -> AsyncIterator[Any]:
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
                send = await getattr(store, step.method)(*step.args, **step.kwargs)
            except ClewError as exc:
                error = exc
    finally:
        stream.close()


class ClewSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer that keeps threads as clew runs.

    Channel values are stored in clew's content-addressed, chunked state, so a
    thread whose message list grows by a few messages a step costs storage in
    proportion to what it adds, and each checkpoint is sealed in the run's hash chain
    (``clew verify``). Sync methods run on ``store``, async ones on ``astore``; give
    one or both (open on the same database). ``from_url`` / ``afrom_url`` open them.

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
        self.store = store
        self.astore = astore
        self._ctx = c.Ctx(self.serde, c.Memory(), on_conflict, verify_reads)
        self._locks = [threading.Lock() for _ in range(_STRIPES)]
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    @contextmanager
    def from_url(cls, url: str, **options: Any) -> Iterator[ClewSaver]:
        """Open a store with :func:`clew.open` and a saver on it; closes the store on exit."""
        with clew.open(url) as store:
            yield cls(store, **options)

    @classmethod
    @asynccontextmanager
    async def afrom_url(cls, url: str, **options: Any) -> AsyncIterator[ClewSaver]:
        """Open an async store (and, unless ``memory://``, a sync one on the same database)."""
        astore = await clew.open_async(url)
        try:
            store = None if url.startswith("memory:") else clew.open(url)
        except BaseException:
            await astore.close()
            raise
        try:
            yield cls(store, astore=astore, **options)
        finally:
            await astore.close()
            if store is not None:
                store.close()

    # -- plumbing ------------------------------------------------------------
    def _sync(self) -> Store:
        if self.store is None:
            raise ConfigError(
                "this ClewSaver has only an async store: use the graph's async methods (ainvoke, "
                "aget_state...) or give it a sync one too: ClewSaver(clew.open(url), astore=...)"
            )
        return self.store

    def _async(self) -> AsyncStore:
        if self.astore is None:
            raise ConfigError(
                "this ClewSaver has only a sync store: use the graph's sync methods (invoke, get_state...) "
                "or give it an async one too: ClewSaver(store, astore=await clew.open_async(url))"
            )
        return self.astore

    @staticmethod
    def _stripe(config: RunnableConfig) -> int:
        thread, ns, _ = m.parse_config(config)
        return hash(m.run_id_for(thread, ns)) % _STRIPES

    def _alock(self, config: RunnableConfig) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        stripes = self._alocks.get(loop)
        if stripes is None:
            stripes = self._alocks[loop] = [asyncio.Lock() for _ in range(_STRIPES)]
        return stripes[self._stripe(config)]

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
        with self._locks[self._stripe(config)]:
            return _drive(f.put(self._ctx, config, checkpoint, metadata), self._sync())

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Record a task's writes against the checkpoint ``config`` names, as a journal entry."""
        store = self._sync()
        stored = _drive(f.probe_writes(self._ctx, config), store)
        with self._locks[self._stripe(config)]:
            _drive(f.put_writes(self._ctx, config, writes, task_id, task_path, stored), store)

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
        async with self._alock(config):
            return await _adrive(f.put(self._ctx, config, checkpoint, metadata), self._async())

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """See :meth:`put_writes`."""
        astore = self._async()
        stored = await _adrive(f.probe_writes(self._ctx, config), astore)
        async with self._alock(config):
            await _adrive(f.put_writes(self._ctx, config, writes, task_id, task_path, stored), astore)

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

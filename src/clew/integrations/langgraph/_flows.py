"""The saver's operations, written once as generators of store calls (sans I/O).

An operation yields :class:`Call` (a store method to run; the runner sends back its
result, or throws its clew error in) and, for listings, :class:`Emit` (an item for
the caller). The sync saver runs them on a :class:`~clew.Store`, the async saver on
an :class:`~clew.AsyncStore`: one source, so the twins cannot drift. It is the trick
of :mod:`clew.store._ops`, one level up.

Where things go (see ``docs/langgraph.md``):

* A checkpoint is committed on the branch its parent heads. A parent that heads no
  branch (time travel, ``update_state`` on an old checkpoint) starts a branch
  ``fork-<checkpoint id>``. A writer that expected its parent to be a head and finds
  the branch moved (two writers on one thread) gets :class:`ConflictError`, or with
  ``on_conflict="fork"`` a branch ``conflict-<checkpoint id>``.
* The writes of checkpoint C (``put_writes``) are journal entries: pending on a
  branch C heads, sealed into a child of C, or, when they arrived before C was
  stored, committed with C itself. Lookups read exactly those places.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, CheckpointMetadata, CheckpointTuple, PendingWrite
from langgraph.checkpoint.base import get_checkpoint_metadata as _lg_metadata
from langgraph.checkpoint.serde.base import SerializerProtocol

from clew.codec import Codec
from clew.errors import ConflictError, NotFoundError, UnknownTypeError
from clew.integrations.langgraph import _mapping as m
from clew.store import BranchRecord, CheckpointRecord, JournalEntry, RunRecord

T = TypeVar("T")
_PAGE = 200
_CHECK = Codec()  # only to find which values the store's codec will refuse


@dataclass(frozen=True, slots=True)
class Call:
    """A store method for the runner to call."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def call(method: str, *args: Any, **kwargs: Any) -> Call:
    return Call(method, args, kwargs)


@dataclass(frozen=True, slots=True)
class Emit:
    """An item of a listing, for the runner to hand to the caller."""

    value: Any


Flow = Generator[Call, Any, T]
Stream = Generator[Call | Emit, Any, None]
Key = tuple[str, str]


class Memory:
    """What one saver remembers between calls: hints and buffers, never the truth.

    ``heads`` maps (run, checkpoint) to the branch this saver last saw it heading;
    ``buffer`` holds writes for checkpoints not stored yet (LangGraph saves a
    checkpoint in the background while the next step's tasks already write).
    """

    def __init__(self, size: int = 4096) -> None:
        self._lock = threading.Lock()
        self._size = size
        self._heads: OrderedDict[Key, str] = OrderedDict()
        self._stored: OrderedDict[Key, None] = OrderedDict()
        self._buffer: OrderedDict[Key, list[tuple[str, Any]]] = OrderedDict()
        self._runs: OrderedDict[str, None] = OrderedDict()

    def _put(self, d: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        d[key] = value
        d.move_to_end(key)
        while len(d) > self._size:
            d.popitem(last=False)

    def head(self, run: str, cid: str) -> str | None:
        with self._lock:
            return self._heads.get((run, cid))

    def stored(self, run: str, cid: str) -> bool:
        with self._lock:
            return (run, cid) in self._stored

    def saw(self, run: str, cid: str, branch: str | None) -> None:
        with self._lock:
            self._put(self._stored, (run, cid), None)
            if branch:
                self._put(self._heads, (run, cid), branch)
            else:
                self._heads.pop((run, cid), None)

    def advanced(self, run: str, parent: str | None, cid: str, branch: str) -> None:
        with self._lock:
            if parent is not None and self._heads.get((run, parent)) == branch:
                del self._heads[(run, parent)]
            self._put(self._heads, (run, cid), branch)
            self._put(self._stored, (run, cid), None)

    def hold(self, run: str, cid: str, entry: tuple[str, Any]) -> None:
        with self._lock:
            self._put(self._buffer, (run, cid), [*self._buffer.get((run, cid), []), entry])

    def release(self, run: str, cid: str) -> list[tuple[str, Any]]:
        with self._lock:
            return self._buffer.pop((run, cid), [])

    def known_run(self, run: str) -> bool:
        with self._lock:
            return run in self._runs

    def add_run(self, run: str) -> None:
        with self._lock:
            self._put(self._runs, run, None)

    def forget(self, run: str) -> None:
        with self._lock:
            self._runs.pop(run, None)
            for d in (self._heads, self._stored, self._buffer):
                for key in [k for k in d if k[0] == run]:
                    del d[key]


@dataclass(slots=True)
class Ctx:
    """What every operation of one saver shares."""

    serde: SerializerProtocol
    mem: Memory
    on_conflict: str = "raise"


# -- runs ----------------------------------------------------------------------

def _check_run(rec: RunRecord, thread: str, ns: str) -> None:
    if rec.agent != m.AGENT or dict(rec.labels) != m.labels_for(thread, ns):
        raise ConflictError(
            f"run {rec.run_id!r} exists but is not LangGraph thread {thread!r} (checkpoint_ns {ns!r}): "
            f"it belongs to agent {rec.agent!r} with labels {dict(rec.labels)}; use another thread_id"
        )


def find_run(ctx: Ctx, run: str, thread: str, ns: str) -> Flow[bool]:
    """Whether the run of a thread namespace exists (checking, once, that it is ours)."""
    if ctx.mem.known_run(run):
        return True
    try:
        rec = yield call("get_run", run)
    except NotFoundError:
        return False
    _check_run(rec, thread, ns)
    ctx.mem.add_run(run)
    return True


def ensure_run(ctx: Ctx, run: str, thread: str, ns: str) -> Flow[bool]:
    """Make the run if it is missing; True if this call made it."""
    if (yield from find_run(ctx, run, thread, ns)):
        return False
    try:
        yield call("create_run", run, agent=m.AGENT, labels=m.labels_for(thread, ns))
    except ConflictError:  # made by another writer just now
        _check_run((yield call("get_run", run)), thread, ns)
        ctx.mem.add_run(run)
        return False
    ctx.mem.add_run(run)
    return True


def _run_exists(run: str) -> Flow[bool]:
    try:
        yield call("get_run", run)
    except NotFoundError:
        return False
    return True


def thread_runs(thread: str | None) -> Flow[list[RunRecord]]:
    """Every run of a thread (all its namespaces), or of every thread."""
    labels = {"thread_id": thread} if thread is not None else None
    out: list[RunRecord] = []
    cursor = None
    while True:
        page = yield call("list_runs", agent=m.AGENT, labels=labels, limit=_PAGE, cursor=cursor)
        out.extend(page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def head_branch(branches: Sequence[BranchRecord], cid: str, prefer: str | None = None) -> str | None:
    """A branch that ``cid`` heads: ``prefer`` if it does, else ``main``, else the oldest."""
    names = [b.name for b in branches if b.head == cid]
    for name in (prefer, "main"):
        if name in names:
            return name
    return names[0] if names else None


def all_records(run: str, branches: Sequence[BranchRecord]) -> Flow[dict[str, CheckpointRecord]]:
    """Every checkpoint of a run: each branch walked back until known history."""
    seen: dict[str, CheckpointRecord] = {}
    for b in branches:
        cursor = b.head
        while cursor is not None and cursor not in seen:
            page = yield call("list_checkpoints", run, branch=b.name, limit=_PAGE, cursor=cursor)
            for rec in page.items:
                if rec.checkpoint_id in seen:
                    break
                seen[rec.checkpoint_id] = rec
            else:
                cursor = page.next_cursor
                continue
            break
    return seen


# -- reading -------------------------------------------------------------------

def _children(run: str, record: CheckpointRecord, branches: Sequence[BranchRecord]) -> Flow[list[str]]:
    """The checkpoints whose parent is ``record``: on its branch or on branches forked at it."""
    cid = record.checkpoint_id
    out: list[str] = []
    for b in branches:
        if b.head is None or b.head == cid or (b.name != record.branch and b.base != cid):
            continue
        cursor: str | None = b.head
        while cursor is not None:
            page = yield call("list_checkpoints", run, branch=b.name, limit=64, cursor=cursor)
            cursor = page.next_cursor
            for rec in page.items:
                if rec.parent_id == cid:
                    out.append(rec.checkpoint_id)
                if rec.parent_id == cid or rec.seq <= record.seq:
                    cursor = None
                    break
    return out


def writes_of(
    ctx: Ctx, run: str, record: CheckpointRecord, branches: Sequence[BranchRecord], children: list[str] | None = None
) -> Flow[list[PendingWrite]]:
    """The pending writes of one checkpoint, read from the three places they can be."""
    cid = record.checkpoint_id
    entries: list[JournalEntry] = list((yield call("list_journal", run, checkpoint_id=cid)))
    for b in branches:
        if b.head == cid:
            entries.extend((yield call("list_journal", run, pending_on=b.name)))
    if children is None:
        children = yield from _children(run, record, branches)
    for child in children:
        entries.extend((yield call("list_journal", run, checkpoint_id=child)))
    return m.pending_writes(ctx.serde, cid, entries)


def get_tuple(ctx: Ctx, config: RunnableConfig) -> Flow[CheckpointTuple | None]:
    thread, ns, cid = m.parse_config(config)
    run = m.run_id_for(thread, ns)
    if not (yield from find_run(ctx, run, thread, ns)):
        return None
    try:
        branches: list[BranchRecord] = yield call("list_branches", run)
        if cid is None:
            heads = [b.head for b in branches if b.head]
            if not heads:
                return None
            cid = max(heads)
        record: CheckpointRecord = yield call("get_checkpoint", run, cid)
        state = yield call("load_state", run, cid)
        writes = yield from writes_of(ctx, run, record, branches)
    except NotFoundError:
        return None
    head = head_branch(branches, cid, record.branch)
    ctx.mem.saw(run, cid, head)
    return m.to_tuple(ctx.serde, thread, ns, record, state, writes, head)


def _runs_to_list(ctx: Ctx, config: RunnableConfig | None) -> Flow[list[tuple[str, str, str]]]:
    conf = (config or {}).get("configurable") or {}
    if conf.get("thread_id") is not None and "checkpoint_ns" in conf:
        thread, ns, _ = m.parse_config(config)  # type: ignore[arg-type]  # not None here
        run = m.run_id_for(thread, ns)
        return [(run, thread, ns)] if (yield from find_run(ctx, run, thread, ns)) else []
    thread = str(conf["thread_id"]) if conf.get("thread_id") is not None else None
    runs = yield from thread_runs(thread)
    return [(r.run_id, r.labels.get("thread_id", ""), r.labels.get("checkpoint_ns", "")) for r in runs]


def list_checkpoints(
    ctx: Ctx,
    config: RunnableConfig | None,
    filter: Mapping[str, Any] | None,  # noqa: A002 - LangGraph's name
    before: RunnableConfig | None,
    limit: int | None,
) -> Stream:
    """Checkpoints newest first (by id), across every branch of the thread's runs."""
    only = ((config or {}).get("configurable") or {}).get("checkpoint_id")
    before_id = ((before or {}).get("configurable") or {}).get("checkpoint_id")
    found: list[tuple[CheckpointRecord, tuple[str, str, str], list[BranchRecord], dict[str, CheckpointRecord]]] = []
    for where in (yield from _runs_to_list(ctx, config)):
        try:
            branches = yield call("list_branches", where[0])
            records = yield from all_records(where[0], branches)
        except NotFoundError:
            continue
        for rec in records.values():
            if (only and rec.checkpoint_id != only) or (before_id and rec.checkpoint_id >= before_id):
                continue
            if m.matches(m.lg_metadata(rec), filter):
                found.append((rec, where, branches, records))
    found.sort(key=lambda f: f[0].checkpoint_id, reverse=True)
    if limit is not None:
        found = found[:limit]
    journals: dict[str, list[JournalEntry]] = {}
    for rec, (run, thread, ns), branches, records in found:
        try:
            state = yield call("load_state", run, rec.checkpoint_id)
            if len(found) > 4:  # one read of the journal beats a few reads per checkpoint
                if run not in journals:
                    journals[run] = yield call("list_journal", run)
                writes = m.pending_writes(ctx.serde, rec.checkpoint_id, journals[run])
            else:
                kids = [r.checkpoint_id for r in records.values() if r.parent_id == rec.checkpoint_id]
                writes = yield from writes_of(ctx, run, rec, branches, kids)
        except NotFoundError:  # deleted while we listed
            continue
        head = head_branch(branches, rec.checkpoint_id, rec.branch)
        yield Emit(m.to_tuple(ctx.serde, thread, ns, rec, state, writes, head))


# -- writing -------------------------------------------------------------------

def _fix_entry(ctx: Ctx, entry: tuple[str, Any]) -> tuple[str, Any]:
    """Wrap, in LangGraph's serde format, the write values clew's codec refuses."""
    kind, data = entry
    values = []
    for value in m.entry_values(data):
        try:
            _CHECK.dumps(value)
        except UnknownTypeError:
            value = m.wrap(ctx.serde, value)
        values.append(value)
    return kind, m.with_values(data, values)


def commit(
    ctx: Ctx, run: str, state: dict[str, Any], *, status: str | None = "running", **kwargs: Any
) -> Flow[CheckpointRecord]:
    """``Store.commit``; a channel or write the codec refuses is kept in LangGraph's serde format."""
    for _ in range(len(state) + 2):
        try:
            return (yield call("commit", run, state=state, status=status, **kwargs))
        except UnknownTypeError as exc:
            name = m.field_of_path(exc.path, state)
            if name is not None and type(state[name]) is not m.Serialized:
                state = {**state, name: m.wrap(ctx.serde, state[name])}
            elif exc.path.startswith("journal") and kwargs.get("journal"):
                kwargs["journal"] = [_fix_entry(ctx, e) for e in kwargs["journal"]]
            else:
                raise
    raise AssertionError("unreachable: every field wrapped")


def append(ctx: Ctx, run: str, entry: tuple[str, Any], branch: str) -> Flow[None]:
    try:
        yield call("append_journal", run, [entry], branch=branch)
    except UnknownTypeError:
        yield call("append_journal", run, [_fix_entry(ctx, entry)], branch=branch)


def _conflict(thread: str, ns: str, parent: str, cid: str) -> ConflictError:
    return ConflictError(
        f"LangGraph thread {thread!r} (checkpoint_ns {ns!r}): another writer moved the thread past "
        f"checkpoint {parent} while this one was working from it; checkpoint {cid} was not saved. "
        "Reload the thread (graph.get_state) and run again, or make the saver with on_conflict='fork' "
        "to keep both lines as branches"
    )


def put(
    ctx: Ctx, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata
) -> Flow[RunnableConfig]:
    thread, ns, parent = m.parse_config(config)
    run = m.run_id_for(thread, ns)
    cid = checkpoint["id"]
    lg_meta = _lg_metadata(config, metadata)
    state = dict(checkpoint["channel_values"])
    kind = m.kind_of(lg_meta)
    expect = (ctx.mem.head(run, parent) if parent else None) or m.expected_branch(config, parent)
    journal = ctx.mem.release(run, cid)  # writes that came before their checkpoint

    def go(branch: str, clew_parent: str | None, lg_parent: Any = ...) -> Flow[str]:
        meta = m.checkpoint_meta(checkpoint, lg_meta, lg_parent)
        yield from commit(ctx, run, state, parent=clew_parent, branch=branch, kind=kind, metadata=meta,
                          journal=journal, checkpoint_id=cid)
        ctx.mem.advanced(run, clew_parent, cid, branch)
        return branch

    def fork_and_go(name: str, at: str, lg_parent: Any = ...) -> Flow[str]:
        try:
            yield call("fork", run, checkpoint_id=at, branch=name)
        except ConflictError:  # made by an earlier attempt at this very checkpoint
            pass
        return (yield from go(name, at, lg_parent))

    def as_root(branches: Sequence[BranchRecord], lg_parent: Any) -> Flow[str]:
        heads = [b.head for b in branches if b.head]
        if not heads:
            return (yield from go("main", None, lg_parent))
        # A second root: kept on a branch off the latest checkpoint, so the run stays one chain.
        return (yield from fork_and_go(f"root-{cid}", max(heads), None if lg_parent is ... else lg_parent))

    def place(created: bool) -> Flow[str]:
        if created:
            return (yield from go("main", None, ... if parent is None else parent))
        if parent is not None and expect:
            return (yield from go(expect, parent))
        branches: list[BranchRecord] = yield call("list_branches", run)
        if parent is None:
            return (yield from as_root(branches, ...))
        if (at := head_branch(branches, parent)) is not None:
            return (yield from go(at, parent))
        try:
            yield call("get_checkpoint", run, parent)
        except NotFoundError:  # a parent this thread never stored: keep its id, start a root
            return (yield from as_root(branches, parent))
        return (yield from fork_and_go(f"fork-{cid}", parent))

    created = yield from ensure_run(ctx, run, thread, ns)
    try:
        try:
            branch = yield from place(created)
        except NotFoundError:
            if (yield from _run_exists(run)):
                raise
            ctx.mem.forget(run)  # deleted by someone else since we saw it: start it again
            branch = yield from place((yield from ensure_run(ctx, run, thread, ns)))
    except ConflictError as exc:
        try:
            yield call("get_checkpoint", run, cid)
        except NotFoundError:
            pass
        else:  # stored already: a checkpoint id is written once, a repeated put changes nothing
            return m.make_config(thread, ns, cid, ctx.mem.head(run, cid))
        if parent is None:  # another writer made the thread's first checkpoint just now
            branch = yield from as_root((yield call("list_branches", run)), ...)
        elif ctx.on_conflict == "fork":
            branch = yield from fork_and_go(f"conflict-{cid}", parent)
        else:
            raise _conflict(thread, ns, parent, cid) from exc
    return m.make_config(thread, ns, cid, branch)


def put_writes(
    ctx: Ctx, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
) -> Flow[None]:
    thread, ns, cid = m.parse_config(config)
    if cid is None:
        raise ValueError("put_writes needs a config naming its checkpoint (configurable.checkpoint_id)")
    run = m.run_id_for(thread, ns)
    entry = m.writes_entry(cid, task_id, task_path, writes)
    branch = ctx.mem.head(run, cid)
    if branch is None:
        if not ctx.mem.stored(run, cid):
            try:
                known = yield from find_run(ctx, run, thread, ns)
                if known:
                    yield call("get_checkpoint", run, cid)
            except NotFoundError:
                known = False
            if not known:
                ctx.mem.hold(run, cid, entry)  # committed with the checkpoint when it comes
                return
        branches: list[BranchRecord] = yield call("list_branches", run)
        branch = head_branch(branches, cid)
        if branch is None:  # the checkpoint has children already: keep its writes on a branch of their own
            branch = f"writes-{cid}"
            if all(b.name != branch for b in branches):
                yield call("fork", run, checkpoint_id=cid, branch=branch)
        ctx.mem.saw(run, cid, branch)
    yield from append(ctx, run, entry, branch)
    if m.has_interrupt(writes):
        yield call("update_run", run, status="paused")


def delete_thread(ctx: Ctx, thread_id: str) -> Flow[None]:
    for rec in (yield from thread_runs(thread_id)):
        try:
            yield call("delete_run", rec.run_id)
        except NotFoundError:
            pass
        ctx.mem.forget(rec.run_id)

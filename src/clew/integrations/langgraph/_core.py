"""What the saver's flows share: store calls, the saver's memory, run helpers.

A flow is a generator that yields :class:`Call` (a store method to run; the runner
sends back its result, or throws its clew error in) and, for listings,
:class:`Emit` (an item for the caller). The sync saver runs flows on a
:class:`~clew.Store`, the async saver on an :class:`~clew.AsyncStore`: one source,
so the twins cannot drift. It is the trick of :mod:`clew.store._ops`, one level up.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langgraph.checkpoint.serde.base import SerializerProtocol

from clew.codec import Codec
from clew.errors import ConflictError, NotFoundError, UnknownTypeError
from clew.integrations.langgraph import _mapping as m
from clew.store import BranchRecord, CheckpointRecord, RunRecord

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

    ``heads`` maps (run, checkpoint) to the branch this saver last knew it heading,
    for routing writes. ``expected`` maps (run, checkpoint) to the branch a read of
    this saver found it heading: a put on top of it expects it to head that branch
    still, which is how a second writer on a thread is told from a deliberate fork.
    An explicit read that finds the checkpoint heading nothing (time travel,
    ``update_state`` on an older checkpoint) clears it; the writer's own next
    checkpoint does not, so a second task that read the same head still conflicts.
    ``buffer`` holds writes for checkpoints not stored yet (LangGraph saves a
    checkpoint in the background while the next step's tasks already write).
    """

    def __init__(self, size: int = 4096) -> None:
        self._lock = threading.Lock()
        self._size = size
        self._heads: OrderedDict[Key, str] = OrderedDict()
        self._expected: OrderedDict[Key, str] = OrderedDict()
        self._stored: OrderedDict[Key, None] = OrderedDict()
        self._buffer: OrderedDict[Key, list[tuple[str, Any]]] = OrderedDict()
        self._runs: OrderedDict[str, None] = OrderedDict()
        self._legacy: OrderedDict[Key, bool] = OrderedDict()

    def _put(self, d: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        d[key] = value
        d.move_to_end(key)
        while len(d) > self._size:
            d.popitem(last=False)

    def head(self, run: str, cid: str) -> str | None:
        with self._lock:
            return self._heads.get((run, cid))

    def expected(self, run: str, cid: str) -> str | None:
        with self._lock:
            return self._expected.get((run, cid))

    def stored(self, run: str, cid: str) -> bool:
        with self._lock:
            return (run, cid) in self._stored

    def saw(self, run: str, cid: str, branch: str | None, *, explicit: bool = True) -> None:
        """A read found ``cid`` heading ``branch`` (None: no branch); ``explicit`` for get_tuple."""
        with self._lock:
            self._put(self._stored, (run, cid), None)
            if branch:
                self._put(self._heads, (run, cid), branch)
                self._put(self._expected, (run, cid), branch)
            else:
                self._heads.pop((run, cid), None)
                if explicit:
                    self._expected.pop((run, cid), None)

    def advanced(self, run: str, parent: str | None, cid: str, branch: str) -> None:
        with self._lock:
            if parent is not None and self._heads.get((run, parent)) == branch:
                del self._heads[(run, parent)]
            self._put(self._heads, (run, cid), branch)
            self._put(self._expected, (run, cid), branch)
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

    def legacy(self, thread: str, ns: str) -> bool | None:
        with self._lock:
            return self._legacy.get((thread, ns))

    def set_legacy(self, thread: str, ns: str, legacy: bool) -> None:
        with self._lock:
            self._put(self._legacy, (thread, ns), legacy)

    def forget(self, run: str) -> None:
        with self._lock:
            self._runs.pop(run, None)
            for key in [k for k in self._legacy if run in (k[0], m.legacy_run_id(*k))]:
                del self._legacy[key]
            for d in (self._heads, self._expected, self._stored, self._buffer):
                for key in [k for k in d if k[0] == run]:
                    del d[key]


@dataclass(slots=True)
class Ctx:
    """What every operation of one saver shares."""

    serde: SerializerProtocol
    mem: Memory
    on_conflict: str = "raise"
    verify_reads: bool = False


def verified(ctx: Ctx, run: str) -> Flow[None]:
    """With ``verify_reads``: re-hash the whole run (journal entries too) before use."""
    if ctx.verify_reads:
        (yield call("verify", run)).raise_for_problems()


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


def run_exists(run: str) -> Flow[bool]:
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


@dataclass(frozen=True, slots=True)
class Where:
    """Where one namespace of a thread lives: a run, and the prefix of its branches' names.

    The root namespace and every subgraph namespace share the thread's run; a
    namespace's branches are named ``<ns>/main``, ``<ns>/fork-<id>``... A store written
    before that keeps a namespace in a run of its own (``thread#ns``, prefix ``""``).
    """

    run: str
    thread: str
    ns: str
    prefix: str

    @property
    def label_ns(self) -> str:
        """The ``checkpoint_ns`` label of the run (the namespace's own only in a legacy run)."""
        return self.ns if self.run != self.thread else ""

    def branch(self, name: str) -> str:
        return self.prefix + name

    def mine(self, branches: Sequence[BranchRecord]) -> list[BranchRecord]:
        """The branches of this namespace, the late-writes one included."""
        return [b for b in branches if m.prefix_of(b.name) == self.prefix]

    def heads(self, branches: Sequence[BranchRecord]) -> list[str]:
        """The checkpoints heading this namespace's branches (never the run's anchor)."""
        late = self.branch(m.LATE)
        return [b.head for b in self.mine(branches) if b.head and b.head != m.ANCHOR and b.name != late]

    def holds(self, record: CheckpointRecord) -> bool:
        return record.checkpoint_id != m.ANCHOR and m.prefix_of(record.branch) == self.prefix


def locate(ctx: Ctx, thread: str, ns: str) -> Flow[Where]:
    """Where a namespace lives: a branch prefix of the thread's run, or its own legacy run."""
    if not ns:
        return Where(thread, thread, "", "")
    legacy = ctx.mem.legacy(thread, ns)
    if legacy is None:
        legacy = yield from find_run(ctx, m.legacy_run_id(thread, ns), thread, ns)
        ctx.mem.set_legacy(thread, ns, legacy)
    if legacy:
        return Where(m.legacy_run_id(thread, ns), thread, ns, "")
    return Where(thread, thread, ns, m.prefix_for(ns))


def head_branch(where: Where, branches: Sequence[BranchRecord], cid: str, prefer: str | None = None) -> str | None:
    """A branch of the namespace that ``cid`` heads: ``prefer`` if it does, else main, else the oldest."""
    late = where.branch(m.LATE)
    names = [b.name for b in where.mine(branches) if b.head == cid and b.name != late]
    for name in (prefer, where.branch("main")):
        if name in names:
            return name
    return names[0] if names else None


def all_records(
    run: str, branches: Sequence[BranchRecord], where: Where | None = None
) -> Flow[dict[str, CheckpointRecord]]:
    """Every checkpoint of a run, or of one namespace in it: each branch walked back until known history."""
    seen: dict[str, CheckpointRecord] = {}
    stop: set[str] = set()  # records of other namespaces, where a walk leaves this one
    for b in branches if where is None else where.mine(branches):
        cursor = b.head
        while cursor is not None and cursor not in seen and cursor not in stop:
            page = yield call("list_checkpoints", run, branch=b.name, limit=_PAGE, cursor=cursor)
            for rec in page.items:
                if rec.checkpoint_id in seen or rec.checkpoint_id in stop:
                    break
                if where is not None and not where.holds(rec):
                    stop.add(rec.checkpoint_id)
                    break
                seen[rec.checkpoint_id] = rec
            else:
                cursor = page.next_cursor
                continue
            break
    return seen


# -- writing -----------------------------------------------------------------


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
            record: CheckpointRecord = yield call("commit", run, state=state, status=status, **kwargs)
            return record
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

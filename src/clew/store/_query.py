"""The machinery every store operation uses: queries, the ``Op`` type and the shared context.

An operation is a generator: it yields :class:`Q` objects (or lists of them, a batch
that a pipelining runner sends in one round trip) and receives each query's result.
The sync and async runners of each backend execute them inside one transaction.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from clew.codec import Codec
from clew.store import _manifests, _state
from clew.store._blobcache import BlobCache
from clew.store._seal import SealKey
from clew.store._sql import Dialect

Mode = Literal["one", "all", "rowcount", "many", "exec", "blob"]
"""What a query returns: a row, all rows, the row count, or nothing (``many`` runs the
statement once per parameter tuple; ``exec`` needs no answer, so a pipelining runner
may send it with the next queries instead of waiting; ``blob`` is ``exec`` for
``insert_framed_blob``, whose last two parameters are the parts of one big value)."""


@dataclass(frozen=True, slots=True)
class Q:
    """One query for a runner to execute."""

    sql: str
    params: Sequence[Any]
    mode: Mode


@dataclass(slots=True)
class Tip:
    """A head this context committed, and the hashes of the entries it appended on the
    branch since (pending, in order)."""

    checkpoint_id: str
    pending: list[bytes]


class StaleTip(Exception):  # not an error the caller sees
    """A fast commit found the branch other than its writer last left it: nothing was
    written; the commit runs again, reading the branch first."""

    def __init__(self, run_id: str, branch: str) -> None:
        super().__init__(f"run {run_id!r} branch {branch!r} moved since this store last committed to it")


T = TypeVar("T")
Op = Generator[Q | list[Q], Any, T]
"""An operation: yields queries, receives their results, returns a ``T``."""


K = TypeVar("K")
V = TypeVar("V")

RUNS_REMEMBERED = 65_536
"""Runs whose internal key (and write key id) a store remembers, the most recently used."""


class Bounded(OrderedDict[K, V]):
    """A dict that forgets the entries set longest ago beyond ``size``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            try:
                self.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                break


class Context:
    """What operations share: dialect, codec and the writer's cache."""

    def __init__(
        self, dialect: Dialect, codec: Codec, *, cache_size: int = 256, seal_key: SealKey | None = None
    ) -> None:
        self.d = dialect
        self.codec = codec
        self.seal_key = seal_key
        self.encoder = _state.StateEncoder(codec)
        self._cache: dict[tuple[str, str], _state.StateCache] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.fault: str | None = None  # tests: raise before running the named query
        # run id -> internal key; only trusted by commit, whose first write re-checks it.
        # Bounded, as everything a long-lived process remembers per run: a run forgotten
        # here is looked up again by the next operation on it.
        self.run_keys: Bounded[str, int] = Bounded(RUNS_REMEMBERED)
        self.subject_kids: Bounded[str, str | None] = Bounded(RUNS_REMEMBERED)  # run id -> its write key id (_subjects)
        self.blobs = BlobCache()  # checked plaintexts, by run and address
        self.manifests = _manifests.Memo()  # whole manifests whose seal held, by run key and checkpoint
        # (run id, branch) -> the head this context committed, with nothing pending on the
        # branch then; and run id -> the run's journal counter as last seen. A fast commit
        # relies on both, and its head move checks they still hold.
        self.tips: dict[tuple[str, str], Tip] = {}
        self.journal_seqs: dict[str, int] = {}

    def q(self, name: str, params: Sequence[Any], mode: Mode = "one", **fmt: str) -> Q:
        if self.fault == name:
            raise RuntimeError(f"injected fault before {name}")
        text = self.d.sql[name]
        return Q(text.format(**fmt) if fmt else text, params, mode)

    def marks(self, n: int) -> str:
        return ", ".join(["?" if self.d.name == "sqlite" else "%s"] * n)

    def note_tip(self, run_id: str, branch: str, tip: Tip) -> None:
        """Remember a head this context committed (bounded like the state cache)."""
        with self._lock:
            self.tips.pop((run_id, branch), None)
            self.tips[(run_id, branch)] = tip
            while len(self.tips) > self._cache_size:
                self.tips.pop(next(iter(self.tips)))
            while len(self.journal_seqs) > self._cache_size:
                self.journal_seqs.pop(next(iter(self.journal_seqs)))

    def cached(self, run_id: str, branch: str, checkpoint_id: str) -> _state.StateCache | None:
        with self._lock:
            entry = self._cache.get((run_id, branch))
        return entry if entry is not None and entry.checkpoint_id == checkpoint_id else None

    def remember(self, run_id: str, branch: str, entry: _state.StateCache) -> None:
        with self._lock:
            self._cache.pop((run_id, branch), None)
            self._cache[(run_id, branch)] = entry
            while len(self._cache) > self._cache_size:
                self._cache.pop(next(iter(self._cache)))

    def forget(self, run_id: str) -> None:
        """Drop what this store remembers of a run: its writer cache and cached blobs."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == run_id]:
                del self._cache[key]
            for tip in [k for k in self.tips if k[0] == run_id]:
                del self.tips[tip]
            self.journal_seqs.pop(run_id, None)
        rk = self.run_keys.get(run_id)
        if rk is not None:
            self.blobs.drop_run(rk)
            self.manifests.drop_run(rk)


_id_lock = threading.Lock()
_id_last = [0, 0]  # the last millisecond and the counter within it


def new_id() -> str:
    """A time-ordered unique id (UUID version 7 layout, RFC 9562 method 1).

    Within one process ids also sort in creation order inside a millisecond: the
    12-bit ``rand_a`` field counts up from a random start.
    """
    rand = int.from_bytes(uuid.uuid4().bytes, "big")
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _id_last[0]:
            ms, seq = _id_last[0], _id_last[1] + 1
            if seq >= 1 << 12:  # 4096 ids in one millisecond: borrow the next one
                ms, seq = ms + 1, rand & 0x3FF
        else:
            seq = rand & 0x3FF  # leave headroom for the counter
        _id_last[0], _id_last[1] = ms, seq
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | (rand >> 66)
    return str(uuid.UUID(int=value))

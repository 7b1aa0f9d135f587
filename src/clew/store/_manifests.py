"""Checkpoint manifests as stored: whole, or as a change against the parent's.

A manifest maps each state field to where its content lives (:mod:`clew.store._state`).
From one step to the next most fields point where they did, and a chunked list's roots
are its parent's but for the last one or two. So when the writer knows the parent's
manifest, a checkpoint stores only the change, a *delta*::

    [depth, changed, dropped]

``changed`` maps each field that differs to its new entry, except that a chunked list
that kept a prefix of its parent's roots is ``["L", count, kept, new_roots]`` (a map
log likewise ``["M", ...]``);
``dropped`` lists fields the parent had and this state has not; ``depth`` counts the
deltas down to a whole manifest (1: the parent's is whole). A chain holds at most
:data:`CHAIN_MAX` rows, so a reader fetches a bounded number of rows, in one query
that follows the parent links. A delta is written only when it is smaller.

The stored form is a matter of layout only: a checkpoint's seal covers its *whole*
manifest's canonical bytes, rebuilt from the chain when read, so a damaged or moved
row anywhere in a chain fails the seal of every checkpoint that resolves through it,
and retention may turn a delta back into a whole manifest (when it prunes a row a
chain passes through) without touching any hash. A whole manifest is a msgpack map; a
delta is an array, told apart by its first byte.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clew.codec import Codec
from clew.errors import DecodeError, IntegrityError

CHAIN_MAX = 16
"""A whole manifest at least every this many checkpoints of a line."""

_PLAIN = Codec()
"""Decodes stored manifests, which are read before their seal is checked: never with the
store codec's pickle opt-in (a manifest holds only lists, strings, bytes and numbers)."""

_DELTA = 0x93  # a msgpack array of 3: [depth, changed, dropped]
_GROWN = {"l": "L", "m": "M"}
"""Entries whose roots a change may keep a prefix of: chunked lists and map logs."""
_GROWN_FROM = {v: k for k, v in _GROWN.items()}


@dataclass(frozen=True, slots=True)
class Known:
    """A checkpoint's whole manifest, decoded, and its depth as stored (0: whole)."""

    manifest: Mapping[str, Any]
    depth: int


class Memo:
    """Whole manifests rebuilt from stored rows, by run key and checkpoint id (bounded):
    a change whose parent is here resolves without reading the chain. Safe to trust
    because every read ends in the seal check of the checkpoint it returns: a manifest
    rebuilt from a damaged chain makes that check fail, never pass."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._items: OrderedDict[tuple[int, str], Known] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, rk: int, checkpoint_id: str) -> Known | None:
        with self._lock:
            return self._items.get((rk, checkpoint_id))

    def put(self, rk: int, checkpoint_id: str, known: Known) -> None:
        with self._lock:
            self._items[(rk, checkpoint_id)] = known
            self._items.move_to_end((rk, checkpoint_id))
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def drop_run(self, rk: int) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == rk]:
                del self._items[key]


def is_delta(plain: bytes) -> bool:
    """Whether a stored manifest's plaintext is a delta (a whole one is a msgpack map)."""
    return plain[:1] == bytes((_DELTA,))


def to_store(codec: Codec, manifest: Mapping[str, Any], plain: bytes, parent: Known | None) -> tuple[bytes, int]:
    """The plaintext to store for ``manifest`` (whose canonical bytes are ``plain``),
    and its depth: a delta against ``parent`` when that is known and pays."""
    if parent is None or parent.depth + 1 >= CHAIN_MAX:
        return plain, 0
    base = parent.manifest
    changed: dict[str, Any] = {}
    for name, entry in manifest.items():
        old = base.get(name)
        if old == entry:
            continue
        if entry[0] in _GROWN and old is not None and old[0] == entry[0]:
            roots, prev = entry[2], old[2]
            kept = 0
            while kept < min(len(roots), len(prev)) and roots[kept] == prev[kept]:
                kept += 1
            changed[name] = [_GROWN[entry[0]], entry[1], kept, roots[kept:]]
        else:
            changed[name] = entry
    dropped = sorted(name for name in base if name not in manifest)
    delta = codec.dumps([parent.depth + 1, changed, dropped], "manifest")[0]
    if len(delta) >= len(plain):
        return plain, 0
    return delta, parent.depth + 1


def parse(plain: bytes, checkpoint_id: str) -> tuple[int, dict[str, Any], list[str]]:
    """A delta's ``(depth, changed, dropped)``, checked for shape."""
    try:
        depth, changed, dropped = _PLAIN.loads(plain)
    except (DecodeError, ValueError, TypeError):
        raise IntegrityError(f"checkpoint {checkpoint_id}: its stored manifest is malformed") from None
    if (
        type(depth) is not int
        or not 0 < depth < CHAIN_MAX
        or not isinstance(changed, dict)
        or not isinstance(dropped, list)
        or not all(type(k) is str and isinstance(e, list) and e for k, e in changed.items())
        or not all(type(k) is str for k in dropped)
    ):
        raise IntegrityError(f"checkpoint {checkpoint_id}: its stored manifest is malformed")
    return depth, changed, dropped


def apply(
    base: Mapping[str, Any], changed: Mapping[str, Any], dropped: Sequence[str], checkpoint_id: str
) -> dict[str, Any]:
    """The whole manifest a delta makes of its parent's."""
    gone = set(dropped)
    out = {name: entry for name, entry in base.items() if name not in gone}
    for name, entry in changed.items():
        if entry[0] in _GROWN_FROM:
            old = base.get(name)
            kind = _GROWN_FROM[entry[0]]
            try:
                _, count, kept, new = entry
                if old is None or old[0] != kind or not 0 <= kept <= len(old[2]):
                    raise ValueError
                out[name] = [kind, count, [*old[2][:kept], *new]]
            except (ValueError, TypeError):
                raise IntegrityError(
                    f"checkpoint {checkpoint_id}: its manifest's change to list {name!r} does not fit its parent's"
                ) from None
        else:
            out[name] = entry
    try:
        return dict(sorted(out.items()))
    except TypeError:  # a field name that is not a string: only a damaged row has one
        raise IntegrityError(f"checkpoint {checkpoint_id}: its manifest names a field that is not a string") from None


Unwrap = Callable[[bytes], bytes]
"""Turns a stored manifest into its plaintext (it may be encrypted)."""


def resolve_rows(
    unwrap: Unwrap,
    checkpoint_id: str,
    rows: Sequence[Sequence[Any]],
    into: dict[str, Known] | None = None,
) -> Known:
    """The whole manifest of ``rows[0]``'s checkpoint, from its chain: ``(n, checkpoint_id,
    parent_id, stored manifest)`` rows, ``n`` counting up from 0 along the parent links.
    ``into`` receives the whole manifest of every row of the chain rebuilt on the way."""
    plains: list[bytes] = []
    for i, (n, cid, _parent, stored) in enumerate(rows):
        if n != i:
            break
        data = bytes(stored)
        if not data:
            raise IntegrityError(
                f"checkpoint {checkpoint_id}: the manifest of {cid}, which its own builds on, was pruned"
            )
        plain = bytes(unwrap(data))
        plains.append(plain)
        if not is_delta(plain):
            break
    else:
        raise IntegrityError(
            f"checkpoint {checkpoint_id}: its manifest's chain of changes reaches no whole manifest"
            f" ({len(rows)} rows read)"
        )
    if not plains or is_delta(plains[-1]):
        raise IntegrityError(f"checkpoint {checkpoint_id}: its manifest's chain of changes is broken")
    try:
        manifest: dict[str, Any] = _PLAIN.loads(plains[-1])
    except (DecodeError, ValueError, TypeError):
        raise IntegrityError(f"checkpoint {checkpoint_id}: a manifest in its chain is malformed") from None
    if not isinstance(manifest, dict) or not all(type(k) is str for k in manifest):
        raise IntegrityError(f"checkpoint {checkpoint_id}: a manifest in its chain is not a map of fields")
    known = Known(manifest, 0)
    if into is not None:
        into[str(rows[len(plains) - 1][1])] = known
    for i in range(len(plains) - 2, -1, -1):
        cid = str(rows[i][1])
        depth, changed, dropped = parse(plains[i], cid)
        known = Known(apply(known.manifest, changed, dropped, cid), depth)
        if into is not None:
            into[cid] = known
    return known


def chain_of(rows_by_id: Mapping[str, Sequence[Any]], checkpoint_id: str) -> list[tuple[int, str, Any, Any]]:
    """A checkpoint's chain from rows already at hand (``checkpoint_id -> (parent_id,
    stored manifest)``): its own row and its ancestors', up to :data:`CHAIN_MAX`."""
    out: list[tuple[int, str, Any, Any]] = []
    cid: str | None = checkpoint_id
    while cid is not None and cid in rows_by_id and len(out) < CHAIN_MAX:
        parent, stored = rows_by_id[cid]
        out.append((len(out), cid, parent, stored))
        cid = parent
    return out


def resolve_all(unwrap: Unwrap, rows_by_id: Mapping[str, Sequence[Any]]) -> dict[str, Known | IntegrityError]:
    """Every whole manifest of a run whose rows are all at hand (verify, retention), in
    the order of ``rows_by_id`` (by seq: parents first): each checkpoint's, or the error
    that stops it. Pruned rows are left out."""
    out: dict[str, Known | IntegrityError] = {}
    for cid, (parent, stored) in rows_by_id.items():
        if not bytes(stored):
            continue
        try:
            plain = bytes(unwrap(bytes(stored)))
            if not is_delta(plain):
                manifest = _PLAIN.loads(plain)
                if not isinstance(manifest, dict) or not all(type(k) is str for k in manifest):
                    raise IntegrityError(f"checkpoint {cid}: its manifest is not a map of fields")
                out[cid] = Known(manifest, 0)
                continue
            base = out.get(parent) if parent is not None else None
            if isinstance(base, Known):
                depth, changed, dropped = parse(plain, cid)
                out[cid] = Known(apply(base.manifest, changed, dropped, cid), depth)
            elif isinstance(base, IntegrityError):
                out[cid] = IntegrityError(f"checkpoint {cid}: its manifest builds on its parent's, which is unreadable")
            else:
                out[cid] = resolve_rows(unwrap, cid, chain_of(rows_by_id, cid))
        except IntegrityError as exc:
            out[cid] = exc
        except (DecodeError, ValueError, TypeError) as exc:
            out[cid] = IntegrityError(f"checkpoint {cid}: its stored manifest cannot be read: {exc}")
    return out


def through(rows_by_id: Mapping[str, Sequence[Any]], checkpoint_id: str, unwrap: Unwrap) -> list[str]:
    """The checkpoints a stored delta resolves through (its parent, the parent's parent,
    ... down to the whole manifest); empty for a whole manifest."""
    out: list[str] = []
    cid = checkpoint_id
    while True:
        parent, stored = rows_by_id[cid]
        data = bytes(stored)
        if not data or not is_delta(bytes(unwrap(data))) or parent is None or parent not in rows_by_id:
            return out
        out.append(parent)
        cid = parent

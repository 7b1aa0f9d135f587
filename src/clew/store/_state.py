"""State to manifest + content-addressed blobs, and back. Pure: no I/O.

A state is a mapping of top-level fields. Each field becomes a manifest entry:

``["v", addr]``
    the whole value in one blob.
``["t", shape, addr, height, count, deep]``
    a large container (dict, dataclass, Pydantic model, or a list nested in one) as a
    content-defined tree of blobs, see :mod:`clew.store._tree`.
``["l", n, [[addr, count, height], ...]]``
    a *chunked list* of ``n`` items. Items live in leaf blobs (height 0), written as
    they are appended, so appending writes only the new items. Leaves are gathered
    under index nodes (height h > 0, ``FANOUT`` children each, themselves blobs) the
    way a binary counter carries: when the last ``FANOUT`` roots share a height they
    merge. The manifest holds the few roots, so it stays small however long the list.
``["m", n, [[addr, count, height], ...]]``
    a *map log* of ``n`` keys: a large ``str``-keyed dict of small values, kept as the
    changes of each step, in leaf blobs under index nodes exactly like a chunked list's
    (``count`` counts changes, not keys). A leaf is the canonical map of the keys a step
    set, or ``[deleted keys, that map]`` when it deleted some; the dict is the leaves
    applied in order (its keys then sorted, as any decoded dict's), so a step that adds
    a key writes that entry and nothing else, wherever the key sorts. When
    the log holds more than twice as many changes as keys (plus :data:`MAP_SLACK`) it
    is written again from the live entries. A dict with a large container among its
    values (one that would be a tree of its own) is a tree instead, so edits deep
    inside it stay small.

To know what changed without re-encoding the whole state each step, the writer keeps,
per (run, branch), the last checkpoint's fields and a private decoded copy of them
(the *snapshot*). A field equal (``==``) to its snapshot reuses its address; a list
whose old items equal the snapshot only encodes the new ones. Anything else is
encoded again in full, which gives the same addresses for unchanged content, so
correctness never rests on the cache: it only saves work.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import operator
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import ormsgpack

from clew.codec import Codec
from clew.codec._envelope import Framed, Plain
from clew.codec._parts import parts as _parts
from clew.codec._types import is_pydantic_class
from clew.errors import IntegrityError, InvalidStateError
from clew.store import _manifests, _tree

FANOUT = 8
LEAF_MAX_ITEMS = 64
LEAF_MAX_BYTES = 64 * 1024
MAP_SLACK = 64
"""A map log is written again once it holds more than ``2 * keys + MAP_SLACK`` changes."""


@dataclass(slots=True)
class ValueCache:
    addr: bytes
    _snapshot: Any
    _plain: Plain | None = None  # when set, the snapshot is decoded from it on first use
    _codec: Codec | None = None
    ref: Any = None  # the caller's own object at the last commit

    @property
    def snapshot(self) -> Any:
        if self._plain is not None:
            assert self._codec is not None
            self._snapshot = self._codec.loads(self._plain)
            self._plain = None
        return self._snapshot


@dataclass(slots=True)
class ListCache:
    leaves: list[tuple[bytes, int]]  # (address, item count) in order
    roots: list[tuple[bytes, int, int]]  # (address, item count, height)
    _snapshot: list[Any] | None  # decoded private copy of the items
    _plain: bytes | None = None  # or the bytes to decode it from, on first use
    _codec: Codec | None = None
    refs: list[Any] | None = None  # the caller's own items at the last commit
    decoded: bool = False  # the snapshot was decoded by a load (shares nothing with the caller)

    @property
    def snapshot(self) -> list[Any]:
        if self._snapshot is None:
            assert self._plain is not None and self._codec is not None
            self._snapshot = list(self._codec.loads(self._plain))
            self._plain = None
        return self._snapshot


@dataclass(slots=True)
class MapCache:
    leaves: list[tuple[bytes, int]]  # (address, change count) in order
    roots: list[tuple[bytes, int, int]]  # (address, change count, height)
    _snapshot: dict[str, Any] | None  # decoded private copy of the dict
    _plains: list[Plain] | None = None  # or the leaves to fold it from, on first use
    _codec: Codec | None = None
    refs: dict[str, Any] | None = None  # the caller's own values at the last commit
    changes: int = 0  # changes in the log (keys set and deleted, over all its leaves)

    @property
    def snapshot(self) -> dict[str, Any]:
        if self._snapshot is None:
            assert self._plains is not None and self._codec is not None
            self._snapshot = fold_map([self._codec.loads(p) for p in self._plains], "a map log")
            self._plains = None
        return self._snapshot


@dataclass(slots=True)
class TreeCache:
    enc: _tree.Enc  # the field's tree, with the caller's objects and snapshots in it


FieldCache = ValueCache | ListCache | MapCache | TreeCache


@dataclass(slots=True)
class StateCache:
    """What the writer remembers of one checkpoint's state."""

    checkpoint_id: str
    fields: dict[str, FieldCache]
    hash: bytes = b""  # the checkpoint's hash, when this process wrote it
    present: frozenset[bytes] = frozenset()  # tree blobs known to be stored (read by a load)
    manifest: _manifests.Known | None = None  # its whole manifest: the next one is stored as a change to it


@dataclass(slots=True)
class EncodedState:
    manifest: dict[str, Any]
    blobs: dict[bytes, bytes | Framed] = field(default_factory=dict)  # address -> envelope
    cache: dict[str, FieldCache] = field(default_factory=dict)


def array_header(n: int) -> bytes:
    """The msgpack header of an array of ``n`` items (the shortest form, as packb writes)."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def array_body(plain: Plain) -> Plain:
    """The items of an encoded array, without its header."""
    first = plain[0]
    skip = 1 if first & 0xF0 == 0x90 else 3 if first == 0xDC else 5 if first == 0xDD else -1
    if skip < 0:
        raise ValueError("not a msgpack array")
    return plain[skip:]


def join_arrays(plains: list[Plain], n: int) -> bytes:
    """One array holding the items of several encoded arrays, ``n`` items in all."""
    return array_header(n) + b"".join(array_body(p) for p in plains)


def check_fields(state: object, path: str = "state") -> None:
    """A state is a mapping of field names (valid UTF-8 text) to values.

    Raises:
        InvalidStateError: it is something else.
    """
    if not isinstance(state, Mapping):
        raise InvalidStateError(
            f"{path} must be a mapping of field names to values (a dict), not {type(state).__name__}"
        )
    for name in state:
        if type(name) is not str:
            raise InvalidStateError(f"{path} field names must be str, not {type(name).__name__} ({name!r})")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidStateError(f"{path} field name {name!r} is not valid UTF-8 (a lone surrogate)") from None


class StateEncoder:
    """Turns states into manifests and the blobs they need (pure, reusable)."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.trees = _tree.TreeEncoder(codec, _same)

    def encode(self, state: Mapping[str, Any], previous: StateCache | None, path: str = "state") -> EncodedState:
        check_fields(state, path)
        out = EncodedState(manifest={})
        prev_fields = previous.fields if previous else {}
        for name in sorted(state):
            value = state[name]
            prev = prev_fields.get(name)
            fpath = f"{path}.{name}"
            if type(value) is list:
                self._encode_list(out, name, value, prev if isinstance(prev, ListCache) else None, fpath)
            elif isinstance(prev, MapCache) and type(value) is dict:
                self._encode_map(out, name, value, prev, fpath)
            else:
                self._encode_value(out, name, value, prev if isinstance(prev, ValueCache | TreeCache) else None, fpath)
        if previous is not None and previous.present:
            out.blobs = {a: d for a, d in out.blobs.items() if a not in previous.present}
        return out

    def _put(self, out: EncodedState, plain: bytes, pickled: bool) -> bytes:
        addr = self.codec.address(plain)
        if addr not in out.blobs:
            out.blobs[addr] = self.codec.wrap_framed(plain, pickled=pickled)
        return addr

    def _encode_value(
        self, out: EncodedState, name: str, value: Any, prev: ValueCache | TreeCache | None, path: str
    ) -> None:
        if isinstance(prev, ValueCache) and _same(value, prev.snapshot, prev.ref):
            out.manifest[name] = ["v", prev.addr]
            prev.ref = value
            out.cache[name] = prev
            return
        made = _tree.Out()
        enc = self.trees.encode(value, path, prev.enc if isinstance(prev, TreeCache) else None, made)
        if enc.tree is not None and type(value) is dict and not enc.tree.deep:  # large, flat: a map log
            self._encode_map(out, name, value, None, path)
            return
        for addr, (plain, pickled) in made.blobs.items():
            if addr not in out.blobs:
                out.blobs[addr] = self.codec.wrap_framed(plain, pickled=pickled)
        if enc.tree is None:
            assert enc.plain is not None
            addr = enc.digest  # the address of its plaintext
            if addr not in out.blobs:
                out.blobs[addr] = self.codec.wrap_framed(enc.plain, pickled=enc.pickled)
            out.manifest[name] = ["v", addr]
            out.cache[name] = ValueCache(addr, enc.snapshot(self.codec), None, self.codec, value)
        else:
            t = enc.tree
            out.manifest[name] = ["t", *t.ref]
            out.cache[name] = TreeCache(enc)

    def _encode_list(self, out: EncodedState, name: str, items: list[Any], prev: ListCache | None, path: str) -> None:
        leaves: list[tuple[bytes, int]]
        roots: list[tuple[bytes, int, int]]
        if (
            prev is not None
            and len(items) >= len(prev.snapshot)
            and _same_items(items[: len(prev.snapshot)], prev.snapshot, prev.refs)
        ):
            leaves, roots, snapshot = list(prev.leaves), list(prev.roots), list(prev.snapshot)
            start = len(prev.snapshot)
            rebuilt = False
            if prev.decoded:  # once after a load: share atoms with the caller's items from now on
                snapshot = [_tree.copy_or(x, s) for x, s in zip(items[:start], snapshot, strict=True)]
        else:
            leaves, roots, snapshot, start, rebuilt = [], [], [], 0, True
        new_leaves = self._write_leaves(out, items, start, snapshot, path)
        leaves.extend(new_leaves)
        if rebuilt:
            roots = []
            for leaf in leaves:
                self._push(out, roots, leaf)
        else:
            for leaf in new_leaves:
                self._push(out, roots, leaf)
        out.manifest[name] = ["l", len(items), [[a, c, h] for a, c, h in roots]]
        out.cache[name] = ListCache(leaves, roots, snapshot, refs=list(items))

    def _encode_map(
        self, out: EncodedState, name: str, value: dict[Any, Any], prev: MapCache | None, path: str
    ) -> None:
        """``value`` as a map log: the changes since ``prev`` appended, or all of it afresh."""
        sets: dict[str, Any] | None = None
        dels: list[str] = []
        if prev is not None:
            snapshot = prev.snapshot
            sets, dels = _map_changes(value, snapshot, prev.refs or {})
            if sets is not None and not sets and not dels:  # unchanged
                out.manifest[name] = ["m", len(value), [[a, c, h] for a, c, h in prev.roots]]
                prev.refs = dict(value)
                out.cache[name] = prev
                return
            if sets is None or prev.changes + len(sets) + len(dels) > 2 * len(value) + MAP_SLACK:
                prev = None  # a key that is not a str, or a log mostly of overwritten changes
        if prev is None or sets is None:
            if not all(type(k) is str for k in value):
                self._encode_value(out, name, value, None, path)  # one blob, whose encoding handles such keys
                return
            leaves: list[tuple[bytes, int]] = []
            roots: list[tuple[bytes, int, int]] = []
            snapshot, changes, chunks, dels = {}, 0, _map_chunks(value), []
        else:
            leaves, roots, snapshot, changes = list(prev.leaves), list(prev.roots), dict(snapshot), prev.changes
            chunks = [sets]
        for i, chunk in enumerate(chunks):
            gone = dels if i == 0 else []
            plain, pickled = self.codec.dumps(chunk, path)
            if len(plain) >= _tree.TREE_MIN and _holds_tree(self.codec, chunk, path):
                self._encode_value(out, name, value, None, path)  # a large container inside: a tree
                return
            for k in gone:
                del snapshot[k]
            snapshot.update(_tree.private_copy(chunk, plain, self.codec))
            if gone:
                plain = self.codec.dumps([gone, chunk], path)[0]
            leaf = (self._put(out, plain, pickled), len(chunk) + len(gone))
            leaves.append(leaf)
            self._push(out, roots, leaf)
            changes += leaf[1]
        out.manifest[name] = ["m", len(value), [[a, c, h] for a, c, h in roots]]
        out.cache[name] = MapCache(leaves, roots, snapshot, refs=dict(value), changes=changes)

    def _write_leaves(
        self, out: EncodedState, items: list[Any], start: int, snapshot: list[Any], path: str
    ) -> list[tuple[bytes, int]]:
        leaves: list[tuple[bytes, int]] = []
        chunk: list[bytes] = []
        size = 0
        pickled_any = False

        def flush() -> None:
            nonlocal chunk, size, pickled_any
            plain = array_header(len(chunk)) + b"".join(chunk)
            leaves.append((self._put(out, plain, pickled_any), len(chunk)))
            chunk, size, pickled_any = [], 0, False

        for i in range(start, len(items)):
            plain, pickled = self.codec.dumps(items[i], f"{path}[{i}]")
            snapshot.append(_tree.private_copy(items[i], plain, self.codec))
            if chunk and (len(chunk) >= LEAF_MAX_ITEMS or size + len(plain) > LEAF_MAX_BYTES):
                flush()
            chunk.append(plain)
            size += len(plain)
            pickled_any |= pickled
        if chunk:
            flush()
        return leaves

    def _push(self, out: EncodedState, roots: list[tuple[bytes, int, int]], leaf: tuple[bytes, int]) -> None:
        roots.append((leaf[0], leaf[1], 0))
        while len(roots) >= FANOUT and len({h for _, _, h in roots[-FANOUT:]}) == 1:
            group = roots[-FANOUT:]
            del roots[-FANOUT:]
            plain = ormsgpack.packb([[a, c] for a, c, _ in group])
            addr = self._put(out, plain, False)
            roots.append((addr, sum(c for _, c, _ in group), group[0][2] + 1))


_MISSING = object()
_IMMUTABLE = frozenset((str, bytes, int, float, bool, type(None)))


def _map_changes(
    value: dict[Any, Any], snapshot: dict[str, Any], refs: dict[str, Any]
) -> tuple[dict[str, Any] | None, list[str]]:
    """The keys ``value`` sets (new or changed) and deletes against ``snapshot``; ``None``
    for the first when a key is not a ``str``. A value that is still the very immutable
    object written last time is unchanged without a comparison."""
    sets: dict[str, Any] = {}
    new = 0
    for k, v in value.items():
        r = refs.get(k, _MISSING)
        if v is r and type(v) in _IMMUTABLE:
            continue
        s = snapshot.get(k, _MISSING)
        if type(k) is not str:
            return None, []
        if s is _MISSING:
            sets[k] = v
            new += 1
        elif not _same(v, s, r):
            sets[k] = v
    dels = sorted(k for k in snapshot if k not in value) if len(value) - new < len(snapshot) else []
    return sets, dels


def _map_chunks(value: dict[str, Any]) -> list[dict[str, Any]]:
    """A dict's entries, in order, cut into leaves of at most ``LEAF_MAX_ITEMS``."""
    items = list(value.items())
    return [dict(items[i : i + LEAF_MAX_ITEMS]) for i in range(0, len(items), LEAF_MAX_ITEMS)]


def _holds_tree(codec: Codec, chunk: dict[str, Any], path: str) -> bool:
    """Whether a value of ``chunk`` is a container large enough to be a tree of its own."""
    return any(
        _parts(v) is not None and len(codec.dumps(v, f"{path}[{k!r}]")[0]) >= _tree.TREE_MIN for k, v in chunk.items()
    )


def fold_map(leaves: list[Any], where: str) -> dict[str, Any]:
    """The dict a map log's decoded leaves make, applied in order, keys sorted.

    Raises:
        IntegrityError: a leaf is neither a map of str keys nor ``[deleted keys, map]``.
    """
    out: dict[Any, Any] = {}
    for leaf in leaves:
        if type(leaf) is dict:
            out.update(leaf)
            continue
        if type(leaf) is list and len(leaf) == 2 and type(leaf[0]) is list and type(leaf[1]) is dict:
            for k in leaf[0]:
                if type(k) is not str or out.pop(k, _MISSING) is _MISSING:
                    raise IntegrityError(f"{where} deletes a key it does not hold")
            out.update(leaf[1])
            continue
        raise IntegrityError(f"{where} has a leaf that is not a map")
    try:
        keys = sorted(out)  # as every decoded dict: keys sorted (docs/codec.md)
    except TypeError:
        keys = []
    if len(keys) != len(out) or not all(type(k) is str for k in keys):
        raise IntegrityError(f"{where} has a leaf that is not a map of str keys")
    return {k: out[k] for k in keys}


def map_of_log(leaves: list[Any], counts: list[int], keys: int, where: str) -> dict[str, Any]:
    """The dict of a map log from its decoded leaves, checked: each leaf holds the changes
    its index node counts, and the dict the number of keys its manifest says.

    Raises:
        IntegrityError: it does not, or a leaf is malformed.
    """
    for leaf, count in zip(leaves, counts, strict=True):
        if _map_leaf_count(leaf) != count:
            raise IntegrityError(f"{where} has a leaf of other than the {count} changes its index counts")
    out = fold_map(leaves, where)
    if len(out) != keys:
        raise IntegrityError(f"{where} holds {len(out)} keys, manifest says {keys}")
    return out


def _map_leaf_count(leaf: Any) -> int:
    """The changes a decoded map-log leaf holds (keys set and deleted)."""
    if type(leaf) is list and len(leaf) == 2 and type(leaf[0]) is list:
        return len(leaf[0]) + (len(leaf[1]) if type(leaf[1]) is dict else 0)
    return len(leaf) if type(leaf) is dict else -1


def _same(a: Any, b: Any, ref: Any) -> bool:
    """Whether ``a`` encodes like the snapshot ``b``: equal *and* alike.

    ``==`` alone is too loose: ``1 == True == 1.0``, ``Decimal("1.0") == Decimal("1.00")``,
    ``0.0 == -0.0`` and one instant in two time zones are equal but encode differently.
    The type-by-type check is skipped for ``ref``, the very object written last time:
    an object can only change type inside through in-place mutation, a rare case that
    ``==`` still catches unless the new value is equal to the old.
    """
    try:
        return bool(a == b) and (a is ref or _alike(a, b))
    except Exception:  # an __eq__ that raises: treat as changed and re-encode
        return False


def _same_items(items: list[Any], snapshot: list[Any], refs: list[Any] | None) -> bool:
    """:func:`_same` for a list prefix; the caller's own unchanged items cost no more than ``==``."""
    try:
        if not _models_equal(items, snapshot) and items != snapshot:
            return False
    except Exception:
        return False
    if refs is not None and len(refs) == len(items) and all(map(operator.is_, items, refs)):
        return True
    known = refs if refs is not None and len(refs) == len(items) else [None] * len(items)
    return all(x is r or _alike(x, s) for x, s, r in zip(items, snapshot, known, strict=True))


_DICT = operator.attrgetter("__dict__")
_EXTRA = operator.attrgetter("__pydantic_extra__")
_PRIVATE = operator.attrgetter("__pydantic_private__")
_PLAIN_EQ: dict[type, bool] = {}


def _plain_eq(cls: type) -> bool:
    """Whether ``cls`` is a Pydantic model that compares with Pydantic's own ``__eq__``."""
    known = _PLAIN_EQ.get(cls)
    if known is None:
        known = _PLAIN_EQ[cls] = is_pydantic_class(cls) and cls.__eq__ is sys.modules["pydantic"].BaseModel.__eq__
    return known


def _models_equal(items: list[Any], snapshot: list[Any]) -> bool:
    """A sufficient test of ``items == snapshot`` for lists of Pydantic models (messages),
    at C speed: the same classes, and equal ``__dict__``, extra and private values, which
    is where Pydantic's ``__eq__`` answers True too. False means "ask ``==``"."""
    if len(items) != len(snapshot) or not items:
        return False
    types = list(map(type, items))
    if types != list(map(type, snapshot)) or not all(map(_plain_eq, set(types))):
        return False
    try:
        return (
            list(map(_DICT, items)) == list(map(_DICT, snapshot))
            and list(map(_EXTRA, items)) == list(map(_EXTRA, snapshot))
            and list(map(_PRIVATE, items)) == list(map(_PRIVATE, snapshot))
        )
    except AttributeError:  # a model built around Pydantic's own __init__
        return False


# Types whose equal values always encode to the same bytes.
_EXACT = frozenset((str, bytes, int, bool, type(None)))


def _alike(a: Any, b: Any) -> bool:
    """For two equal values: the same types all the way down, and the same form where == hides it."""
    t = type(a)
    if t is not type(b):
        return False
    if t in _EXACT:
        return True
    if t is dict:  # non-str keys may be equal but not alike (1, True): let the encoder decide
        for k, v in a.items():
            w = b[k]
            if type(k) is not str or (type(v) is not type(w)) or (type(v) not in _EXACT and not _alike(v, w)):
                return False
        return True
    if t is list or t is tuple:
        for v, w in zip(a, b, strict=True):
            if type(v) is not type(w) or (type(v) not in _EXACT and not _alike(v, w)):
                return False
        return True
    if t is set or t is frozenset:
        return all(type(x) is str or type(x) is bytes for x in a)
    if t is float:
        return math.copysign(1.0, a) == math.copysign(1.0, b)
    if t is Decimal:
        return bool(a.as_tuple() == b.as_tuple())
    if t is dt.datetime or t is dt.time:
        return repr(a) == repr(b)
    if dataclasses.is_dataclass(a):
        return all(_alike(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    fields = getattr(t, "model_fields", None)  # a Pydantic model: its fields, extras and fields set
    if isinstance(fields, dict) and hasattr(a, "model_fields_set"):
        return (
            a.model_fields_set == b.model_fields_set
            and all(_alike(getattr(a, name), getattr(b, name)) for name in fields)
            and _alike(a.__pydantic_extra__ or {}, b.__pydantic_extra__ or {})
        )
    return True


def manifest_roots(entry: list[Any]) -> list[tuple[bytes, int, int]]:
    return [(bytes(a), int(c), int(h)) for a, c, h in entry[2]]


def node_children(plain: Plain) -> list[tuple[bytes, int]]:
    return [(bytes(a), int(c)) for a, c in ormsgpack.unpackb(plain)]

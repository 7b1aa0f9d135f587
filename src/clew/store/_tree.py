"""Large containers as content-defined trees of blobs (prolly trees). Pure: no I/O.

A value nested in a state field is a *container* when the codec can take it apart
(:mod:`clew.codec._parts`: lists, str-keyed dicts, dataclasses, Pydantic models). A
container whose *weight* reaches :data:`TREE_MIN` bytes is stored as a tree; any other
value is stored *inline*, as its canonical bytes. The weight of an inline value is the
length of those bytes; a tree's is the sum of its entries' weights and key lengths.
Since that sum never exceeds the container's own encoded length, a container that
encodes to less than :data:`TREE_MIN` bytes is inline without looking inside.

A tree's entries (the items of a list; the ``(key, value)`` pairs of the rest, by key)
are cut into *leaves* at content-defined boundaries: an entry ends a leaf when a hash
of it (of its key, for keyed containers) falls below a threshold proportional to its
size, so leaves hold about :data:`LEAF_TARGET` bytes, or when the leaf reaches
:data:`LEAF_MAX` bytes. Leaves are gathered under index nodes the same way (by the hash
of each child's address, about :data:`INDEX_TARGET` children each) up to one root.

Boundaries depend only on the content, never on the order of edits, so equal
containers give equal root addresses whatever their history (the encoding is
canonical), and changing, adding or removing one entry rewrites its leaf and the
index nodes above it: ``O(change + log n)`` bytes. Nested containers are trees of
their own, referenced from their parent's leaf, so an edit deep inside a state
rewrites one path of leaves.

Blob formats (canonical msgpack):

leaf
    ``[keys | nil, values, refs]``: ``values`` holds inline values (``nil`` where a
    subtree goes) and ``refs`` lists ``[index, shape, addr, height, count, deep]`` of
    each subtree entry.
index node
    ``[[addr, count, deep], ...]``: children (one level down), their entry counts, and
    whether any leaf below holds a subtree (so a reader parses only those leaves to
    find the blobs it must fetch next).

A reference to a tree (in a manifest or a leaf) is ``shape, addr, height, count, deep``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ormsgpack

from clew.codec import Codec
from clew.codec._envelope import Plain
from clew.codec._parts import assemble, parts
from clew.codec._types import is_pydantic_class
from clew.errors import IntegrityError

TREE_MIN = 4096
"""Containers of at least this weight (bytes) are stored as trees."""
LEAF_TARGET = 1536
"""The average bytes of a leaf (content-defined, so leaves vary). Smaller leaves make a
change write less and a load fetch more blobs; docs/storage.md has the measurements."""
LEAF_MAX = 4 * LEAF_TARGET
"""A leaf ends once it holds this many bytes, whatever the boundary hashes say."""
INDEX_TARGET = 16
"""The average number of children of an index node."""
INDEX_MAX = 128
"""An index node ends at this many children."""

_SPACE = 1 << 64
_NIL = b"\xc0"

Ref = tuple[list[Any], bytes, int, int, bool]
"""A tree reference: shape, root address, height, entry count, whether it nests subtrees."""


def _h8(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


_ATOMS = frozenset((str, bytes, int, float, bool, type(None)))


class _NotPlain(Exception):
    pass


def _copy(value: Any) -> Any:
    t = type(value)
    if t in _ATOMS:
        return value
    if t is dict:
        return {k: _copy(v) for k, v in value.items()}
    if t is list:
        return [_copy(v) for v in value]
    if is_pydantic_class(t):
        return _copy_model(t, value)
    raise _NotPlain


def _copy_model(t: Any, value: Any) -> Any:
    """A Pydantic model's private copy, as ``model_copy`` makes one but with its dicts and
    lists copied all the way down (its atoms shared): equal to the original, unreachable
    by the caller's later edits, and quick to compare with it (equal strings are the same
    objects)."""
    new = t.__new__(t)
    extra = value.__pydantic_extra__
    private = value.__pydantic_private__
    object.__setattr__(new, "__dict__", _copy(value.__dict__))
    object.__setattr__(new, "__pydantic_fields_set__", set(value.__pydantic_fields_set__))
    object.__setattr__(new, "__pydantic_extra__", None if extra is None else _copy(extra))
    object.__setattr__(new, "__pydantic_private__", None if private is None else _copy(private))
    return new


def copy_or(value: Any, fallback: Any) -> Any:
    """:func:`private_copy` of ``value``, or ``fallback`` (an equal private copy) if it has other types."""
    try:
        return _copy(value)
    except (_NotPlain, RecursionError, AttributeError):  # AttributeError: a model not built the usual way
        return fallback


def private_copy(value: Any, plain: bytes, codec: Codec) -> Any:
    """A copy of an encoded value that the caller's later edits cannot reach.

    Dicts, lists and Pydantic models are copied and their immutable atoms (strings,
    numbers) shared with the caller's objects, so that comparing the caller's value with
    the copy next time finds most of it identical at once; anything else is decoded from
    ``plain``.
    """
    try:
        return _copy(value)
    except (_NotPlain, RecursionError, AttributeError):  # AttributeError: a model not built the usual way
        return codec.loads(plain)


@dataclass(slots=True)
class Tree:
    """The encoded form of one tree, and what the next encode of it can reuse."""

    shape: list[Any]
    keys: list[str] | None
    children: list[Enc]
    addr: bytes
    height: int
    count: int
    digests: list[bytes]  # per entry: a digest of its key and content
    bounds: list[int]  # per entry: its boundary hash
    chunks: dict[bytes, bytes]  # the joined digests of each leaf and node -> its address
    deep: bool  # some entry is a tree of its own
    _by_key: dict[str, int] | None = None

    def by_key(self) -> dict[str, int]:
        if self._by_key is None:
            self._by_key = {k: i for i, k in enumerate(self.keys or ())}
        return self._by_key

    @property
    def ref(self) -> Ref:
        return self.shape, self.addr, self.height, self.count, self.deep


@dataclass(slots=True)
class Enc:
    """One encoded value: inline canonical bytes, or a tree."""

    ref: Any  # the caller's object when it was encoded
    weight: int
    plain: bytes | None = None  # inline values only
    pickled: bool = False
    tree: Tree | None = None
    digest: bytes = b""
    _snapshot: Any = None
    _decoded: bool = False

    def snapshot(self, codec: Codec) -> Any:
        """A private decoded copy of an inline value, to compare the next state with."""
        if not self._decoded:
            assert self.plain is not None
            self._snapshot = codec.loads(self.plain)
            self._decoded = True
        return self._snapshot


@dataclass(slots=True)
class Out:
    """Blobs an encode produced: address -> (plaintext, pickled)."""

    blobs: dict[bytes, tuple[bytes, bool]] = field(default_factory=dict)


class TreeEncoder:
    """Encodes values to inline bytes or trees, reusing what an earlier encode made.

    Args:
        codec: the codec (its ``dumps`` and ``address``).
        same: ``same(value, snapshot, ref)`` tells whether ``value`` would encode
            like the snapshot of an inline value encoded from ``ref``.
    """

    def __init__(self, codec: Codec, same: Callable[[Any, Any, Any], bool]) -> None:
        self.codec = codec
        self.same = same

    def encode(self, value: Any, path: str, prev: Enc | None, out: Out) -> Enc:
        """``value`` encoded; ``prev`` is its encoding at the last commit, if known."""
        if prev is not None and prev.tree is None:
            if self.same(value, prev.snapshot(self.codec), prev.ref):
                prev.ref = value
                return prev
            prev = None
        split = parts(value)
        if split is None:
            return self._inline(value, path)
        whole: Enc | None = None
        if prev is None:  # a fresh value: small ones never need a look inside
            whole = self._inline(value, path)
            if whole.weight < TREE_MIN:
                return whole
        shape, keys, values = split
        tree = prev.tree if prev is not None else None
        if tree is not None and (tree.shape != shape or (tree.keys is None) != (keys is None)):
            tree = None
        children, weight = self._children(keys, values, path, tree, out)
        if weight < TREE_MIN:
            return whole or self._inline(value, path)
        return self._tree(value, shape, keys, children, weight, tree, out)

    # -- pieces ------------------------------------------------------------------

    def _inline(self, value: Any, path: str) -> Enc:
        plain, pickled = self.codec.dumps(value, path)
        snapshot = private_copy(value, plain, self.codec)  # now: the caller may edit value later
        return Enc(
            value, len(plain), plain, pickled, digest=self.codec.address(plain), _snapshot=snapshot, _decoded=True
        )

    def _children(
        self, keys: list[str] | None, values: list[Any], path: str, tree: Tree | None, out: Out
    ) -> tuple[list[Enc], int]:
        children: list[Enc] = []
        weight = 0
        by_key = tree.by_key() if tree is not None and keys is not None else None
        for i, v in enumerate(values):
            prev: Enc | None = None
            if tree is not None:
                if keys is None:
                    prev = tree.children[i] if i < len(tree.children) else None
                else:
                    j = by_key.get(keys[i]) if by_key is not None else None
                    prev = tree.children[j] if j is not None else None
            child_path = f"{path}[{i}]" if keys is None else f"{path}[{keys[i]!r}]"
            enc = self.encode(v, child_path, prev, out)
            children.append(enc)
            weight += enc.weight + (len(keys[i]) if keys is not None else 0)
        return children, weight

    def _tree(
        self,
        value: Any,
        shape: list[Any],
        keys: list[str] | None,
        children: list[Enc],
        weight: int,
        prev: Tree | None,
        out: Out,
    ) -> Enc:
        reuse = prev.chunks if prev is not None else {}
        chunks: dict[bytes, bytes] = {}
        digests: list[bytes] = []
        bounds: list[int] = []
        prev_keys = prev.by_key() if prev is not None and keys is not None else None
        for i, c in enumerate(children):
            # An entry's digest and boundary hash are reused when the entry is.
            j = i if keys is None else (prev_keys.get(keys[i]) if prev_keys is not None else None)
            if prev is not None and j is not None and j < len(prev.children) and prev.children[j] is c:
                digests.append(prev.digests[j])
                bounds.append(prev.bounds[j])
                continue
            if keys is None:
                digests.append(c.digest)
                bounds.append(int.from_bytes(c.digest[:8], "big"))
            else:
                k = keys[i].encode()
                digests.append(hashlib.blake2b(k + b"\x00" + c.digest, digest_size=16).digest())
                bounds.append(_h8(k))
        # Leaves.
        level: list[tuple[bytes, int, bool]] = []
        start = size = 0
        n = len(children)
        for i in range(n):
            w = children[i].weight
            size += w
            if i == n - 1 or size >= LEAF_MAX or bounds[i] < w * _SPACE // LEAF_TARGET:
                key = b"".join(digests[start : i + 1])
                addr = reuse.get(key)
                if addr is None:
                    addr = self._leaf(keys, children, start, i + 1, out)
                chunks[key] = addr
                level.append((addr, i + 1 - start, any(c.tree is not None for c in children[start : i + 1])))
                start, size = i + 1, 0
        # Index nodes, level by level, until one root.
        height = 0
        while len(level) > 1:
            upper: list[tuple[bytes, int, bool]] = []
            start = 0
            for i in range(len(level)):
                if (
                    i == len(level) - 1
                    or i + 1 - start >= INDEX_MAX
                    or int.from_bytes(level[i][0][:8], "big") < _SPACE // INDEX_TARGET
                ):
                    group = level[start : i + 1]
                    key = b"".join(a for a, _, _ in group) + height.to_bytes(1, "big")
                    addr = reuse.get(key)
                    if addr is None:
                        addr = self._put(ormsgpack.packb([[a, c, int(d)] for a, c, d in group]), False, out)
                    chunks[key] = addr
                    upper.append((addr, sum(c for _, c, _ in group), any(d for _, _, d in group)))
                    start = i + 1
            level = upper
            height += 1
        root = level[0][0] if level else self._leaf(keys, children, 0, 0, out)
        deep = any(c.tree is not None for c in children)
        tree = Tree(shape, keys, children, root, height, n, digests, bounds, chunks, deep)
        digest = hashlib.blake2b(ormsgpack.packb([shape, root, height, n]), digest_size=16).digest()
        return Enc(value, weight, None, False, tree, digest)

    def _leaf(self, keys: list[str] | None, children: list[Enc], start: int, end: int, out: Out) -> bytes:
        part = children[start:end]
        refs = [[i, *c.tree.ref] for i, c in enumerate(part) if c.tree]
        plain = b"".join(
            (
                b"\x93",
                ormsgpack.packb(keys[start:end]) if keys is not None else _NIL,
                _array_header(len(part)),
                *(c.plain if c.plain is not None else _NIL for c in part),
                ormsgpack.packb(refs),
            )
        )
        return self._put(plain, any(c.pickled for c in part), out)

    def _put(self, plain: bytes, pickled: bool, out: Out) -> bytes:
        addr = self.codec.address(plain)
        out.blobs.setdefault(addr, (plain, pickled))
        return addr


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


# -- reading -------------------------------------------------------------------

Pending = tuple[bytes, int, bool]
"""A blob still to read: address, height, whether leaves below hold subtrees."""


def parse_ref(shape: Any, addr: Any, height: Any, count: Any, deep: Any) -> Ref:
    if not isinstance(shape, list) or not shape:
        raise IntegrityError("a tree reference has a malformed shape")
    return shape, bytes(addr), int(height), int(count), bool(deep)


def _children_of(plain: Plain) -> list[tuple[bytes, int, bool]]:
    try:
        return [(bytes(a), int(c), bool(d)) for a, c, d in ormsgpack.unpackb(plain)]
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"a tree index node is malformed: {exc}") from None


def _leaf_refs(plain: Plain) -> list[Ref]:
    """The subtree references of a leaf, without decoding its values."""
    try:
        raw = ormsgpack.unpackb(plain, ext_hook=lambda code, data: None)
        return [parse_ref(*r[1:6]) for r in raw[2]]
    except (ValueError, TypeError, IndexError) as exc:
        raise IntegrityError(f"a tree leaf is malformed: {exc}") from None


def pending(refs: Iterable[Ref]) -> list[Pending]:
    return [(addr, height, deep) for _, addr, height, _, deep in refs]


def walk(todo: list[Pending], plains: Mapping[bytes, Plain]) -> tuple[list[bytes], list[Pending]]:
    """Walk down from ``todo`` through the blobs at hand: ``(found, still to read)``."""
    found: list[bytes] = []
    missing: list[Pending] = []
    todo = list(todo)
    while todo:
        addr, height, deep = item = todo.pop()
        plain = plains.get(addr)
        if plain is None:
            missing.append(item)
            continue
        found.append(addr)
        if height > 0:
            todo.extend((a, height - 1, d) for a, _, d in _children_of(plain))
        elif deep:
            todo.extend(pending(_leaf_refs(plain)))
    return found, missing


def reachable(refs: Iterable[Ref], plains: Mapping[bytes, Plain]) -> tuple[list[bytes], list[bytes]]:
    """Every blob the trees reach: ``(found, missing)``, missing ones not expanded."""
    found, missing = walk(pending(refs), plains)
    return found, [a for a, _, _ in missing]


def build(ref: Ref, plains: Mapping[bytes, Plain], codec: Codec) -> Any:
    """The value a tree holds, every blob of it present in ``plains``."""
    shape, addr, height, count, _ = ref
    keys: list[str] = []
    values: list[Any] = []
    keyed = shape[0] != "l"
    for leaf in _leaves(addr, height, plains):
        try:
            lkeys, lvalues, refs = codec.loads(leaf)
        except (ValueError, TypeError):
            raise IntegrityError(f"tree {addr.hex()} has a malformed leaf") from None
        if keyed:
            if not isinstance(lkeys, list) or len(lkeys) != len(lvalues):
                raise IntegrityError(f"tree {addr.hex()} has a leaf whose keys do not match its values")
            keys.extend(lkeys)
        for r in refs:
            lvalues[r[0]] = build(parse_ref(*r[1:6]), plains, codec)
        values.extend(lvalues)
    if len(values) != count:
        raise IntegrityError(f"tree {addr.hex()} holds {len(values)} entries, its reference says {count}")
    return assemble(shape, keys if keyed else None, values)


def _leaves(addr: bytes, height: int, plains: Mapping[bytes, Plain]) -> list[Plain]:
    level = [addr]
    for _ in range(height):
        level = [a for node in level for a, _, _ in _children_of(plains[node])]
    return [plains[a] for a in level]

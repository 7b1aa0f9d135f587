"""Journal entries whose large values live in content-addressed blobs, shared with state.

A tool call's result usually ends up in the state too (appended to a list of results,
say), and so does a person's answer, and a LangGraph task's pending writes are exactly
what the next checkpoint's state gains. So that each is stored once, a journal entry
whose data is a str-keyed map keeps these values out of line when they encode to at
least :data:`MIN_SIZE` bytes. Which values is an explicit rule, not a guess at any
nested value (a blob that no state shares would only cost a fetch):

* the top-level ``result`` and ``answer`` (:data:`KEYS`, the values the runtime's
  ledger records), each in a blob holding the value as a one-item list: exactly the
  leaf a chunked list writes for a step that appends that one value;
* in a top-level ``writes`` list (:data:`WRITES`, LangGraph's ``put_writes``:
  ``[[idx, channel, value], ...]``), the third item of each three-item list. A value
  that is itself a list or a map (the messages ``add_messages`` appends, the keys a
  merge reducer sets) is stored *bare*, as its own bytes: the leaf a chunked list
  writes for a step that appends those items, or, for a map, the bytes of a leaf
  holding just the keys a step sets. Any other value (one message, a string) is
  stored as a one-item list, the leaf of appending that one item.

The state's copy and the journal's are then one blob row (blobs are keyed by run and
address). The row keeps the entry's canonical bytes with those values cut out, and
where each went, under the envelope's *spliced* flag::

    [holes, [[position, address], [position, address, 1], ...]]

``position`` is where the value starts in the whole entry; a splice of two items is a
one-item-list blob (the only form rows had before ``writes`` values went out of line),
one whose third item is ``1`` (:data:`BARE`) a bare one. An entry's hash is over its
whole canonical bytes, as for any entry, so seals do not depend on how a row is laid
out; reading puts the values back, each blob checked against its address, against the
form its row says it has, and at a place the rule sends values from, in the form the
rule gives a value there. Only the hash tells a row whose own bytes were changed into
another valid row (a write's string said to be bare reads as the one-item list it
would be bare): ``verify`` checks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ormsgpack

from clew.codec import Codec
from clew.codec._envelope import Framed, Plain
from clew.errors import IntegrityError

MIN_SIZE = 512
"""Values that encode to at least this many bytes go to blobs."""
KEYS = frozenset({"result", "answer"})
"""The top-level keys of a journal entry whose values may go to blobs, as one-item lists."""
WRITES = "writes"
"""The top-level key of a list of ``[idx, channel, value]`` whose values may go to blobs."""
BARE = 1
"""A splice's third item: its blob holds the value's own bytes, not a one-item list."""

_ONE = b"\x91"  # a msgpack array of one item
_KEY_BYTES = frozenset(ormsgpack.packb(k) for k in KEYS)
_WRITES_BYTES = ormsgpack.packb(WRITES)
Path = tuple[Any, ...]
"""Where a value sits in an entry: ``(key,)`` or ``("writes", i, 2)``."""


def split(codec: Codec, data: Any, plain: bytes, pickled: bool) -> tuple[bytes, dict[bytes, bytes | Framed]]:
    """The stored row data of an entry and the blobs (address -> envelope) it refers to.

    The values that go out of line are cut from ``plain`` itself (views, not copies),
    so a 100 MB tool result is not encoded or copied once more on its way to its blob.
    """
    if (
        len(plain) < MIN_SIZE
        or type(data) is not dict
        or (KEYS.isdisjoint(data) and WRITES not in data)
        or not all(type(k) is str for k in data)
    ):
        return codec.wrap(plain, pickled=pickled), {}
    slots = _slots(plain)
    if slots is None:  # not laid out as expected: store it whole
        return codec.wrap(plain, pickled=pickled), {}
    view = memoryview(plain)
    holes: list[memoryview] = []
    splices: list[list[Any]] = []
    blobs: dict[bytes, bytes | Framed] = {}
    taken = 0  # bytes of plain already in holes or values
    for path, at, end in slots:
        if end - at < MIN_SIZE:
            continue
        bare = path[0] == WRITES and _is_container(plain[at])
        # Flagged as holding pickle only if this value does (the blob may be a state's too).
        v_pickled = pickled and _pickled(codec, data, path)
        addr, blobs[addr] = codec.wrap_prefixed(b"" if bare else _ONE, view[at:end], pickled=v_pickled)
        holes.append(view[taken:at])
        splices.append([at, addr, BARE] if bare else [at, addr])
        taken = end
    if not splices:
        return codec.wrap(plain, pickled=pickled), {}
    holes.append(view[taken:])
    body = ormsgpack.packb([b"".join(holes), splices])
    return codec.wrap(body, pickled=pickled, spliced=True), blobs


def _pickled(codec: Codec, data: Any, path: Path) -> bool:
    """Whether the value at ``path`` of ``data`` needs pickle (True if it cannot be found)."""
    try:
        value = data
        for step in path:
            value = value[step]
    except (LookupError, TypeError):
        return True
    return codec.dumps(value, f"journal{''.join(f'[{s!r}]' for s in path)}")[1]


def refs(body: bytes) -> list[bytes]:
    """The blob addresses a spliced row's body refers to."""
    return [addr for _, addr, _ in _parse(body)[1]]


def load(codec: Codec, body: bytes, plains: Mapping[bytes, Plain]) -> Any:
    """An entry's value from a spliced row's body and its blobs, as ``codec.loads(join(...))``
    but without putting the whole entry's bytes together first: each blob's value is
    decoded where it lies, so a 100 MB tool result is held once decoded and once stored."""
    pieces, values, splices = _cut(body, plains)
    out: list[Plain] = []
    nils: list[int] = []  # where each value's stand-in (a msgpack nil) is in the entry without them
    size = 0
    for piece in pieces[:-1]:
        out += (piece, b"\xc0")
        size += len(piece)
        nils.append(size)
        size += 1
    out.append(pieces[-1])
    small = b"".join(out)
    paths = _placed(small, nils, values, splices)
    data = codec.loads(small)
    for n, value in zip(nils, values, strict=True):
        *inner, last = paths[n]
        place = data
        for step in inner:
            place = place[step]
        place[last] = codec.loads(value)
    return data


def join(body: bytes, plains: Mapping[bytes, Plain]) -> bytes:
    """An entry's canonical bytes from a spliced row's body and the blobs it refers to."""
    pieces, values, splices = _cut(body, plains)
    whole = b"".join(p for pair in zip(pieces, [*values, b""], strict=True) for p in pair)
    _placed(whole, [pos for pos, _, _ in splices], values, splices)
    return whole


def _cut(body: bytes, plains: Mapping[bytes, Plain]) -> tuple[list[bytes], list[Plain], list[tuple[int, bytes, bool]]]:
    """A spliced row's holes cut where its values go (one piece more than values), the
    values' bytes from their blobs, and the splices."""
    holes, splices = _parse(body)
    pieces: list[bytes] = []
    values: list[Plain] = []
    taken = at = 0  # bytes of holes used; position in the whole entry
    for pos, addr, bare in splices:
        value = _value(plains, addr, bare, pos, at)
        if taken + pos - at > len(holes):
            raise IntegrityError("a journal row's values are not where its body says")
        pieces.append(holes[taken : taken + pos - at])
        values.append(value)
        taken += pos - at
        at = pos + len(value)
    pieces.append(holes[taken:])
    return pieces, values, splices


def _placed(
    entry: bytes, places: list[int], values: list[Plain], splices: list[tuple[int, bytes, bool]]
) -> dict[int, Path]:
    """The path of the value at each of ``places`` in ``entry``, checked to be a place the
    rule sends values from, and to be the form the rule gives a value there."""
    paths = {value_at: path for path, value_at, _ in _slots(entry) or ()}
    for at, value, (_, _, bare) in zip(places, values, splices, strict=True):
        if at not in paths or bare != (paths[at][0] == WRITES and _is_container(value[0])):
            raise IntegrityError("a journal row's values are not where its body says")
    return paths


def _parse(body: bytes) -> tuple[bytes, list[tuple[int, bytes, bool]]]:
    """A spliced row's body: its holes and its splices ``(position, address, bare)``."""
    try:
        holes, splices = ormsgpack.unpackb(body)
        out = []
        for splice in splices:
            pos, addr, *form = splice
            if type(pos) is not int or pos < 0 or type(addr) is not bytes or form not in ([], [BARE]):
                raise ValueError(f"bad splice {splice!r}")
            out.append((pos, addr, bool(form)))
        if type(holes) is not bytes:
            raise ValueError("its holes are not bytes")
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"a journal row is malformed: {exc}") from None
    return holes, out


def _value(plains: Mapping[bytes, Plain], addr: bytes, bare: bool, pos: int, at: int) -> Plain:
    """The value bytes of blob ``addr``, checked to be of the form its row says, at a
    position after the previous value's end ``at``."""
    item = plains[addr]
    start = 0 if bare else 1
    try:
        whole = pos >= at and _skip(item, start) == len(item)
    except (IndexError, ValueError):
        whole = False
    if not whole or (bare and not _is_container(item[0])) or (not bare and item[:1] != _ONE):
        form = "a list or map" if bare else "a one-item list"
        raise IntegrityError(f"journal value blob {addr.hex()} is not {form} where its row says")
    return item[start:]


def _is_container(first: int) -> bool:
    """Whether a msgpack item starting with byte ``first`` is an array or a map."""
    return first & 0xE0 == 0x80 or first in (0xDC, 0xDD, 0xDE, 0xDF)


def _slots(plain: bytes) -> list[tuple[Path, int, int]] | None:
    """Where the values that may go out of line sit in the msgpack map ``plain``:
    (path, value start, value end), in order; None if it is not one map and nothing else."""
    try:
        n, at = _container(plain, 0, 0x80, 0xDE, 0xDF)
        slots: list[tuple[Path, int, int]] = []
        for _ in range(n):
            value_at = _skip(plain, at)
            end = _skip(plain, value_at)
            key = plain[at:value_at]
            if key in _KEY_BYTES:
                slots.append(((ormsgpack.unpackb(key),), value_at, end))
            elif key == _WRITES_BYTES and (plain[value_at] & 0xF0 == 0x90 or plain[value_at] in (0xDC, 0xDD)):
                slots.extend(_write_slots(plain, value_at))
            at = end
    except (IndexError, ValueError):
        return None
    return slots if at == len(plain) else None


def _write_slots(plain: bytes, at: int) -> list[tuple[Path, int, int]]:
    """The third item of each three-item list in the list at ``at``."""
    n, at = _container(plain, at, 0x90, 0xDC, 0xDD)
    slots: list[tuple[Path, int, int]] = []
    for i in range(n):
        end = _skip(plain, at)
        if plain[at] == 0x93:  # a fixarray of three items
            value_at = _skip(plain, _skip(plain, at + 1))
            slots.append(((WRITES, i, 2), value_at, end))
        at = end
    return slots


def _container(buf: Plain, at: int, fix: int, c16: int, c32: int) -> tuple[int, int]:
    """Item count and first item's offset of the map (or array) header at ``at``."""
    b = buf[at]
    if b & 0xF0 == fix:
        return b & 0x0F, at + 1
    if b == c16:
        return int.from_bytes(buf[at + 1 : at + 3], "big"), at + 3
    if b == c32:
        return int.from_bytes(buf[at + 1 : at + 5], "big"), at + 5
    raise ValueError("not a container")


# msgpack: bytes taken by a fixed-size item's header and body, by its first byte.
_FIXED = {0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9}
_FIXED |= {0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9, 0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18}
# Items with a length: first byte -> (bytes of the length field, bytes after it besides the data).
_SIZED = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1)}
_SIZED |= {0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0)}


def _skip(buf: Plain, at: int) -> int:
    """The offset just after the msgpack item at ``at`` (IndexError/ValueError if cut short)."""
    todo = 1
    while todo:
        todo -= 1
        b = buf[at]
        if b <= 0x7F or b >= 0xE0:
            at += 1
        elif b & 0xE0 == 0xA0:  # fixstr
            at += 1 + (b & 0x1F)
        elif b & 0xF0 == 0x90 or b in (0xDC, 0xDD):
            n, at = _container(buf, at, 0x90, 0xDC, 0xDD)
            todo += n
        elif b & 0xF0 == 0x80 or b in (0xDE, 0xDF):
            n, at = _container(buf, at, 0x80, 0xDE, 0xDF)
            todo += 2 * n
        elif b in _FIXED:
            at += _FIXED[b]
        elif b in _SIZED:
            width, extra = _SIZED[b]
            at += 1 + width + extra + int.from_bytes(buf[at + 1 : at + 1 + width], "big")
        else:
            raise ValueError(f"unknown msgpack byte {b:#04x}")
        if at > len(buf):
            raise IndexError("cut short")
    return at

"""Journal entries whose large values live in content-addressed blobs, shared with state.

A tool call's result usually ends up in the state too (appended to a list of results,
say), and so does a person's answer. So that each is stored once, a journal entry whose
data is a str-keyed map keeps its ``result`` and ``answer`` (:data:`KEYS`, the values
the runtime's ledger records) out of line when they encode to at least
:data:`MIN_SIZE` bytes, in a blob holding the value as a one-item list: exactly the
leaf a chunked list writes for a step that appends that one value, so the state's copy
and the journal's are one row. Other values stay in the row: a blob that no state
shares would only cost a fetch.

The row keeps the entry's canonical bytes with those values cut out, and where each
went (``[holes, [[position, address], ...]]``, under the envelope's *spliced* flag).
An entry's hash is over its whole canonical bytes, as for any entry, so seals do not
depend on how a row is laid out; reading puts the values back, each blob checked
against its address.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ormsgpack

from clew.codec import Codec
from clew.codec._envelope import Framed, Plain
from clew.errors import IntegrityError

MIN_SIZE = 512
"""Values of :data:`KEYS` that encode to at least this many bytes go to blobs."""
KEYS = frozenset({"result", "answer"})
"""The top-level keys of a journal entry whose values may go to blobs."""

_ONE = b"\x91"  # a msgpack array of one item


def split(codec: Codec, data: Any, plain: bytes, pickled: bool) -> tuple[bytes, dict[bytes, bytes | Framed]]:
    """The stored row data of an entry and the blobs (address -> envelope) it refers to.

    The values that go out of line are cut from ``plain`` itself (views, not copies),
    so a 100 MB tool result is not encoded or copied once more on its way to its blob.
    """
    if (
        len(plain) < MIN_SIZE
        or type(data) is not dict
        or KEYS.isdisjoint(data)
        or not all(type(k) is str for k in data)
    ):
        return codec.wrap(plain, pickled=pickled), {}
    spans = _map_spans(plain)
    if spans is None or len(spans) != len(data):  # not laid out as expected: store it whole
        return codec.wrap(plain, pickled=pickled), {}
    view = memoryview(plain)
    holes: list[memoryview] = []
    splices: list[list[Any]] = []
    blobs: dict[bytes, bytes | Framed] = {}
    taken = 0  # bytes of plain already in holes or values
    for key_at, at, end in spans:
        if end - at < MIN_SIZE or view[key_at:at] not in _KEY_BYTES:
            continue
        # Flagged as holding pickle only if this value does (the blob may be a state's too).
        key = ormsgpack.unpackb(view[key_at:at])
        v_pickled = pickled and codec.dumps(data[key], f"journal[{key!r}]")[1]
        addr, blobs[addr] = codec.wrap_prefixed(_ONE, view[at:end], pickled=v_pickled)
        holes.append(view[taken:at])
        splices.append([at, addr])
        taken = end
    if not splices:
        return codec.wrap(plain, pickled=pickled), {}
    holes.append(view[taken:])
    body = ormsgpack.packb([b"".join(holes), splices])
    return codec.wrap(body, pickled=pickled, spliced=True), blobs


_KEY_BYTES = frozenset(ormsgpack.packb(k) for k in KEYS)


def _map_spans(plain: bytes) -> list[tuple[int, int, int]] | None:
    """For the msgpack map ``plain``: (key start, value start, value end) of each entry,
    or None if it is not one map and nothing else."""
    try:
        n, at = _container(plain, 0, 0x80, 0xDE, 0xDF)
        spans = []
        for _ in range(n):
            value_at = _skip(plain, at)
            end = _skip(plain, value_at)
            spans.append((at, value_at, end))
            at = end
    except (IndexError, ValueError):
        return None
    return spans if at == len(plain) else None


def _container(buf: bytes, at: int, fix: int, c16: int, c32: int) -> tuple[int, int]:
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


def _skip(buf: bytes, at: int) -> int:
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


def refs(body: bytes) -> list[bytes]:
    """The blob addresses a spliced row's body refers to."""
    try:
        _, splices = ormsgpack.unpackb(body)
        return [bytes(addr) for _, addr in splices]
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"a journal row is malformed: {exc}") from None


def load(codec: Codec, body: bytes, plains: Mapping[bytes, Plain]) -> Any:
    """An entry's value from a spliced row's body and its blobs, as ``codec.loads(join(...))``
    but without putting the whole entry's bytes together first: each blob's value is
    decoded where it lies, so a 100 MB tool result is held once decoded and once stored."""
    try:
        holes, splices = ormsgpack.unpackb(body)
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"a journal row is malformed: {exc}") from None
    out: list[bytes] = []
    nils: list[int] = []  # where each value's stand-in (a msgpack nil) is in the entry without them
    taken = at = size = 0
    for pos, addr in splices:
        item = plains[bytes(addr)]
        if item[:1] != _ONE or pos < at:
            raise IntegrityError(f"journal value blob {bytes(addr).hex()} is not a one-item list")
        out.append(holes[taken : taken + pos - at])
        size += pos - at
        nils.append(size)
        out.append(b"\xc0")
        size += 1
        taken += pos - at
        at = pos + len(item) - 1
    out.append(holes[taken:])
    small = b"".join(out)
    spans = _map_spans(small)
    keys = {value_at: ormsgpack.unpackb(small[key_at:value_at]) for key_at, value_at, _ in spans or ()}
    if any(n not in keys for n in nils):
        raise IntegrityError("a journal row's values are not where its body says")
    data = codec.loads(small)
    for n, (_, addr) in zip(nils, splices, strict=True):
        data[keys[n]] = codec.loads(plains[bytes(addr)][1:])
    return data


def join(body: bytes, plains: Mapping[bytes, Plain]) -> bytes:
    """An entry's canonical bytes from a spliced row's body and the blobs it refers to."""
    try:
        holes, splices = ormsgpack.unpackb(body)
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"a journal row is malformed: {exc}") from None
    out: list[Plain] = []
    taken = at = 0  # bytes of holes used; position in the whole
    for pos, addr in splices:
        item = plains[bytes(addr)]
        if item[:1] != _ONE or pos < at:
            raise IntegrityError(f"journal value blob {bytes(addr).hex()} is not a one-item list")
        out.append(holes[taken : taken + pos - at])
        taken += pos - at
        out.append(item[1:])
        at = pos + len(item) - 1
    out.append(holes[taken:])
    return b"".join(out)

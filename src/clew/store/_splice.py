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
from clew.errors import IntegrityError

MIN_SIZE = 512
"""Values of :data:`KEYS` that encode to at least this many bytes go to blobs."""
KEYS = frozenset({"result", "answer"})
"""The top-level keys of a journal entry whose values may go to blobs."""

_ONE = b"\x91"  # a msgpack array of one item


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x80 | n,))
    if n < 1 << 16:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


def split(codec: Codec, data: Any, plain: bytes, pickled: bool) -> tuple[bytes, dict[bytes, bytes]]:
    """The stored row data of an entry and the blobs (address -> envelope) it refers to."""
    if (
        len(plain) < MIN_SIZE
        or type(data) is not dict
        or KEYS.isdisjoint(data)
        or not all(type(k) is str for k in data)
    ):
        return codec.wrap(plain, pickled=pickled), {}
    holes = [_map_header(len(data))]
    at = len(holes[0])
    splices: list[list[Any]] = []
    blobs: dict[bytes, bytes] = {}
    values: dict[bytes, bytes] = {}
    for key in sorted(data):
        k = ormsgpack.packb(key)
        v, v_pickled = codec.dumps(data[key], f"journal[{key!r}]")
        at += len(k)
        if key in KEYS and len(v) >= MIN_SIZE:
            holes.append(k)
            item = _ONE + v
            addr = codec.address(item)
            blobs[addr] = codec.wrap(item, pickled=v_pickled)
            values[addr] = item
            splices.append([at, addr])
        else:
            holes.append(k + v)
        at += len(v)
    if not splices:
        return codec.wrap(plain, pickled=pickled), {}
    body = ormsgpack.packb([b"".join(holes), splices])
    if join(body, values) != plain:  # not laid out as expected: store it whole
        return codec.wrap(plain, pickled=pickled), {}
    return codec.wrap(body, pickled=pickled, spliced=True), blobs


def refs(body: bytes) -> list[bytes]:
    """The blob addresses a spliced row's body refers to."""
    try:
        _, splices = ormsgpack.unpackb(body)
        return [bytes(addr) for _, addr in splices]
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"a journal row is malformed: {exc}") from None


def join(body: bytes, plains: Mapping[bytes, bytes]) -> bytes:
    """An entry's canonical bytes from a spliced row's body and the blobs it refers to."""
    try:
        holes, splices = ormsgpack.unpackb(body)
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"a journal row is malformed: {exc}") from None
    out: list[bytes] = []
    taken = at = 0  # bytes of holes used; position in the whole
    for pos, addr in splices:
        item = plains[bytes(addr)]
        if not item.startswith(_ONE) or pos < at:
            raise IntegrityError(f"journal value blob {bytes(addr).hex()} is not a one-item list")
        out.append(holes[taken : taken + pos - at])
        taken += pos - at
        out.append(item[1:])
        at = pos + len(item) - 1
    out.append(holes[taken:])
    return b"".join(out)

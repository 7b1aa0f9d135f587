"""Hostile bytes: decoding anything gives a value or DecodeError, never another exception.

Covers arbitrary bytes, well-formed msgpack carrying random extension records, records
that name real classes with garbage fields, truncated and bit-flipped blobs, zstd
garbage, frames that claim a huge size, and nesting deep enough to exhaust the stack.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from typing import Any

import ormsgpack
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clew.codec import Codec, Keyring
from clew.errors import CryptoError, DecodeError
from tests.codec._support import MONEY_KEY, Box, Color, Level, PChild, Point, values

MAGIC = 0xC7
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
FUZZ = settings(max_examples=200, deadline=dt.timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow])

_codec = Codec()
_encrypting = Codec(keyring=Keyring({"k": bytes(32)}))


def decodes_or_refuses(fn: Callable[[bytes], Any], data: bytes) -> None:
    """``fn(data)`` returns or raises DecodeError (CryptoError for encrypted blobs); anything else fails."""
    try:
        fn(data)
    except (DecodeError, CryptoError):
        pass


def both_entry_points(plain: bytes) -> None:
    decodes_or_refuses(_codec.loads, plain)
    decodes_or_refuses(_codec.decode, bytes((MAGIC, 0)) + plain)


# -- arbitrary bytes -----------------------------------------------------------


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes(data: bytes) -> None:
    decodes_or_refuses(_codec.decode, data)
    decodes_or_refuses(_codec.loads, data)


@FUZZ
@given(st.integers(0, 255), st.binary(max_size=512))
def test_arbitrary_bytes_behind_a_valid_magic(flags: int, body: bytes) -> None:
    decodes_or_refuses(_codec.decode, bytes((MAGIC, flags)) + body)
    decodes_or_refuses(_encrypting.decode, bytes((MAGIC, flags)) + body)


# -- well-formed msgpack, random extension records -----------------------------

_CLASS_KEYS = [
    f"{Box.__module__}:Box",
    f"{PChild.__module__}:PChild",
    f"{Color.__module__}:Color",
    f"{Level.__module__}:Level",
    f"{Point.__module__}:Point",
    MONEY_KEY,
    "datetime:datetime",
    "enum:Enum",
    "enum:Flag",
    "pydantic:BaseModel",
    "builtins:object",
    "os:system",
    "os.path:join",
    "no_such_module:X",
    ":",
    "",
]

_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=12),
    st.binary(max_size=24),
)


def _ext(children: st.SearchStrategy[Any]) -> st.SearchStrategy[ormsgpack.Ext]:
    payload = st.binary(max_size=24) | children.map(ormsgpack.packb)
    named = st.builds(
        lambda key, rest: ormsgpack.packb([key, *rest]),
        st.sampled_from(_CLASS_KEYS),
        st.lists(payload | children, max_size=3),
    )
    return st.builds(ormsgpack.Ext, st.integers(0, 20), payload | named)


msgpack_trees = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
        _ext(children),
    ),
    max_leaves=10,
)


@FUZZ
@given(msgpack_trees)
def test_msgpack_with_random_extension_records(tree: Any) -> None:
    both_entry_points(ormsgpack.packb(tree))


_field_records = st.dictionaries(st.text(max_size=6), msgpack_trees.map(ormsgpack.packb) | _leaves, max_size=3)


@FUZZ
@given(
    st.sampled_from([11, 12, 13, 14]),
    st.sampled_from(_CLASS_KEYS),
    _field_records.map(ormsgpack.packb) | msgpack_trees.map(ormsgpack.packb) | _leaves,
    st.none() | _field_records.map(ormsgpack.packb),
    st.lists(st.text(max_size=6), max_size=3) | _leaves,
)
def test_records_naming_real_classes_with_garbage_fields(
    code: int, key: str, body: Any, extra: Any, fields_set: Any
) -> None:
    both_entry_points(ormsgpack.packb(ormsgpack.Ext(code, ormsgpack.packb([key, body, extra, fields_set]))))


@FUZZ
@given(st.integers(1, 10), msgpack_trees)
def test_scalar_records_with_wrong_shapes(code: int, data: Any) -> None:
    both_entry_points(ormsgpack.packb(ormsgpack.Ext(code, ormsgpack.packb(data))))


@pytest.mark.parametrize(
    "data",
    [
        ["2024-01-01T00:00:00", ["zone", "../../../../etc/passwd"], 0],
        ["2024-01-01T00:00:00", ["zone", "No/Such_Zone"], 0],
        ["2024-01-01T00:00:00", ["offset", 10**9, 0, None], 0],
        ["2024-01-01T00:00:00", ["offset", 0, 0, 5], 0],
        ["2024-01-01T00:00:00", "UTC", 7],
        ["not a date", None, 0],
        [],
        "1" * 5000,
    ],
)
def test_malformed_datetime_records(data: Any) -> None:
    with pytest.raises(DecodeError):
        _codec.loads(ormsgpack.packb(ormsgpack.Ext(5, ormsgpack.packb(data))))


# -- truncated and corrupted blobs ---------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.booleans(), st.data())
def test_truncated_blobs_are_refused(value: Any, compress: bool, data: st.DataObject) -> None:
    blob = Codec(compress_threshold=0 if compress else 1 << 30).encode(value)
    cuts = data.draw(st.lists(st.integers(0, len(blob) - 1), min_size=1, max_size=8, unique=True))
    for cut in cuts:
        with pytest.raises(DecodeError):
            _codec.decode(blob[:cut])
        if cut >= 2 and blob[1] == 0:
            with pytest.raises(DecodeError):
                _codec.loads(blob[2:cut])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.booleans(), st.data())
def test_corrupted_blobs(value: Any, compress: bool, data: st.DataObject) -> None:
    blob = bytearray(Codec(compress_threshold=0 if compress else 1 << 30).encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(2, len(blob) - 1)) if len(blob) > 2 else 0
        blob[i] = data.draw(st.integers(0, 255))
    decodes_or_refuses(_codec.decode, bytes(blob))


# -- zstd ----------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=256))
def test_zstd_flagged_garbage(body: bytes) -> None:
    decodes_or_refuses(_codec.decode, bytes((MAGIC, 0x01)) + body)
    decodes_or_refuses(_codec.decode, bytes((MAGIC, 0x01)) + ZSTD_MAGIC + body)


@FUZZ
@given(st.binary(max_size=256), st.booleans())
def test_valid_zstd_frame_of_garbage(payload: bytes, content_size: bool) -> None:
    frame = zstandard.ZstdCompressor(write_content_size=content_size).compress(payload)
    decodes_or_refuses(_codec.decode, bytes((MAGIC, 0x01)) + frame)


def _frame_header(content_size: int) -> bytes:
    # Frame header descriptor 0xE0: 8-byte content size field, single segment.
    return ZSTD_MAGIC + b"\xe0" + struct.pack("<Q", content_size)


@pytest.mark.parametrize("claimed", [2**31, 2**40, 2**63])
def test_frame_claiming_a_huge_content_size(claimed: int) -> None:
    blob = bytes((MAGIC, 0x01)) + _frame_header(claimed) + b"\x00" * 16
    with pytest.raises(DecodeError, match=f"blob claims {claimed} bytes, above the {1 << 30}-byte limit"):
        _codec.decode(blob)


def test_frame_claiming_the_unknown_size_sentinel() -> None:
    # 2**64 - 1 is zstd's "content size unknown": no claim to check, decompression must still stop.
    with pytest.raises(DecodeError):
        _codec.decode(bytes((MAGIC, 0x01)) + _frame_header(2**64 - 1) + b"\x00" * 16)


def test_frame_claiming_just_under_the_limit_with_no_data() -> None:
    codec = Codec(max_blob_size=1 << 20)
    with pytest.raises(DecodeError):
        codec.decode(bytes((MAGIC, 0x01)) + _frame_header((1 << 20) - 1) + b"\x00" * 16)


def test_compressed_bomb_is_stopped_at_the_limit() -> None:
    bomb = zstandard.ZstdCompressor(write_content_size=False).compress(b"\x00" * (8 << 20))
    assert len(bomb) < 2048
    with pytest.raises(DecodeError):
        Codec(max_blob_size=1 << 20).decode(bytes((MAGIC, 0x01)) + bomb)


# -- nesting -------------------------------------------------------------------


def _nest(code: int, node: Any) -> ormsgpack.Ext:
    if code == 1:  # tuple: a packed list of values
        return ormsgpack.Ext(code, ormsgpack.packb([node]))
    if code == 15:  # non-str-keyed dict: a packed list of [packed key, packed value]
        return ormsgpack.Ext(code, ormsgpack.packb([[ormsgpack.packb(1), ormsgpack.packb(node)]]))
    return ormsgpack.Ext(code, ormsgpack.packb([ormsgpack.packb(node)]))  # sets: packed items


@pytest.mark.parametrize("code", [1, 2, 3, 15])
def test_deeply_nested_extension_records(code: int) -> None:
    node: Any = 1
    for _ in range(3000):
        node = _nest(code, node)
    with pytest.raises(DecodeError):
        _codec.loads(ormsgpack.packb(node))


@pytest.mark.parametrize("code", [1, 3, 15])  # a set cannot hold a set
def test_moderately_nested_extension_records_decode(code: int) -> None:
    node: Any = 1
    for _ in range(50):
        node = _nest(code, node)
    assert _codec.loads(ormsgpack.packb(node)) is not None


def test_deeply_nested_arrays_and_maps() -> None:
    with pytest.raises(DecodeError):
        _codec.loads(b"\x91" * 100_000 + b"\x01")
    with pytest.raises(DecodeError):
        _codec.loads(b"\x81\xa1k" * 100_000 + b"\x01")

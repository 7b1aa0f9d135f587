"""The stored envelope: magic byte, flags, zstd above a threshold, pickle only on opt-in."""

from __future__ import annotations

import os
from typing import Any

import ormsgpack
import pytest
import zstandard

from clew.codec import Codec
from clew.errors import DecodeError, PickleRefusedError, UnknownTypeError
from tests.codec._support import SPRUNG, Pickleable, Point, Trap, assert_same

MAGIC = 0xC7
FLAG_ZSTD = 0x01
FLAG_PICKLE = 0x02
EXT_PICKLE = 16

LARGE = {"messages": [{"role": "user", "content": "tell me about the weather " * 20}] * 50}
SMALL = {"step": 3, "ok": True}


def test_large_compressible_value_is_zstd_compressed() -> None:
    codec = Codec()
    plain, _ = codec.dumps(LARGE)
    blob = codec.encode(LARGE)
    assert blob[0] == MAGIC
    assert blob[1] == FLAG_ZSTD
    assert len(blob) < len(plain) // 10
    assert zstandard.ZstdDecompressor().decompress(blob[2:]) == plain
    assert_same(LARGE, codec.decode(blob))


def test_small_value_is_stored_raw() -> None:
    codec = Codec()
    plain, _ = codec.dumps(SMALL)
    blob = codec.encode(SMALL)
    assert blob == bytes((MAGIC, 0)) + plain
    assert_same(SMALL, codec.decode(blob))


def test_compression_threshold_is_inclusive() -> None:
    value = b"\x00" * 500
    plain, _ = Codec().dumps(value)
    assert Codec(compress_threshold=len(plain)).encode(value)[1] == FLAG_ZSTD
    assert Codec(compress_threshold=len(plain) + 1).encode(value)[1] == 0


def test_incompressible_value_is_kept_raw() -> None:
    value = os.urandom(4096)
    blob = Codec().encode(value)
    assert blob[1] == 0
    assert Codec().decode(blob) == value


def test_compression_level_changes_size_not_value() -> None:
    fast, best = Codec(zstd_level=1), Codec(zstd_level=19)
    assert_same(LARGE, fast.decode(best.encode(LARGE)))
    assert_same(LARGE, best.decode(fast.encode(LARGE)))


def test_wrap_and_unwrap_are_inverse() -> None:
    codec = Codec()
    for value in (SMALL, LARGE):
        plain, pickled = codec.dumps(value)
        assert codec.unwrap(codec.wrap(plain, pickled=pickled)) == plain


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"", "bad magic"),
        (b"\xc7", "bad magic"),
        (b"\x00\x00\x01", "bad magic"),
        (b"\x93\x01\x02\x03", "bad magic"),  # bare msgpack, no envelope
        (b"\xc7\x10\x01", "unknown flags 0x10"),
        (b"\xc7\x80\x01", "unknown flags 0x80"),
        (b"\xc7\x01", "corrupt compressed blob"),
        (b"\xc7\x01not zstd at all", "corrupt compressed blob"),
    ],
)
def test_malformed_envelopes(blob: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        Codec().decode(blob)


def test_blob_above_max_size_is_refused() -> None:
    blob = Codec().encode(b"\x00" * 100_000)
    assert blob[1] == FLAG_ZSTD
    with pytest.raises(DecodeError, match="above the 1000-byte limit"):
        Codec(max_blob_size=1000).decode(blob)


def test_frame_without_content_size_above_max_size_is_refused() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(ormsgpack.packb(b"\x00" * 100_000))
    blob = bytes((MAGIC, FLAG_ZSTD)) + frame
    with pytest.raises(DecodeError):
        Codec(max_blob_size=1000).decode(blob)
    assert Codec().decode(blob) == b"\x00" * 100_000


# -- pickle: only through an explicit opt-in -----------------------------------


def test_default_codec_refuses_unknown_types_instead_of_pickling() -> None:
    with pytest.raises(UnknownTypeError):
        Codec().dumps(Pickleable(1))


def test_pickle_opt_in_round_trips_unknown_types() -> None:
    codec = Codec(allow_pickle=True)
    value = {"obj": Pickleable([1, 2]), "known": (Point(1, 2), {3})}
    _, pickled = codec.dumps(value)
    assert pickled is True
    blob = codec.encode(value)
    assert blob[1] & FLAG_PICKLE
    assert_same(value, codec.decode(blob))


def test_pickle_flag_combines_with_zstd() -> None:
    codec = Codec(allow_pickle=True)
    value = [Pickleable("x" * 5000), LARGE]
    blob = codec.encode(value)
    assert blob[1] == FLAG_PICKLE | FLAG_ZSTD
    assert_same(value, codec.decode(blob))


def test_pickle_opt_in_only_pickles_what_it_must() -> None:
    codec = Codec(allow_pickle=True)
    assert codec.dumps({"a": 1}) == (Codec().dumps({"a": 1})[0], False)
    assert codec.encode(SMALL)[1] == 0


def test_pickled_blob_read_by_default_codec_is_refused() -> None:
    blob = Codec(allow_pickle=True).encode({"obj": Pickleable(1)})
    with pytest.raises(PickleRefusedError, match=r"allow_pickle=True") as info:
        Codec().decode(blob)
    assert isinstance(info.value, DecodeError)


@pytest.mark.parametrize(
    "value",
    [Pickleable(1), [Pickleable(1)], {"a": {"b": Pickleable(1)}}, (Pickleable(1),), {1: Pickleable(1)}],
    ids=["top", "in list", "in dict", "in tuple", "in non-str-keyed dict"],
)
def test_pickled_plaintext_read_by_default_codec_is_refused(value: Any) -> None:
    plain, pickled = Codec(allow_pickle=True).dumps(value)
    assert pickled
    with pytest.raises(PickleRefusedError):
        Codec().loads(plain)


def _trap_blob(*, flagged: bool) -> bytes:
    codec = Codec(allow_pickle=True)
    plain, pickled = codec.dumps({"state": [Trap()]})
    assert pickled
    return codec.wrap(plain, pickled=flagged)


def test_refused_pickle_is_never_unpickled() -> None:
    SPRUNG.clear()
    for flagged in (True, False):  # a forged blob may hide the pickle flag
        with pytest.raises(DecodeError):
            Codec().decode(_trap_blob(flagged=flagged))
    assert SPRUNG == []
    # the trap does work when the opt-in is given
    assert Codec(allow_pickle=True).decode(_trap_blob(flagged=True)) == {"state": ["trap"]}
    assert SPRUNG == ["unpickled"]
    SPRUNG.clear()


def test_forged_pickle_record_without_flag_is_refused() -> None:
    plain = ormsgpack.packb([1, ormsgpack.Ext(EXT_PICKLE, b"cos\nsystem\n(S'true'\ntR.")])
    with pytest.raises(PickleRefusedError):
        Codec().decode(bytes((MAGIC, 0)) + plain)

"""The blob envelope: a two-byte header over the encoded value, zstd above a threshold.

::

    byte 0   magic 0xC7 (format version 1)
    byte 1   flags: 0x01 zstd-compressed, 0x02 holds pickled values, 0x04 spliced (a
             journal row whose large values live in blobs, see clew.store._splice)
    rest     payload (canonical msgpack, compressed if flagged)

Content addresses are computed over the *plaintext* msgpack, never the envelope, so a
value keeps its address whatever the compression settings were when it was written.
"""

from __future__ import annotations

import threading

import zstandard

from clew.errors import DecodeError, PickleRefusedError

MAGIC = 0xC7
FLAG_ZSTD = 0x01
FLAG_PICKLE = 0x02
FLAG_SPLICED = 0x04
_KNOWN_FLAGS = FLAG_ZSTD | FLAG_PICKLE | FLAG_SPLICED


SAMPLE_ABOVE = 4 << 20  # values this big are sampled before being compressed whole
SAMPLE_BYTES = 256 << 10


class Envelope:
    """Wraps and unwraps encoded bytes. Thread-safe: zstd contexts are per thread."""

    __slots__ = ("_level", "_local", "_max_size", "_threshold")

    def __init__(self, *, compress_threshold: int, level: int, max_size: int) -> None:
        self._threshold = compress_threshold
        self._level = level
        self._max_size = max_size
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self._level)
        return c

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def wrap(self, plain: bytes, *, pickled: bool = False, spliced: bool = False) -> bytes:
        flags = (FLAG_PICKLE if pickled else 0) | (FLAG_SPLICED if spliced else 0)
        if len(plain) >= self._threshold and self._worth_trying(plain):
            packed = self._compressor().compress(plain)
            if len(packed) < len(plain):
                return bytes((MAGIC, flags | FLAG_ZSTD)) + packed
        return bytes((MAGIC, flags)) + plain

    def _worth_trying(self, plain: bytes) -> bool:
        """For a big value, compress a sample first: an incompressible one (media, archives,
        encrypted bytes) then costs no second full-size buffer to find that out."""
        if len(plain) < SAMPLE_ABOVE:
            return True
        sample = plain[:SAMPLE_BYTES]
        return len(self._compressor().compress(sample)) < len(sample) * 0.9

    def unwrap(self, blob: bytes, *, allow_pickle: bool) -> bytes:
        if len(blob) < 2 or blob[0] != MAGIC:
            raise DecodeError("not a clew blob (bad magic byte)")
        flags = blob[1]
        if flags & ~_KNOWN_FLAGS:
            raise DecodeError(f"clew blob has unknown flags {flags:#04x}; written by a newer clew?")
        if flags & FLAG_PICKLE and not allow_pickle:
            raise PickleRefusedError(
                "blob holds a pickled value and this codec has no pickle opt-in; "
                "unpickling is code execution: open the store with "
                "codec=clew.codec.Codec(allow_pickle=True) only if you trust it"
            )
        body = blob[2:]
        if not flags & FLAG_ZSTD:
            return bytes(body)
        try:
            size = zstandard.frame_content_size(body)
            if size > self._max_size:
                raise DecodeError(f"blob claims {size} bytes, above the {self._max_size}-byte limit")
            return self._decompressor().decompress(body, max_output_size=self._max_size)
        except zstandard.ZstdError as exc:
            raise DecodeError(f"corrupt compressed blob: {exc}") from exc

"""The blob envelope: a two-byte header over the encoded value, zstd above a threshold.

::

    byte 0   magic 0xC7 (format version 1)
    byte 1   flags: 0x01 zstd-compressed, 0x02 holds pickled values, 0x04 spliced (a
             journal row whose large values live in blobs, see clew.store._splice),
             0x08 encrypted, 0x10 encrypted in place after it was stored in the clear
             (its content address and seal cover the plaintext, unkeyed)
    rest     payload (canonical msgpack, compressed if flagged, then encrypted if
             flagged: see :mod:`clew.codec._crypto` for that layout)

The transforms run as a pipeline: encode -> compress -> encrypt, undone in reverse.

Content addresses are computed over the *plaintext* msgpack, never the envelope, so a
value keeps its address whatever the compression settings were when it was written.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import zstandard

from clew.errors import DecodeError, MissingKeyError, PickleRefusedError

if TYPE_CHECKING:
    from clew.codec._crypto import Cipher

MAGIC = 0xC7
FLAG_ZSTD = 0x01
FLAG_PICKLE = 0x02
FLAG_SPLICED = 0x04
FLAG_CRYPT = 0x08
FLAG_LATE = 0x10
_KNOWN_FLAGS = FLAG_ZSTD | FLAG_PICKLE | FLAG_SPLICED | FLAG_CRYPT | FLAG_LATE
DataKey = tuple[str, bytes]
"""(key id, key bytes) of a data key that encrypts instead of the keyring's current key."""


SAMPLE_ABOVE = 4 << 20  # values this big are sampled before being compressed whole
SAMPLE_BYTES = 256 << 10


class Envelope:
    """Wraps and unwraps encoded bytes. Thread-safe: zstd contexts are per thread."""

    __slots__ = ("_cipher", "_level", "_local", "_max_size", "_threshold")

    def __init__(self, *, compress_threshold: int, level: int, max_size: int, cipher: Cipher | None = None) -> None:
        self._cipher = cipher
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

    @property
    def encrypts(self) -> bool:
        return self._cipher is not None

    def wrap(
        self,
        plain: bytes,
        *,
        pickled: bool = False,
        spliced: bool = False,
        key: DataKey | None = None,
        late: bool = False,
    ) -> bytes:
        flags = (FLAG_PICKLE if pickled else 0) | (FLAG_SPLICED if spliced else 0)
        payload = plain
        if len(plain) >= self._threshold and self._worth_trying(plain):
            packed = self._compressor().compress(plain)
            if len(packed) < len(plain):
                flags |= FLAG_ZSTD
                payload = packed
        if self._cipher is None:
            return bytes((MAGIC, flags)) + payload
        kid, raw = key if key is not None else (None, None)
        return self._cipher.seal(bytes((MAGIC, flags | FLAG_CRYPT | (FLAG_LATE if late else 0))), payload, kid, raw)

    @staticmethod
    def late(blob: bytes) -> bool:
        """Whether an encrypted blob was encrypted in place after being stored in the clear."""
        return len(blob) > 1 and blob[0] == MAGIC and bool(blob[1] & FLAG_LATE)

    def key_id(self, blob: bytes) -> str | None:
        """The id of the key an encrypted blob names; None for a blob stored in the clear."""
        if len(blob) > 3 and blob[0] == MAGIC and blob[1] & FLAG_CRYPT:
            n = blob[2]
            return blob[3 : 3 + n].decode("ascii", "replace")
        return None

    def _worth_trying(self, plain: bytes) -> bool:
        """For a big value, compress a sample first: an incompressible one (media, archives,
        encrypted bytes) then costs no second full-size buffer to find that out."""
        if len(plain) < SAMPLE_ABOVE:
            return True
        sample = plain[:SAMPLE_BYTES]
        return len(self._compressor().compress(sample)) < len(sample) * 0.9

    def unwrap(self, blob: bytes, *, allow_pickle: bool, key: bytes | None = None) -> bytes:
        if len(blob) < 2 or blob[0] != MAGIC:
            raise DecodeError("not a clew blob (bad magic byte)")
        flags = blob[1]
        if flags & ~_KNOWN_FLAGS or (flags & FLAG_LATE and not flags & FLAG_CRYPT):
            raise DecodeError(f"clew blob has unknown flags {flags:#04x}; written by a newer clew?")
        if flags & FLAG_PICKLE and not allow_pickle:
            raise PickleRefusedError(
                "blob holds a pickled value and this codec has no pickle opt-in; "
                "unpickling is code execution: open the store with "
                "codec=clew.codec.Codec(allow_pickle=True) only if you trust it"
            )
        if flags & FLAG_CRYPT:
            if self._cipher is None:
                kid = self.key_id(blob) or "?"
                raise MissingKeyError(
                    f"blob is encrypted with key {kid!r} and this codec has no keyring: open the store with "
                    "codec=clew.codec.Codec(keyring=clew.codec.Keyring(...)) holding that key",
                    key_id=kid,
                )
            body = self._cipher.open(blob, 2, key)
        else:
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

"""Values to bytes and back: msgpack with a type registry, canonical for hashing.

The pipeline is ``value -> canonical msgpack -> (address) -> zstd -> envelope``.
Pickle is never used unless a codec is made with ``allow_pickle=True``; a pickled
blob read without that opt-in raises :class:`~clew.errors.PickleRefusedError`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from clew.codec._envelope import FLAG_SPLICED, Envelope
from clew.codec._msgpack import Decoder, Encoder
from clew.codec._types import register_class, register_type
from clew.errors import EncodeError

__all__ = ["ADDRESS_SIZE", "Codec", "register_class", "register_type"]

ADDRESS_SIZE = 16
"""Bytes in a content address (BLAKE2b-128 of the canonical plaintext)."""


class Codec:
    """Encodes values to stored blobs and back.

    Args:
        allow_pickle: fall back to pickle for types the registry does not know, and
            accept pickled blobs on read. Unpickling runs code from the store: opt in
            only for stores you trust.
        compress_threshold: encoded values of at least this many bytes are
            zstd-compressed (kept raw if compression does not shrink them).
        zstd_level: the zstd compression level.
        max_blob_size: the largest value written (encoded) or read (decompressed), in
            bytes; a bigger one is refused with an error naming its field, rather than
            held in memory over and over or written and never read back.
    """

    def __init__(
        self,
        *,
        allow_pickle: bool = False,
        compress_threshold: int = 256,
        zstd_level: int = 3,
        max_blob_size: int = 1 << 30,
    ) -> None:
        self.allow_pickle = allow_pickle
        self.max_blob_size = max_blob_size
        self._decoder = Decoder(allow_pickle=allow_pickle)
        self._envelope = Envelope(compress_threshold=compress_threshold, level=zstd_level, max_size=max_blob_size)

    def dumps(self, value: Any, path: str = "value") -> tuple[bytes, bool]:
        """Canonical plaintext bytes of ``value`` and whether pickle was used.

        Raises:
            UnknownTypeError: a value inside has an unknown type; names its path.
            EncodeError: the value cannot be written whole (too big, too deep...); names its path.
        """
        enc = Encoder(allow_pickle=self.allow_pickle)
        plain = enc.encode(value, path)
        if len(plain) > self.max_blob_size:
            raise EncodeError(
                path,
                f"it encodes to {len(plain):,} bytes, over the codec's cap of {self.max_blob_size:,} "
                "(Codec(max_blob_size=...)); keep large files outside the state and store a reference to them",
            )
        return plain, enc.uses_pickle

    def loads(self, plain: bytes) -> Any:
        """Decode canonical plaintext bytes. Raises DecodeError on bad input."""
        return self._decoder.decode(plain)

    def address(self, plain: bytes) -> bytes:
        """The content address of plaintext bytes."""
        return hashlib.blake2b(plain, digest_size=ADDRESS_SIZE).digest()

    def wrap(self, plain: bytes, *, pickled: bool = False, spliced: bool = False) -> bytes:
        """Plaintext bytes to the stored envelope (compressed when worth it).

        ``spliced`` marks a row whose large values the store keeps in blobs; such a
        body is the store's to read (:meth:`spliced`), not a value to decode.
        """
        return self._envelope.wrap(plain, pickled=pickled, spliced=spliced)

    @staticmethod
    def spliced(blob: bytes) -> bool:
        """Whether a stored envelope was wrapped with ``spliced=True``."""
        return len(blob) >= 2 and bool(blob[1] & FLAG_SPLICED)

    def unwrap(self, blob: bytes) -> bytes:
        """Stored envelope to plaintext bytes. Raises DecodeError on bad input."""
        return self._envelope.unwrap(blob, allow_pickle=self.allow_pickle)

    def encode(self, value: Any, path: str = "value") -> bytes:
        """``value`` to a stored blob in one call."""
        plain, pickled = self.dumps(value, path)
        return self.wrap(plain, pickled=pickled)

    def decode(self, blob: bytes) -> Any:
        """A stored blob to its value in one call."""
        return self.loads(self.unwrap(blob))

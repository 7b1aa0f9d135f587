"""Values to bytes and back: msgpack with a type registry, canonical for hashing.

The pipeline is ``value -> (redact) -> canonical msgpack -> (address) -> zstd ->
(AES-256-GCM) -> envelope``. Pickle is never used unless a codec is made with
``allow_pickle=True``; a pickled blob read without that opt-in raises
:class:`~clew.errors.PickleRefusedError`. With a :class:`Keyring`, every blob is
encrypted and content addresses are keyed hashes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

from clew.codec._crypto import LABEL_PREFIX, SCOPE, SUBJECT_PREFIX, Cipher, FileSubjectKeys, Keyring, SubjectKeys
from clew.codec._envelope import FLAG_PICKLE, FLAG_SPLICED, MAGIC, DataKey, Envelope
from clew.codec._msgpack import Decoder, Encoder
from clew.codec._redact import DIGEST_SIZE, Redacted
from clew.codec._types import register_class, register_type
from clew.errors import EncodeError

__all__ = [
    "ADDRESS_SIZE",
    "Codec",
    "FileSubjectKeys",
    "Keyring",
    "RedactHook",
    "Redacted",
    "SubjectKeys",
    "register_class",
    "register_type",
]

RedactHook = Callable[[Any, str], Any]
"""``hook(value, path) -> value``: sees every value before it is written (state fields
and list items, journal entries, checkpoint and run metadata: interrupt payloads,
answers, error messages) and returns it, or a copy with sensitive parts replaced
(by :class:`Redacted` markers from :meth:`Codec.redacted`, or masked text)."""

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
        keyring: encrypt every blob with AES-256-GCM under the keyring's current
            key, and key content addresses and seals with its ``mac`` key (needs
            ``clew[crypto]``). Blobs stored in the clear stay readable.
        redaction_key: the key of redaction digests (``SecretStr`` values, redacted
            fields). Derived from the keyring when there is one; otherwise random per
            codec, so that markers of equal values are equal only within a process:
            give one to compare them across processes.
        redact: a hook over every value written (see :data:`RedactHook`), for a PII
            detector.
    """

    def __init__(
        self,
        *,
        allow_pickle: bool = False,
        compress_threshold: int = 256,
        zstd_level: int = 3,
        max_blob_size: int = 1 << 30,
        keyring: Keyring | None = None,
        redaction_key: bytes | None = None,
        redact: RedactHook | None = None,
    ) -> None:
        self.allow_pickle = allow_pickle
        self.keyring = keyring
        self.redact = redact
        self.max_blob_size = max_blob_size
        self._decoder = Decoder(allow_pickle=allow_pickle)
        self._cipher = Cipher(keyring) if keyring is not None else None
        self._envelope = Envelope(
            compress_threshold=compress_threshold, level=zstd_level, max_size=max_blob_size, cipher=self._cipher
        )
        self._address_key = keyring.derive("address") if keyring is not None else None
        self._seal_key = keyring.derive("seal") if keyring is not None else None
        self._redaction_key = redaction_key or (keyring.derive("redact") if keyring is not None else os.urandom(32))

    @property
    def encrypts(self) -> bool:
        """Whether this codec encrypts what it wraps."""
        return self._cipher is not None

    def _digest(self, plain: bytes) -> bytes:
        return hashlib.blake2b(plain, key=self._redaction_key, digest_size=DIGEST_SIZE).digest()

    def redacted(self, value: Any, kind: str = "field") -> Redacted:
        """The marker ``value`` is stored as when redacted; equal values give equal markers.

        Compare it with a loaded marker to check a value without storing it:
        ``state.email == codec.redacted("ann@example.com")``.
        """
        if type(value) is Redacted:
            return value
        plain = Encoder(allow_pickle=False, digest=self._digest).encode(value, "redacted")
        return Redacted(kind, self._digest(plain))

    def dumps(self, value: Any, path: str = "value") -> tuple[bytes, bool]:
        """Canonical plaintext bytes of ``value`` and whether pickle was used.

        The ``redact`` hook, if any, sees the value first.

        Raises:
            UnknownTypeError: a value inside has an unknown type; names its path.
            EncodeError: the value cannot be written whole (too big, too deep...); names its path.
        """
        if self.redact is not None and path != "manifest":
            value = self.redact(value, path)
        enc = Encoder(allow_pickle=self.allow_pickle, digest=self._digest)
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
        """The content address of plaintext bytes: BLAKE2b-128, keyed when encrypting.

        This is the one place addresses are made: with a keyring they are keyed by
        its ``mac`` key, so equal plaintexts cannot be matched or guessed from the store.
        """
        return hashlib.blake2b(plain, key=self._address_key or b"", digest_size=ADDRESS_SIZE).digest()

    def addressed(self, plain: bytes, addr: bytes, blob: bytes) -> bool:
        """Whether ``plain`` (unwrapped from ``blob``) is the content ``addr`` names.

        With a keyring, a blob stored in the clear before encryption was turned on keeps
        its plain address, and is accepted under it.
        """
        if self.address(plain) == addr:
            return True
        return self._address_key is not None and not self.keyed(blob) and self._unkeyed_address(plain) == addr

    def address_hint(self, plain: bytes, addr: bytes) -> str:
        """Why ``plain`` may not match ``addr`` other than changed bytes: another address key."""
        if self.keyring is None:
            return ""
        for key_id in self.keyring.ids:
            k = self.keyring.derive("address", key_id)
            if hashlib.blake2b(plain, key=k, digest_size=ADDRESS_SIZE).digest() == addr:
                return (
                    f" (it was addressed with key {key_id!r}: open the store with "
                    f"Keyring(..., mac={key_id!r}), the address key must not change)"
                )
        return ""

    def mac_hint(self) -> str:
        """For a seal that does not match: the keyed-seal cause to rule out, if any."""
        if self.keyring is None:
            return ""
        return (
            f" (or the keyring's mac key {self.keyring.mac!r} is not the one the store was written with: "
            "open it with Keyring(..., mac=<that key id>))"
        )

    @staticmethod
    def _unkeyed_address(plain: bytes) -> bytes:
        return hashlib.blake2b(plain, digest_size=ADDRESS_SIZE).digest()

    def sealable(self, plain: bytes, *, encrypted: bool) -> bytes:
        """What the hash chain covers of a stored payload: the plaintext itself, or for an
        ``encrypted`` one its keyed hash, so that a seal stored in the clear reveals nothing."""
        if not encrypted or self._seal_key is None:
            return plain
        return hashlib.blake2b(plain, key=self._seal_key, digest_size=32).digest()

    @staticmethod
    def spliced(blob: bytes) -> bool:
        """Whether a stored envelope was wrapped with ``spliced=True``."""
        return len(blob) >= 2 and bool(blob[1] & FLAG_SPLICED)

    def wrap(self, plain: bytes, *, pickled: bool = False, spliced: bool = False, key: DataKey | None = None) -> bytes:
        """Plaintext bytes to the stored envelope: compressed when worth it, then encrypted
        with a keyring (under its current key, the data subject's key of the operation
        under way, or the data key ``key``).

        ``spliced`` marks a row whose large values the store keeps in blobs; such a
        body is the store's to read (:meth:`spliced`), not a value to decode.
        """
        if key is None and self.keyring is not None:
            scope = SCOPE.get()
            if scope is not None:
                subject = scope.startswith(SUBJECT_PREFIX)
                key = (scope, self.keyring.subject_key(scope) if subject else self.keyring.key(scope))
        return self._envelope.wrap(plain, pickled=pickled, spliced=spliced, key=key)

    def rewrap(self, plain: bytes, blob: bytes, key: DataKey) -> bytes:
        """``blob``, whose plaintext is ``plain``, encrypted again under data key ``key``.

        A blob that was stored in the clear keeps what its address and seal cover (the
        plaintext, unkeyed): the new envelope says so with a flag (see
        :meth:`keyed`), so verification still holds after it is encrypted in place.
        """
        late = self.key_id(blob) is None or self._envelope.late(blob)
        enveloped = blob[:1] == bytes((MAGIC,))  # a manifest stored in the clear is bare msgpack
        return self._envelope.wrap(
            plain,
            pickled=enveloped and bool(blob[1] & FLAG_PICKLE),
            spliced=enveloped and self.spliced(blob),
            key=key,
            late=late,
        )

    def keyed(self, blob: bytes) -> bool:
        """Whether the address and seal of a stored envelope are keyed: it was encrypted
        when written (not stored in the clear, nor encrypted in place later)."""
        return self.key_id(blob) is not None and not self._envelope.late(blob)

    def new_data_key(self) -> tuple[str, bytes] | None:
        """A fresh data key for a run (id, stored wrapped form); None without a keyring."""
        return self.keyring.new_data_key() if self.keyring is not None else None

    def add_data_key(self, stored: bytes) -> str | None:
        """Note a run's stored data key; returns its id (None without a keyring)."""
        return self.keyring.add_data_key(stored) if self.keyring is not None else None

    def data_key(self, key_id: str) -> DataKey:
        """The data key (id, bytes) named ``key_id``, a run's or a subject's."""
        assert self.keyring is not None
        if key_id.startswith(SUBJECT_PREFIX):
            return key_id, self.keyring.subject_key(key_id)
        return key_id, self.keyring.key(key_id)

    @property
    def subject_keys(self) -> bool:
        """Whether runs of a data subject are encrypted under the subject's own key."""
        return self.keyring is not None and self.keyring.subjects is not None

    def subject_key_id(self, subject: str | None) -> str | None:
        """The key id a subject's data is written under (None without subject keys)."""
        if subject is None or self.keyring is None or self.keyring.subjects is None:
            return None
        return self.keyring.subject_key_id(subject)

    def destroy_subject_key(self, subject: str) -> str | None:
        """Destroy a subject's key (crypto-shredding); returns its id, None without subject keys."""
        kid = self.subject_key_id(subject)
        if kid is not None and self.keyring is not None and self.keyring.subjects is not None:
            self.keyring.subjects.destroy(kid)
            self.keyring.forget(kid)
            if self._cipher is not None:
                self._cipher.forget(kid)
        return kid

    def forget_key(self, key_id: str) -> None:
        """Drop a data key from this process's memory (its run was erased)."""
        if self.keyring is not None:
            self.keyring.forget(key_id)
        if self._cipher is not None:
            self._cipher.forget(key_id)

    def unwrap(self, blob: bytes, *, key: bytes | None = None) -> bytes:
        """Stored envelope to plaintext bytes (decrypted with the key its header names, or ``key``).

        Raises:
            DecodeError: bytes that are not a clew blob.
            MissingKeyError: encrypted with a key id the keyring does not hold.
            DecryptError: the key under that id is the wrong one, or the bytes changed.
        """
        return self._envelope.unwrap(blob, allow_pickle=self.allow_pickle, key=key)

    def seal_label(self, value: str) -> str:
        """A run label's value as stored: itself, or encrypted deterministically with a keyring
        (equal values stay equal, so runs can still be filtered by label). The ``redact``
        hook sees it first, at path ``labels``."""
        if self.redact is not None:
            value = str(self.redact(value, "labels"))
        return self._cipher.seal_label(value) if self._cipher is not None else value

    def open_label(self, stored: str) -> str:
        """A stored label value back to the value given (see :meth:`seal_label`)."""
        if self._cipher is None or not stored.startswith(LABEL_PREFIX):
            return stored
        return self._cipher.open_label(stored)

    def key_id(self, blob: bytes) -> str | None:
        """The key id an encrypted blob names; None for one stored in the clear."""
        return self._envelope.key_id(blob)

    def encode(self, value: Any, path: str = "value") -> bytes:
        """``value`` to a stored blob in one call."""
        plain, pickled = self.dumps(value, path)
        return self.wrap(plain, pickled=pickled)

    def decode(self, blob: bytes) -> Any:
        """A stored blob to its value in one call."""
        return self.loads(self.unwrap(blob))

"""Hashes that seal checkpoints, journal entries and branch heads into a chain, and the
optional keyed seal (a MAC) that only the holder of a key can compute.

The hashes have no key: they find any changed byte, but someone who can write the
database can recompute them. A :class:`SealKey` adds a MAC over each checkpoint's hash
and each branch head's seal; without the key, a chain can be changed only by leaving
MACs that ``verify`` rejects. A lost key makes MACs unverifiable, never data unreadable:
loads check the hashes, and only ``verify`` checks MACs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ormsgpack

from clew.errors import ConfigError

HASH_SIZE = 32
_MAX_SECRET = 64  # BLAKE2b's largest key


def _pack(value: Any) -> bytes:
    return ormsgpack.packb(value, option=ormsgpack.OPT_SORT_KEYS)


def checkpoint_hash(
    parent_hash: bytes,
    checkpoint_id: str,
    branch: str,
    kind: str,
    manifest: bytes,
    meta: bytes,
    created_at: float,
    journal_hashes: Sequence[bytes],
) -> bytes:
    """The hash sealing a checkpoint: its parent's hash, content and journal."""
    body = _pack(
        ["clew/ckpt/1", parent_hash, checkpoint_id, branch, kind, manifest, meta, created_at, list(journal_hashes)]
    )
    return hashlib.blake2b(body, digest_size=HASH_SIZE).digest()


def journal_hash(
    seq: int, branch: str, kind: str, plain: bytes | memoryview, created_at: float, run_id: str | None
) -> bytes:
    """An entry's hash; version 2 (with ``run_id``) binds the entry to its run.

    Entries written before schema 4 have version 1 (``run_id`` None).
    """
    before = ["clew/journal/1", seq, branch, kind] if run_id is None else ["clew/journal/2", run_id, seq, branch, kind]
    # The hash of the msgpack array [*before, plain, created_at], fed piece by piece so
    # that a big entry is not copied once more into the array's bytes.
    h = hashlib.blake2b(digest_size=HASH_SIZE)
    h.update(_array_header(len(before) + 2))
    for item in before:
        h.update(_pack(item))
    h.update(_bin_header(len(plain)))
    h.update(plain)
    h.update(_pack(created_at))
    return h.digest()


def _array_header(n: int) -> bytes:
    return bytes((0x90 | n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big")


def _bin_header(n: int) -> bytes:
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def head_seal(run_id: str, branch: str, head: str | None, head_hash: bytes | None) -> bytes:
    """The seal of a branch row: which checkpoint is its head, and that checkpoint's hash."""
    body = _pack(["clew/head/1", run_id, branch, head, head_hash or b""])
    return hashlib.blake2b(body, digest_size=HASH_SIZE).digest()


@dataclass(frozen=True, slots=True)
class SealKey:
    """A key for keyed seals: keyed BLAKE2b (BLAKE2b's built-in MAC mode) over each
    checkpoint hash and head seal.

    Args:
        key_id: a short name stored with each MAC, so keys can be rotated.
        secret: 32 to 64 random bytes, kept outside the database (BLAKE2b's keys are
            at most 64 bytes).
        old: earlier keys by id, still accepted by ``verify``.

    Raises:
        ConfigError: a bad ``key_id``, a secret shorter than 32 bytes, or a secret
            (this one or an old one) longer than 64 bytes.
    """

    key_id: str
    secret: bytes
    old: Mapping[str, bytes] | None = None

    def __post_init__(self) -> None:
        if not self.key_id or "\0" in self.key_id:
            raise ConfigError("SealKey: key_id must be a non-empty string without NUL characters")
        if len(self.secret) < 32:
            raise ConfigError(f"SealKey {self.key_id!r}: the secret must be at least 32 bytes, not {len(self.secret)}")
        _fits(self.key_id, self.secret)
        for key_id, secret in (self.old or {}).items():
            _fits(key_id, secret)

    def mac(self, sealed: bytes) -> bytes:
        """``key_id NUL digest``: the MAC stored beside a hash."""
        return self.key_id.encode() + b"\0" + _digest(self.secret, sealed)

    def check(self, sealed: bytes, mac: bytes) -> bool | None:
        """True if ``mac`` is right, False if wrong, None if its key is not known here."""
        key_id, sep, digest = mac.partition(b"\0")
        if not sep:
            return False
        name = key_id.decode(errors="replace")
        secret = self.secret if name == self.key_id else (self.old or {}).get(name)
        if secret is None:
            return None
        return hmac.compare_digest(_digest(secret, sealed), digest)


def _fits(key_id: str, secret: bytes) -> None:
    """Refuse a secret BLAKE2b cannot take whole: earlier versions cut it to 64 bytes unsaid."""
    if len(secret) > _MAX_SECRET:
        raise ConfigError(
            f"SealKey {key_id!r}: the secret is {len(secret)} bytes, but BLAKE2b keys are at most"
            f" {_MAX_SECRET} bytes. A store sealed with a longer secret used its first {_MAX_SECRET}"
            f" bytes: pass secret[:{_MAX_SECRET}] to keep verifying it"
        )


def _digest(secret: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(data, key=secret, digest_size=HASH_SIZE, person=b"clew-seal").digest()


def mac_key_id(mac: bytes | None) -> str | None:
    """The key id a stored MAC names."""
    return None if mac is None else mac.partition(b"\0")[0].decode(errors="replace")

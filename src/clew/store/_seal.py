"""Hashes that seal checkpoints and journal entries into a chain."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import ormsgpack

HASH_SIZE = 32


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


def journal_hash(seq: int, branch: str, kind: str, plain: bytes, created_at: float) -> bytes:
    body = _pack(["clew/journal/1", seq, branch, kind, plain, created_at])
    return hashlib.blake2b(body, digest_size=HASH_SIZE).digest()

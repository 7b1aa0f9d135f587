"""Redaction: values stored as a marker holding a keyed hash, never as plaintext.

A :class:`Redacted` marker replaces the value on disk. Its ``digest`` is a keyed hash
(BLAKE2b keyed with the codec's redaction key) of the value's canonical bytes, so two
markers of the same value are equal, and a marker can be compared with a candidate
value through :meth:`clew.codec.Codec.redacted`, but the value cannot be read back or
guessed without the key.

Pydantic ``SecretStr`` and ``SecretBytes`` are always stored this way.
"""

from __future__ import annotations

from dataclasses import dataclass

DIGEST_SIZE = 16


@dataclass(frozen=True, slots=True)
class Redacted:
    """A value stored masked.

    Attributes:
        kind: what was masked: ``SecretStr``, ``SecretBytes``, ``field`` (a field
            declared redacted) or a name the ``redact`` hook chose (``email``...).
        digest: the keyed hash of the value; equal values give equal digests.
    """

    kind: str
    digest: bytes

    def __repr__(self) -> str:
        return f"Redacted({self.kind!r}, {self.digest.hex()[:12]})"

    def __str__(self) -> str:
        return f"[redacted {self.kind}]"

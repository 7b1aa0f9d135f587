"""Encryption at rest: a keyring of AES-256 keys and the AES-256-GCM transform of blobs.

The ``cryptography`` package (``pip install 'clew[crypto]'``) does the cipher work.
Key material never leaves the keyring object: it is never stored, logged or put in an
error message; errors name the key *id*.

An encrypted blob is the envelope of :mod:`clew.codec._envelope` with flag ``0x08``::

    byte 0      magic 0xC7
    byte 1      flags (0x08 encrypted; 0x01, 0x02 and 0x04 describe the payload inside)
    byte 2      n, the length of the key id
    3 .. 3+n    the key id (ASCII)
    next 12     the GCM nonce (random)
    rest        ciphertext and the 16-byte GCM tag

The header (magic, flags, key id) is the GCM associated data, so no flag or key id can
be changed without the tag failing.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from clew._extras import require
from clew.errors import ConfigError, DecryptError, MissingKeyError

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
LABEL_PREFIX = "clew-siv:"
SUBJECT_PREFIX = "s."
DATA_PREFIX = "d."
MAGIC = 0xC7
FLAG_CRYPT = 0x08
SCOPE: contextvars.ContextVar[str | None] = contextvars.ContextVar("clew_subject_key", default=None)
"""The subject key id the current store operation writes under (set per operation by the store)."""


class SubjectKeys(Protocol):
    """Where per-subject keys live, apart from the database (a KMS, a key directory).

    Destroying a subject's key makes everything written under it unreadable wherever
    a copy lies (WAL, replicas, backups): crypto-shredding.
    """

    def get(self, key_id: str, *, create: bool) -> bytes | None:
        """The 32-byte key ``key_id``; made (and kept) first if ``create``; None if absent."""
        ...

    def destroy(self, key_id: str) -> None:
        """Destroy key ``key_id`` for good (no error if it is already gone)."""
        ...


class FileSubjectKeys:
    """Subject keys as one file each in a directory kept apart from the database and its
    backups; destroying a key deletes its file. For small deployments and tests; a KMS
    implements the same two methods."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"subject key directory {os.fspath(directory)!r} does not exist; create it first")

    def get(self, key_id: str, *, create: bool) -> bytes | None:
        path = self.directory / _check_id(key_id)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            if not create:
                return None
        # Written whole to a temporary name, then linked into place: two processes making
        # the same subject's key at once agree on one (the loser reads the winner's).
        key = os.urandom(KEY_SIZE)
        tmp = self.directory / f".{key_id}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            key = path.read_bytes()
        finally:
            tmp.unlink()
        return key

    def destroy(self, key_id: str) -> None:
        try:
            (self.directory / _check_id(key_id)).unlink()
        except FileNotFoundError:
            pass


_KEY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _check_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise ConfigError(f"key id {key_id!r}: use 1-64 letters, digits, '.', '_', ':' or '-'")
    return key_id


def _check_key(key_id: str, key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise ConfigError(f"key {key_id!r} must be {KEY_SIZE} bytes (AES-256), got {len(key)}")
    return bytes(key)


def _parse_keys(text: str, where: str) -> dict[str, bytes]:
    """``id=base64key`` items separated by commas, spaces or newlines."""
    keys: dict[str, bytes] = {}
    uncommented = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    for item in re.split(r"[\s,]+", uncommented.strip()):
        if not item:
            continue
        key_id, sep, b64 = item.partition("=")
        if not sep:
            raise ConfigError(f"{where}: expected id=base64key items, got {item[:12]!r}...")
        try:
            raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
        except binascii.Error:
            raise ConfigError(f"{where}: key {key_id!r} is not valid base64") from None
        keys[_check_id(key_id)] = _check_key(key_id, raw)
    if not keys:
        raise ConfigError(f"{where} holds no keys; make one with: clew keys generate")
    return keys


class Keyring:
    """Named AES-256 keys: one to encrypt with, all to decrypt with.

    Args:
        keys: key id -> 32 key bytes. Keep retired keys here until
            ``clew keys rotate`` has re-encrypted what they protect.
        current: the id of the key new data is encrypted with (the last one of
            ``keys`` by default).
        mac: the id of the key that keys content addresses and redaction hashes
            (the first one of ``keys`` by default). It must stay the same for the life of
            a store: addresses written under it are checked with it.
        fetch: for keys held elsewhere (a KMS): called with a key id not in ``keys``,
            returns its 32 bytes or None.
        subjects: where per-subject keys live (:class:`FileSubjectKeys`, or a KMS with
            the same two methods). With it, everything a run tagged with a data subject
            stores is encrypted under that subject's own key, and ``erase(subject=...)``
            destroys the key (crypto-shredding).
    """

    def __init__(
        self,
        keys: Mapping[str, bytes] | None = None,
        *,
        current: str | None = None,
        mac: str | None = None,
        fetch: Callable[[str], bytes | None] | None = None,
        subjects: SubjectKeys | None = None,
    ) -> None:
        self._keys = {_check_id(k): _check_key(k, v) for k, v in (keys or {}).items()}
        self._wrapped: dict[str, bytes] = {}  # data key id -> its wrapped form, unwrapped on first use
        self._fetch = fetch
        self.subjects = subjects
        ids = list(self._keys)
        self.current = _check_id(current) if current is not None else (ids[-1] if ids else "")
        self.mac = _check_id(mac) if mac is not None else (ids[0] if ids else self.current)
        if not self.current:
            raise ConfigError("a Keyring needs at least one key, or current= with a fetch callable")
        self.key(self.current)  # fail now, not at the first write
        self.key(self.mac)

    @classmethod
    def from_env(cls, var: str = "CLEW_KEYS", **options: Any) -> Keyring:
        """Keys from an environment variable: ``id=base64key`` items, comma-separated."""
        text = os.environ.get(var)
        if not text:
            raise ConfigError(f"environment variable {var} is not set; set it to id=base64key[,id=base64key...]")
        return cls(_parse_keys(text, f"environment variable {var}"), **options)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> Keyring:
        """Keys from a file of ``id=base64key`` lines (``#`` starts a comment)."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read key file {os.fspath(path)!r}: {exc.strerror}") from None
        return cls(_parse_keys(text, f"key file {os.fspath(path)!r}"), **options)

    @staticmethod
    def generate() -> bytes:
        """A fresh random 32-byte key."""
        return os.urandom(KEY_SIZE)

    @property
    def ids(self) -> list[str]:
        """The ids of the keyring keys held (not those a ``fetch`` callable could supply, nor
        the subject and data keys cached here)."""
        return [k for k in self._keys if not k.startswith((SUBJECT_PREFIX, DATA_PREFIX))]

    def subject_key_id(self, subject: str) -> str:
        """The id of a data subject's key: a keyed hash of the subject, so a KMS never sees it."""
        tag = hmac.new(self.derive("subject"), subject.encode(), hashlib.sha256).hexdigest()[:32]
        return SUBJECT_PREFIX + tag

    def subject_key(self, key_id: str) -> bytes:
        """A subject's key for writing: made on first use."""
        found = self._keys.get(key_id)
        if found is None:
            assert self.subjects is not None
            made = self.subjects.get(key_id, create=True)
            assert made is not None
            found = self._keys[key_id] = _check_key(key_id, made)
        return found

    def forget(self, key_id: str) -> None:
        """Drop a destroyed subject key (or an erased run's data key) from this process's memory."""
        self._keys.pop(key_id, None)
        self._wrapped.pop(key_id, None)

    # -- data keys: one per run, stored wrapped (encrypted) by a keyring key ------------

    def new_data_key(self) -> tuple[str, bytes]:
        """A fresh data key: its id and its stored form, wrapped by the current key.

        The stored form is ``id NUL wrapped``, where ``wrapped`` is the 32 key bytes
        sealed with AES-256-GCM under the current keyring key, laid out as an encrypted
        envelope (magic, flags, keyring key id, nonce, ciphertext and tag) whose
        associated data also binds the data key's id: a wrapped key moved to another
        run does not unwrap.
        """
        data_key_id = DATA_PREFIX + os.urandom(12).hex()
        key = os.urandom(KEY_SIZE)
        self._keys[data_key_id] = key
        return data_key_id, data_key_id.encode() + b"\0" + self._wrap(data_key_id, key)

    def add_data_key(self, stored: bytes) -> str:
        """Note a run's stored data key (unwrapped when first used); returns its id."""
        data_key_id, wrapped = self._split(stored)
        if data_key_id not in self._keys:
            self._wrapped[data_key_id] = wrapped
        return data_key_id

    def rewrap(self, stored: bytes) -> bytes | None:
        """A stored data key wrapped again under the current key; None if it already is."""
        data_key_id, wrapped = self._split(stored)
        if self.wrapped_by(stored) == self.current:
            return None
        key = self._keys.get(data_key_id) or self._unwrap(data_key_id, wrapped)
        return data_key_id.encode() + b"\0" + self._wrap(data_key_id, key)

    def wrapped_by(self, stored: bytes) -> str:
        """The id of the keyring key a stored data key is wrapped by."""
        wrapped = self._split(stored)[1]
        return wrapped[3 : 3 + wrapped[2]].decode("ascii", "replace")

    @staticmethod
    def _split(stored: bytes) -> tuple[str, bytes]:
        from clew.errors import DecodeError

        data_key_id, sep, wrapped = bytes(stored).partition(b"\0")
        if not sep or len(wrapped) < 3 or wrapped[0] != MAGIC or len(wrapped) < 3 + wrapped[2] + NONCE_SIZE + TAG_SIZE:
            raise DecodeError("a stored data key is damaged (expected id NUL wrapped-key)")
        return data_key_id.decode("ascii", "replace"), wrapped

    def _aead(self, key_id: str) -> Any:
        aesgcm = require("cryptography.hazmat.primitives.ciphers.aead", "crypto", "encryption at rest").AESGCM
        return aesgcm(self.key(key_id))

    def _wrap(self, data_key_id: str, key: bytes) -> bytes:
        kid = self.current
        header = bytes((MAGIC, FLAG_CRYPT, len(kid))) + kid.encode()
        nonce = os.urandom(NONCE_SIZE)
        return header + nonce + bytes(self._aead(kid).encrypt(nonce, key, header + data_key_id.encode()))

    def _unwrap(self, data_key_id: str, wrapped: bytes) -> bytes:
        n = wrapped[2]
        kid = wrapped[3 : 3 + n].decode("ascii", "replace")
        header, nonce, body = wrapped[: 3 + n], wrapped[3 + n : 3 + n + NONCE_SIZE], wrapped[3 + n + NONCE_SIZE :]
        invalid = require("cryptography.exceptions", "crypto", "encryption at rest").InvalidTag
        try:
            key = bytes(self._aead(kid).decrypt(nonce, body, header + data_key_id.encode()))
        except invalid:
            raise DecryptError(
                f"data key {data_key_id!r} is wrapped by key {kid!r}, and the key under that id does not unwrap "
                "it: the wrong key, or the stored data key was changed",
                key_id=kid,
            ) from None
        return _check_key(data_key_id, key)

    def key(self, key_id: str) -> bytes:
        """The key named ``key_id``. Raises MissingKeyError naming it."""
        if key_id.startswith(SUBJECT_PREFIX) and key_id not in self._keys:
            got = self.subjects.get(key_id, create=False) if self.subjects is not None else None
            if got is None:
                raise MissingKeyError(
                    f"key {key_id!r} of a data subject is not in the subject key store: it was destroyed when "
                    "the subject was erased (crypto-shredding), or this is not the key store the data was "
                    "written with",
                    key_id=key_id,
                )
            self._keys[key_id] = _check_key(key_id, got)
        if key_id.startswith(DATA_PREFIX) and key_id not in self._keys:
            wrapped = self._wrapped.get(key_id)
            if wrapped is None:
                raise MissingKeyError(
                    f"data key {key_id!r} of a run is not known here: the run was erased (its wrapped key went "
                    "with it), or this blob was read without looking its run up first",
                    key_id=key_id,
                )
            self._keys[key_id] = self._unwrap(key_id, wrapped)
            del self._wrapped[key_id]
        found = self._keys.get(key_id)
        if found is None and self._fetch is not None:
            fetched = self._fetch(key_id)
            if fetched is not None:
                found = self._keys[key_id] = _check_key(key_id, fetched)
        if found is None:
            raise MissingKeyError(
                f"key {key_id!r} is not in the keyring (it holds {', '.join(map(repr, self.ids)) or 'no keys'}); "
                "add it: data encrypted with it cannot be read without it",
                key_id=key_id,
            )
        return found

    def derive(self, purpose: str, key_id: str | None = None) -> bytes:
        """A 32-byte subkey of key ``key_id`` (the ``mac`` key by default) for one purpose."""
        return hmac.new(self.key(key_id or self.mac), b"clew/" + purpose.encode(), hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"Keyring(ids={self.ids!r}, current={self.current!r}, mac={self.mac!r})"


class Cipher:
    """AES-256-GCM over envelope payloads, with the key id in the header."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._aead = require("cryptography.hazmat.primitives.ciphers.aead", "crypto", "encryption at rest").AESGCM
        self._invalid_tag = require("cryptography.exceptions", "crypto", "encryption at rest").InvalidTag
        self._by_id: dict[str, Any] = {}
        self._siv: Any = None

    def _for(self, key_id: str, key: bytes | None = None) -> Any:
        aead = self._by_id.get(key_id)
        if aead is None:
            aead = self._by_id[key_id] = self._aead(key if key is not None else self.keyring.key(key_id))
        return aead

    def seal(self, header: bytes, payload: bytes, key_id: str | None = None, key: bytes | None = None) -> bytes:
        """``header`` + key id + nonce + ciphertext of ``payload``, under key ``key_id`` (current)."""
        kid = key_id or self.keyring.current
        aad = header + bytes((len(kid),)) + kid.encode()
        nonce = os.urandom(NONCE_SIZE)
        return aad + nonce + bytes(self._for(kid, key).encrypt(nonce, payload, aad))

    def open(self, blob: bytes, header_size: int, key: bytes | None = None) -> bytes:
        """The payload of a sealed blob. Raises DecryptError or MissingKeyError naming the key id."""
        from clew.errors import DecodeError

        if len(blob) < header_size + 1:
            raise DecodeError("encrypted blob is truncated")
        n = blob[header_size]
        start = header_size + 1 + n
        if n == 0 or len(blob) < start + NONCE_SIZE + TAG_SIZE:
            raise DecodeError("encrypted blob is truncated")
        kid = blob[header_size + 1 : start].decode("ascii", "replace")
        aad, nonce, body = blob[:start], blob[start : start + NONCE_SIZE], blob[start + NONCE_SIZE :]
        try:
            return bytes(self._for(kid, key).decrypt(nonce, body, aad))
        except self._invalid_tag:
            raise DecryptError(
                f"blob encrypted with key {kid!r} does not decrypt: the key under that id is the wrong one, "
                "or the stored bytes were changed",
                key_id=kid,
            ) from None

    def seal_label(self, value: str) -> str:
        """A label value encrypted deterministically (AES-SIV): equal values give equal
        text, so a store can still filter runs by label, and nothing else is revealed."""
        if self._siv is None:
            siv = require("cryptography.hazmat.primitives.ciphers.aead", "crypto", "encryption at rest").AESSIV
            self._siv = siv(self.keyring.derive("label-1") + self.keyring.derive("label-2"))
        sealed = self._siv.encrypt(value.encode(), None)
        return LABEL_PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open_label(self, stored: str) -> str:
        """The label value :meth:`seal_label` sealed."""
        self.seal_label("")  # makes the SIV cipher
        body = stored[len(LABEL_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return bytes(self._siv.decrypt(raw, None)).decode()
        except (self._invalid_tag, binascii.Error, ValueError):
            raise DecryptError(
                f"a label value does not decrypt under the keyring's mac key {self.keyring.mac!r}: the wrong "
                "keyring, or the stored label was changed",
                key_id=self.keyring.mac,
            ) from None

    def forget(self, key_id: str) -> None:
        self._by_id.pop(key_id, None)

    @staticmethod
    def key_id_of(blob: bytes, header_size: int) -> str:
        """The key id in an encrypted blob's header."""
        n = blob[header_size]
        return blob[header_size + 1 : header_size + 1 + n].decode("ascii", "replace")

"""Values to canonical msgpack bytes and back, exact types included.

The fast path hands the whole value to ormsgpack (C) with a ``default`` hook for the
types it cannot hold natively. When that fails (a dict with non-str keys, or an
unknown type) the slow path walks the value in Python, which is also what names the
field path in an :class:`~clew.errors.UnknownTypeError`.

Output is canonical: str-keyed maps are sorted, sets and non-str-keyed maps are
ordered by their encoded bytes, so equal values give equal bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any

import ormsgpack

from clew.codec import _types as t
from clew.codec._redact import Redacted
from clew.errors import DecodeError, EncodeError, PickleRefusedError, UnknownTypeError

_OPTS = (
    ormsgpack.OPT_SORT_KEYS
    | ormsgpack.OPT_PASSTHROUGH_BIG_INT
    | ormsgpack.OPT_PASSTHROUGH_DATACLASS
    | ormsgpack.OPT_PASSTHROUGH_DATETIME
    | ormsgpack.OPT_PASSTHROUGH_ENUM
    | ormsgpack.OPT_PASSTHROUGH_SUBCLASS
    | ormsgpack.OPT_PASSTHROUGH_TUPLE
    | ormsgpack.OPT_PASSTHROUGH_UUID
)
_NATIVE = (bytes, bool, float, type(None))

#: How deep containers may nest in one value (msgpack readers stop near 255).
MAX_DEPTH = 200

# ormsgpack replaces whatever an ext_hook raised with a bare ValueError("ext_hook
# failed"); the hook keeps the innermost failure here so decode() can report it.
_hook_failure = threading.local()


class _Unknown(Exception):
    def __init__(self, value: object) -> None:
        self.value = value


def _type_name(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


class Encoder:
    """Encodes values; ``uses_pickle`` tells whether the pickle fallback was taken."""

    __slots__ = ("_active", "_allow_pickle", "_digest", "uses_pickle")

    def __init__(self, *, allow_pickle: bool = False, digest: Callable[[bytes], bytes] | None = None) -> None:
        self._allow_pickle = allow_pickle
        self._digest = digest  # keyed hash for redaction markers
        self.uses_pickle = False
        self._active: set[int] = set()  # the containers on the path being walked

    def encode(self, value: Any, path: str = "value") -> bytes:
        try:
            return ormsgpack.packb(value, default=self._default, option=_OPTS)
        except (TypeError, _Unknown, OverflowError, EncodeError, RecursionError):
            pass  # fall through to the walker, which names the path or handles the case
        self._active.clear()
        try:
            return ormsgpack.packb(self._prepare(value, path), option=_OPTS)
        except RecursionError:
            raise EncodeError(path, "it nests too deeply; flatten it, or store it as text (JSON)") from None

    # -- fast path -------------------------------------------------------------
    def _default(self, value: Any) -> Any:
        ext = self._to_ext(value, self._default_nested, "value")
        if ext is None:
            raise _Unknown(value)
        return ext

    def _default_nested(self, value: Any, path: str) -> bytes:
        return ormsgpack.packb(value, default=self._default, option=_OPTS)

    # -- slow path: walk the value, naming paths -------------------------------
    def _prepare(self, value: Any, path: str) -> Any:
        cls = type(value)
        if cls is str:
            return _text(value, path)
        if cls in _NATIVE:
            return value
        if cls is int:
            return value if -(2**63) <= value < 2**64 else self._ext_or_fail(value, path)
        key = id(value)
        if key in self._active:
            raise EncodeError(
                path, "it contains itself; clew stores values as trees, so break the cycle (store an id instead)"
            )
        if len(self._active) >= MAX_DEPTH:
            raise EncodeError(path, f"it nests deeper than {MAX_DEPTH} levels; flatten it, or store it as text (JSON)")
        self._active.add(key)
        try:
            if cls is list:
                return [self._prepare(v, f"{path}[{i}]") for i, v in enumerate(value)]
            if cls is dict and all(type(k) is str for k in value):
                return {_text(k, f"{path}<key>"): self._prepare(v, f"{path}[{k!r}]") for k, v in value.items()}
            return self._ext_or_fail(value, path)
        finally:
            self._active.discard(key)

    def _ext_or_fail(self, value: Any, path: str) -> ormsgpack.Ext:
        ext = self._to_ext(value, self._pack_walked, path)
        if ext is None:
            raise UnknownTypeError(path, _type_name(value))
        return ext

    def _pack_walked(self, value: Any, path: str) -> bytes:
        return ormsgpack.packb(self._prepare(value, path), option=_OPTS)

    # -- the extension records, shared by both paths ---------------------------
    def _to_ext(self, value: Any, pack: Callable[[Any, str], bytes], path: str) -> ormsgpack.Ext | None:
        cls = type(value)
        if cls is tuple:
            return ormsgpack.Ext(t.EXT_TUPLE, pack(list(value), path))
        if cls is set or cls is frozenset:
            items = sorted(pack(v, f"{path}{{item}}") for v in value)
            code = t.EXT_SET if cls is set else t.EXT_FROZENSET
            return ormsgpack.Ext(code, ormsgpack.packb(items))
        if cls is dict:
            pairs = sorted([pack(k, f"{path}<key>"), pack(v, f"{path}[{k!r}]")] for k, v in value.items())
            return ormsgpack.Ext(t.EXT_DICT, ormsgpack.packb(pairs))
        try:
            scalar = t.scalar_to_ext(value)
        except TypeError:  # a datetime or time whose tzinfo is neither timezone nor ZoneInfo
            if not self._allow_pickle:
                raise UnknownTypeError(path, _type_name(value.tzinfo)) from None
            scalar = None
        if scalar is not None:
            return ormsgpack.Ext(scalar[0], ormsgpack.packb(scalar[1]))
        if cls is Redacted:
            return ormsgpack.Ext(t.EXT_REDACTED, ormsgpack.packb([value.kind, value.digest]))
        secret = _secret_kind(value)
        if secret is not None and self._digest is not None:
            raw = value.get_secret_value()
            digest = self._digest(ormsgpack.packb(raw))
            return ormsgpack.Ext(t.EXT_REDACTED, ormsgpack.packb([secret, digest]))
        user = t.user_type_for(cls)
        if user is not None:
            return ormsgpack.Ext(t.EXT_USER, ormsgpack.packb([user.key, pack(user.encode(value), path)]))
        if t.local_class(cls) and (
            isinstance(value, enum.Enum)
            or (dataclasses.is_dataclass(value) and not isinstance(value, type))
            or t.is_pydantic_instance(value)
        ):
            raise EncodeError(
                path,
                f"class {cls.__qualname__} is defined inside a function, so no other process can find it to "
                "decode; define it at module level (or clew.codec.register_class it in every process that reads it)",
            )
        if isinstance(value, enum.Enum):
            key = t.remember_class(cls)
            return ormsgpack.Ext(t.EXT_ENUM, ormsgpack.packb([key, pack(value.value, f"{path}.value")]))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            key = t.remember_class(cls)
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return ormsgpack.Ext(t.EXT_DATACLASS, ormsgpack.packb([key, self._pack_fields(fields, pack, path)]))
        if t.is_pydantic_instance(value):
            key = t.remember_class(cls)
            fields = {name: getattr(value, name) for name in type(value).model_fields}
            extra = value.__pydantic_extra__ or None
            fields_set = sorted(value.model_fields_set)
            payload = [
                key,
                self._pack_fields(fields, pack, path),
                self._pack_fields(extra, pack, path) if extra else None,
                fields_set,
            ]
            return ormsgpack.Ext(t.EXT_PYDANTIC, ormsgpack.packb(payload))
        if self._allow_pickle:
            self.uses_pickle = True
            return ormsgpack.Ext(t.EXT_PICKLE, pickle.dumps(value, protocol=5))
        return None

    @staticmethod
    def _pack_fields(fields: dict[str, Any], pack: Callable[[Any, str], bytes], path: str) -> bytes:
        return ormsgpack.packb(
            {name: pack(v, f"{path}.{name}") for name, v in fields.items()},
            option=ormsgpack.OPT_SORT_KEYS,
        )


def _secret_kind(value: object) -> str | None:
    """``SecretStr`` or ``SecretBytes`` for a Pydantic secret, else None."""
    pyd = sys.modules.get("pydantic")
    if pyd is None:
        return None
    if isinstance(value, pyd.SecretStr):
        return "SecretStr"
    if isinstance(value, pyd.SecretBytes):
        return "SecretBytes"
    return None


def _text(value: str, path: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(
            path,
            f"the text holds a lone surrogate ({value[exc.start]!r} at index {exc.start}), which is not UTF-8; "
            "clean it (e.g. text.encode('utf-8', 'replace').decode()) or store bytes",
        ) from None
    return value


class Decoder:
    """Decodes bytes written by :class:`Encoder`."""

    __slots__ = ("_allow_pickle",)

    def __init__(self, *, allow_pickle: bool = False) -> None:
        self._allow_pickle = allow_pickle

    def decode(self, data: bytes) -> Any:
        _hook_failure.exc = None
        try:
            return ormsgpack.unpackb(data, ext_hook=self._ext)
        except (DecodeError, UnknownTypeError):
            raise
        except Exception as exc:  # ormsgpack, or a constructor fed garbage
            cause = getattr(_hook_failure, "exc", None) or exc.__cause__ or exc.__context__ or exc
            _hook_failure.exc = None
            if isinstance(cause, DecodeError):
                raise cause from None
            if isinstance(cause, RecursionError):
                raise DecodeError("blob nests too deeply to decode") from None
            raise DecodeError(f"blob is not valid clew msgpack: {cause}") from cause

    def _inner(self, data: Any) -> Any:
        if not isinstance(data, bytes):
            raise DecodeError("malformed nested record")
        return ormsgpack.unpackb(data, ext_hook=self._ext)

    def _fields(self, data: Any) -> dict[str, Any]:
        raw = self._inner(data)
        if not isinstance(raw, dict):
            raise DecodeError("malformed field record")
        unpack, ext = ormsgpack.unpackb, self._ext  # inlined _inner: a model has many small fields
        try:
            return {k: unpack(v, ext_hook=ext) for k, v in raw.items()}
        except ValueError:  # a field that is not bytes, or bad bytes: _inner says which
            return {k: self._inner(v) for k, v in raw.items()}

    def _ext(self, code: int, payload: bytes) -> Any:
        try:
            return self._record(code, payload)
        except Exception as exc:
            if getattr(_hook_failure, "exc", None) is None:
                _hook_failure.exc = exc
            raise

    def _record(self, code: int, payload: bytes) -> Any:
        if code == t.EXT_PICKLE:
            if not self._allow_pickle:
                raise PickleRefusedError(
                    "blob holds a pickled value and this codec has no pickle opt-in; "
                    "unpickling is code execution: open the store with "
                    "codec=clew.codec.Codec(allow_pickle=True) only if you trust it"
                )
            return pickle.loads(payload)  # noqa: S301 - explicit, named opt-in
        data = ormsgpack.unpackb(payload, ext_hook=self._ext)
        if code == t.EXT_REDACTED:
            if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str)):
                raise DecodeError("malformed redaction record")
            return Redacted(data[0], bytes(data[1]))
        if code == t.EXT_TUPLE:
            if not isinstance(data, list):
                raise DecodeError("malformed tuple record")
            return tuple(data)
        if code in (t.EXT_SET, t.EXT_FROZENSET):
            items = (self.decode(b) for b in data)
            return set(items) if code == t.EXT_SET else frozenset(items)
        if code == t.EXT_DICT:
            return {self.decode(k): self.decode(v) for k, v in data}
        if code == t.EXT_USER:
            return t.user_type_named(data[0]).decode(self._inner(data[1]))
        if code == t.EXT_ENUM:
            cls = t.resolve_class(data[0], "enum")
            t.check_kind(cls, data[0], "enum")
            return cls(self._inner(data[1]))
        if code == t.EXT_DATACLASS:
            cls = t.resolve_class(data[0], "dataclass")
            t.check_kind(cls, data[0], "dataclass")
            obj: Any = object.__new__(cls)
            for name, value in self._fields(data[1]).items():
                object.__setattr__(obj, name, value)
            return obj
        if code == t.EXT_PYDANTIC:
            cls = t.resolve_class(data[0], "pydantic model")
            t.check_kind(cls, data[0], "pydantic model")
            values = self._fields(data[1])
            if data[2] is not None:
                values.update(self._fields(data[2]))
            return t.construct_model(cls, set(data[3]), values)
        return t.scalar_from_ext(code, data)

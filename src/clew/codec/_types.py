"""The type registry: how values msgpack cannot hold natively become extension records.

Every non-native value is written as a msgpack extension with a one-byte code below.
Classes (dataclasses, Pydantic models, enums, user types) are named by
``module:qualname``. On decode a class is found in the registry or among modules the
process has already imported; clew never imports a module because a blob named it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from clew.errors import DecodeError

T = TypeVar("T")

# Extension codes. Never renumber: they are on disk.
EXT_TUPLE = 1
EXT_SET = 2
EXT_FROZENSET = 3
EXT_BIGINT = 4
EXT_DATETIME = 5
EXT_DATE = 6
EXT_TIME = 7
EXT_TIMEDELTA = 8
EXT_UUID = 9
EXT_DECIMAL = 10
EXT_ENUM = 11
EXT_DATACLASS = 12
EXT_PYDANTIC = 13
EXT_USER = 14
EXT_DICT = 15  # a dict with non-str keys
EXT_PICKLE = 16
EXT_REDACTED = 17  # a Redacted marker: [kind, keyed digest]


@dataclasses.dataclass(frozen=True, slots=True)
class UserType:
    """A user-registered type: how to turn it into encodable data and back."""

    cls: type
    key: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


_user_by_cls: dict[type, UserType] = {}
_user_by_key: dict[str, UserType] = {}
_classes: dict[str, type] = {}


def class_key(cls: type) -> str:
    """The stable name a class is stored under."""
    return f"{cls.__module__}:{cls.__qualname__}"


def register_type(
    cls: type[T],
    encode: Callable[[T], Any],
    decode: Callable[[Any], T],
    *,
    key: str | None = None,
) -> None:
    """Teach the codec a type it does not know.

    Args:
        cls: the type. Instances of subclasses are not matched; register them too.
        encode: turns an instance into a value the codec can encode.
        decode: turns that value back into an instance.
        key: the name stored on disk; defaults to ``module:qualname``. Give one if
            the class may move between modules.
    """
    name = key or class_key(cls)
    entry = UserType(cls, name, encode, decode)
    _user_by_cls[cls] = entry
    _user_by_key[name] = entry


def register_class(cls: type) -> None:
    """Make a dataclass, Pydantic model or Enum decodable before any is encoded.

    A class defined inside a function can be stored only once registered: a reader
    must register it too, as it cannot be found by its module and name.
    """
    _classes[class_key(cls)] = cls
    _registered.add(cls)


_registered: set[type] = set()


def local_class(cls: type) -> bool:
    """A class defined inside a function, not registered: no other process can find it by name."""
    return "<locals>" in cls.__qualname__ and cls not in _registered


def user_type_for(cls: type) -> UserType | None:
    return _user_by_cls.get(cls)


def user_type_named(key: str) -> UserType:
    try:
        return _user_by_key[key]
    except KeyError:
        raise DecodeError(
            f"blob holds user type {key!r}, which is not registered in this process; "
            "call clew.codec.register_type for it before loading"
        ) from None


def remember_class(cls: type) -> str:
    key = class_key(cls)
    _classes[key] = cls  # the class being encoded now wins over a stale definition
    return key


def resolve_class(key: str, kind: str) -> type:
    """Find a class by its stored key, without importing anything."""
    cls = _classes.get(key)
    if cls is None:
        module, _, qualname = key.partition(":")
        obj: Any = sys.modules.get(module)
        if obj is None:
            raise DecodeError(
                f"blob holds {kind} {key!r} but module {module!r} is not imported; "
                "import it (or call clew.codec.register_class) before loading"
            )
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise DecodeError(f"blob holds {kind} {key!r}, which no longer exists")
        if not isinstance(obj, type):
            raise DecodeError(f"blob names {key!r}, which is not a class")
        cls = obj
        _classes[key] = cls
    return cls


_KIND_CHECKS: dict[str, Callable[[type], bool]] = {
    "dataclass": lambda cls: dataclasses.is_dataclass(cls),
    "enum": lambda cls: issubclass(cls, enum.Enum),
    "pydantic model": lambda cls: is_pydantic_class(cls),
}
_kinds_ok: dict[tuple[type, str], bool] = {}  # a class's kind never changes: checked once per process


def check_kind(cls: type, key: str, kind: str) -> None:
    ok = _kinds_ok.get((cls, kind))
    if ok is None:
        ok = _kinds_ok[(cls, kind)] = _KIND_CHECKS[kind](cls)
    if not ok:
        raise DecodeError(f"blob names {key!r} as a {kind}, but it is not one")


_plain: dict[type, tuple[tuple[str, ...], frozenset[str], bool] | None] = {}


def _plain_model(cls: Any) -> tuple[tuple[str, ...], frozenset[str], bool] | None:
    """(field names, their set, extra allowed) if ``model_construct`` of ``cls`` only assigns.

    That is: no aliases to resolve, no ``model_post_init``, not a root model. Then a
    record holding every field builds the model as ``model_construct`` would, without
    its per-field loop (the cost of loading long message lists).
    """
    if cls in _plain:
        return _plain[cls]
    fields = cls.__pydantic_fields__
    plain = not cls.__pydantic_root_model__ and not cls.__pydantic_post_init__
    plain = plain and all(f.alias in (None, n) and f.validation_alias in (None, n) for n, f in fields.items())
    info = (tuple(fields), frozenset(fields), cls.model_config.get("extra") == "allow") if plain else None
    _plain[cls] = info
    return info


def construct_model(cls: Any, fields_set: set[str], values: dict[str, Any]) -> Any:
    """``cls.model_construct(_fields_set=fields_set, **values)``, fast when every field is given."""
    info = _plain_model(cls)
    if info is None or values.keys() != info[1]:
        return cls.model_construct(_fields_set=fields_set, **values)
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", {name: values[name] for name in info[0]})  # in field order
    object.__setattr__(obj, "__pydantic_fields_set__", fields_set)
    object.__setattr__(obj, "__pydantic_extra__", {} if info[2] else None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


_pydantic_classes: dict[type, bool] = {}


def is_pydantic_class(cls: type) -> bool:
    """Whether ``cls`` is a Pydantic model (checked once per class; Pydantic never imported here)."""
    known = _pydantic_classes.get(cls)
    if known is None:
        pyd = sys.modules.get("pydantic")
        known = _pydantic_classes[cls] = pyd is not None and issubclass(cls, pyd.BaseModel)
    return known


def is_pydantic_instance(value: object) -> bool:
    pyd = sys.modules.get("pydantic")
    return pyd is not None and isinstance(value, pyd.BaseModel)


# Scalars whose extension payload is a plain value, shared by both encoders.
def scalar_to_ext(value: object) -> tuple[int, Any] | None:
    """(code, payload data) for a builtin non-native scalar, or None."""
    t = type(value)
    if t is dt.datetime:
        assert isinstance(value, dt.datetime)
        return EXT_DATETIME, [value.replace(tzinfo=None).isoformat(), _tz_data(value.tzinfo), value.fold]
    if t is dt.date:
        assert isinstance(value, dt.date)
        return EXT_DATE, value.toordinal()
    if t is dt.time:
        assert isinstance(value, dt.time)
        return EXT_TIME, [value.replace(tzinfo=None).isoformat(), _tz_data(value.tzinfo), value.fold]
    if t is dt.timedelta:
        assert isinstance(value, dt.timedelta)
        return EXT_TIMEDELTA, [value.days, value.seconds, value.microseconds]
    if t is uuid.UUID:
        assert isinstance(value, uuid.UUID)
        return EXT_UUID, value.bytes
    if t is Decimal:
        return EXT_DECIMAL, str(value)
    if t is int:
        assert isinstance(value, int)
        return EXT_BIGINT, hex(value)  # str() refuses ints above sys.get_int_max_str_digits()
    return None


def _tz_data(tz: dt.tzinfo | None) -> Any:
    if tz is None:
        return None
    if tz is dt.UTC:
        return "UTC"
    key = getattr(tz, "key", None)  # zoneinfo.ZoneInfo
    if isinstance(key, str):
        return ["zone", key]
    if isinstance(tz, dt.timezone):
        off = tz.utcoffset(None)
        name = tz.tzname(None)
        return ["offset", off.days * 86400 + off.seconds, off.microseconds, name]
    raise TypeError(f"time zone {tz!r}")


def _tz_from(data: Any) -> dt.tzinfo | None:
    if data is None:
        return None
    if data == "UTC":
        return dt.UTC
    if data[0] == "zone":
        import zoneinfo

        return zoneinfo.ZoneInfo(data[1])
    if data[0] == "offset":
        off = dt.timedelta(seconds=data[1], microseconds=data[2])
        name = data[3]
        default_name = dt.timezone(off).tzname(None)
        return dt.timezone(off) if name == default_name else dt.timezone(off, name)
    raise DecodeError(f"unknown time zone record {data!r}")


def scalar_from_ext(code: int, data: Any) -> Any:
    if code == EXT_DATETIME:
        return dt.datetime.fromisoformat(data[0]).replace(tzinfo=_tz_from(data[1]), fold=data[2])
    if code == EXT_DATE:
        return dt.date.fromordinal(data)
    if code == EXT_TIME:
        return dt.time.fromisoformat(data[0]).replace(tzinfo=_tz_from(data[1]), fold=data[2])
    if code == EXT_TIMEDELTA:
        return dt.timedelta(days=data[0], seconds=data[1], microseconds=data[2])
    if code == EXT_UUID:
        return uuid.UUID(bytes=data)
    if code == EXT_DECIMAL:
        return Decimal(data)
    if code == EXT_BIGINT:
        if not isinstance(data, str):
            raise DecodeError("bad big integer record")
        return int(data, 0)  # "0x..." hex; plain decimal from blobs written before hex
    raise DecodeError(f"unknown extension code {code}")

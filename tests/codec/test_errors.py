"""Errors name what is wrong and where: field paths on encode, classes and keys on decode."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from typing import Any

import ormsgpack
import pytest

import clew.codec
from clew.codec import Codec, register_class
from clew.errors import ClewError, CodecError, DecodeError, UnknownTypeError
from tests.codec._support import Box, FrozenBox, Opaque, PModel, Point

EXT_ENUM, EXT_DATACLASS, EXT_PYDANTIC, EXT_USER = 11, 12, 13, 14


def test_public_surface() -> None:
    assert sorted(clew.codec.__all__) == [
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
    for name in clew.codec.__all__:
        assert hasattr(clew.codec, name)


# -- encode: UnknownTypeError names the field path -----------------------------

PATHS: dict[str, tuple[Any, str]] = {
    "the issue's example": ({"tool_results": {"kb": Opaque()}}, "state['tool_results']['kb']"),
    "top level": (Opaque(), "state"),
    "list index": ({"xs": [0, 1, 2, Opaque()]}, "state['xs'][3]"),
    "tuple index": ({"t": (0, Opaque())}, "state['t'][1]"),
    "tuple in list": ([(1, [Opaque()])], "state[0][1][0]"),
    "dataclass field": ({"tool_results": {"kb": Box(Opaque())}}, "state['tool_results']['kb'].item"),
    "slots dataclass field": (FrozenBox(Box(1, Opaque())), "state.item.other"),
    "pydantic field": (PModel(item=[Opaque()]), "state.item[0]"),
    "set item": ({"s": frozenset({Opaque()})}, "state['s']{item}"),
    "non-str-keyed dict value": ({1: {"a": Opaque()}}, "state[1]['a']"),
    "non-str-keyed dict key": ({Opaque(): 1}, "state<key>"),
    "str-keyed dict inside non-str-keyed": ({"outer": {2: Box(Opaque())}}, "state['outer'][2].item"),
    "user type payload": ({"p": Point(1, Opaque())}, "state['p'][1]"),  # type: ignore[arg-type]  # bad on purpose
}


@pytest.mark.parametrize(("value", "path"), PATHS.values(), ids=PATHS.keys())
def test_unknown_type_names_its_path(value: Any, path: str) -> None:
    with pytest.raises(UnknownTypeError) as info:
        Codec().dumps(value, "state")
    err = info.value
    assert err.path == path
    assert err.type_name == f"{Opaque.__module__}.Opaque"
    assert f"cannot encode {path}: type {err.type_name} is not known to clew" in str(err)
    assert "clew.codec.register_type" in str(err)


def test_issue_example_message() -> None:
    with pytest.raises(UnknownTypeError, match=r"state\['tool_results'\]\['kb'\]"):
        Codec().dumps({"tool_results": {"kb": Opaque()}}, "state")


def test_default_path_is_value() -> None:
    with pytest.raises(UnknownTypeError, match=r"cannot encode value\[0\]"):
        Codec().dumps([Opaque()])


def test_unknown_type_error_is_catchable_as_type_error_and_codec_error() -> None:
    with pytest.raises(UnknownTypeError) as info:
        Codec().encode(Opaque())
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, CodecError)
    assert isinstance(info.value, ClewError)


def test_subclass_of_a_registered_type_is_not_matched() -> None:
    class SubPoint(Point):
        pass

    with pytest.raises(UnknownTypeError, match="SubPoint"):
        Codec().dumps({"p": SubPoint(1, 2)}, "state")


def test_container_subclasses_are_not_silently_converted() -> None:
    class MyDict(dict):  # type: ignore[type-arg]  # a plain subclass, on purpose
        pass

    with pytest.raises(UnknownTypeError, match=r"state\['d'\]"):
        Codec().dumps({"d": MyDict(a=1)}, "state")


class _OddZone(dt.tzinfo):
    """A tzinfo that is neither datetime.timezone nor zoneinfo (like pytz or dateutil)."""

    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)

    def dst(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, d: dt.datetime | None) -> str:
        return "ODD"


def test_datetime_with_unsupported_tzinfo_names_its_path() -> None:
    value = {"events": [dt.datetime(2024, 1, 1, tzinfo=_OddZone())]}
    with pytest.raises(UnknownTypeError) as info:
        Codec().dumps(value, "state")
    assert info.value.path == "state['events'][0]"


def test_datetime_with_unsupported_tzinfo_falls_back_to_pickle_when_allowed() -> None:
    codec = Codec(allow_pickle=True)
    value = {"at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "odd": dt.time(1, tzinfo=_OddZone())}
    plain, pickled = codec.dumps(value, "state")
    assert pickled
    out = codec.loads(plain)
    assert out["at"] == value["at"]
    assert type(out["odd"].tzinfo) is _OddZone


# -- decode: DecodeError names the class or key and the fix --------------------


def _blob(record: ormsgpack.Ext) -> bytes:
    return b"\xc7\x00" + ormsgpack.packb(record)


def _named(code: int, key: str, *rest: Any) -> bytes:
    return _blob(ormsgpack.Ext(code, ormsgpack.packb([key, *rest])))


_FIELDS = ormsgpack.packb({"item": ormsgpack.packb(1)})

DECODE_MESSAGES: dict[str, tuple[bytes, str]] = {
    "unregistered user type": (
        _named(EXT_USER, "nowhere.Gadget", ormsgpack.packb(1)),
        r"user type 'nowhere.Gadget', which is not registered .*clew.codec.register_type",
    ),
    "dataclass in a module not imported": (
        _named(EXT_DATACLASS, "clew_never_imported_module:Thing", _FIELDS),
        r"module 'clew_never_imported_module' is not imported; import it \(or call clew.codec.register_class\)",
    ),
    "class that no longer exists": (
        _named(EXT_DATACLASS, f"{Box.__module__}:Vanished", _FIELDS),
        r"Vanished', which no longer exists",
    ),
    "name that is not a class": (
        _named(EXT_DATACLASS, "os.path:join", _FIELDS),
        r"names 'os.path:join', which is not a class",
    ),
    "class of the wrong kind": (
        _named(EXT_DATACLASS, f"{Point.__module__}:Point", _FIELDS),
        r"as a dataclass, but it is not one",
    ),
    "enum that is not an enum": (
        _named(EXT_ENUM, f"{Box.__module__}:Box", ormsgpack.packb(1)),
        r"as a enum, but it is not one",
    ),
    "pydantic model that is not one": (
        _named(EXT_PYDANTIC, f"{Box.__module__}:Box", _FIELDS, None, []),
        r"as a pydantic model, but it is not one",
    ),
    "unknown time zone record": (
        _blob(ormsgpack.Ext(5, ormsgpack.packb(["2024-01-01T00:00:00", ["planet", "mars"], 0]))),
        r"unknown time zone record",
    ),
    "unknown extension code": (_blob(ormsgpack.Ext(99, ormsgpack.packb(1))), r"unknown extension code 99"),
}


@pytest.mark.parametrize(("blob", "match"), DECODE_MESSAGES.values(), ids=DECODE_MESSAGES.keys())
def test_decode_failure_is_a_decode_error(blob: bytes, match: str) -> None:
    with pytest.raises(DecodeError):
        Codec().decode(blob)


@pytest.mark.parametrize(("blob", "match"), DECODE_MESSAGES.values(), ids=DECODE_MESSAGES.keys())
def test_decode_failure_message_names_the_cause(blob: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        Codec().decode(blob)


@pytest.mark.parametrize(("blob", "match"), DECODE_MESSAGES.values(), ids=DECODE_MESSAGES.keys())
def test_nested_decode_failure_message_names_the_cause(blob: bytes, match: str) -> None:
    inner = ormsgpack.unpackb(blob[2:], ext_hook=ormsgpack.Ext)
    nested = b"\xc7\x00" + ormsgpack.packb({"a": [ormsgpack.Ext(1, ormsgpack.packb([inner]))]})
    with pytest.raises(DecodeError, match=match):
        Codec().decode(nested)


def test_decode_never_imports_a_module_named_by_a_blob() -> None:
    name = "clew_never_imported_" + uuid.uuid4().hex  # surely not imported by anything else
    with pytest.raises(DecodeError, match="is not imported"):
        Codec().decode(_named(EXT_DATACLASS, f"{name}:Anything", _FIELDS))
    assert name not in sys.modules


def test_register_class_makes_a_class_decodable_by_key() -> None:
    blob = Codec().encode(FrozenBox(3))
    register_class(FrozenBox)  # idempotent for a class already known
    assert Codec().decode(blob) == FrozenBox(3)


def test_unknown_type_then_known_value_codec_still_works() -> None:
    codec = Codec()
    with pytest.raises(UnknownTypeError):
        codec.encode({"x": Opaque()})
    assert codec.decode(codec.encode({"x": 1})) == {"x": 1}

"""Every supported type comes back exactly: same value, same type, all the way down."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import sys
import types
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clew.codec import Codec, register_class
from tests.codec._support import (
    Box,
    Color,
    FrozenBox,
    Inner,
    Level,
    Mode,
    Money,
    Outer,
    PChild,
    Perm,
    PModel,
    Point,
    PParent,
    assert_same,
    datetimes,
    decimals,
    mismatch,
    roundtrip,
    times,
    values,
)

UTC = dt.UTC
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
T0 = dt.datetime(2024, 5, 17, 9, 30, 15, 123456)

SAMPLES: dict[str, Any] = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "negative": -17,
    "int64 min": -(2**63),
    "int64 min - 1": -(2**63) - 1,
    "uint64 max": 2**64 - 1,
    "uint64 max + 1": 2**64,
    "big int": 10**100 + 7,
    "big negative int": -(10**300),
    "float": 1.5,
    "negative zero": -0.0,
    "inf": math.inf,
    "-inf": -math.inf,
    "tiny float": 5e-324,
    "str": "héllo, wörld 🌍",
    "empty str": "",
    "bytes": b"\x00\xff\x80raw",
    "empty bytes": b"",
    "list": [1, "a", None],
    "tuple": (1, "a", None),
    "empty tuple": (),
    "one-tuple": (1,),
    "nested tuples": ((1, (2, (3,))), []),
    "dict": {"b": 1, "a": [2, 3]},
    "int keys": {1: "one", 2: "two"},
    "mixed keys": {1: "int", "1": "str", 1.5: "float", None: "none", b"k": "bytes"},
    "tuple keys": {(1, 2): "pair", (): "empty"},
    "bool and int keys": {True: "t", 2: "two"},
    "enum keys": {Mode.FAST: 1, Level.HIGH: 2, Color.RED: 3},
    "set": {1, 2, 3},
    "empty set": set(),
    "frozenset": frozenset({"a", "b"}),
    "set of frozensets": {frozenset({1}), frozenset({2, 3}), frozenset()},
    "set of tuples": {(1, "a"), (2, "b")},
    "naive datetime": T0,
    "utc datetime": T0.replace(tzinfo=UTC),
    "fixed offset datetime": T0.replace(tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    "negative offset datetime": T0.replace(tzinfo=dt.timezone(-dt.timedelta(hours=3, minutes=30))),
    "named offset datetime": T0.replace(tzinfo=dt.timezone(dt.timedelta(hours=1), "CET")),
    "sub-minute offset": T0.replace(tzinfo=dt.timezone(dt.timedelta(seconds=61, microseconds=5))),
    "zoneinfo datetime": T0.replace(tzinfo=PARIS),
    "zoneinfo UTC": T0.replace(tzinfo=zoneinfo.ZoneInfo("UTC")),
    "ambiguous fold=1": dt.datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=NEW_YORK),
    "datetime min": dt.datetime.min,
    "datetime max utc": dt.datetime.max.replace(tzinfo=UTC),
    "date": dt.date(2024, 2, 29),
    "date min": dt.date.min,
    "date max": dt.date.max,
    "time": dt.time(23, 59, 59, 999999),
    "time with offset": dt.time(8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-7), "PDT")),
    "time with zone": dt.time(8, 0, tzinfo=PARIS),
    "time fold": dt.time(1, 30, fold=1),
    "timedelta": dt.timedelta(days=-3, seconds=5, microseconds=7),
    "timedelta min": dt.timedelta.min,
    "timedelta max": dt.timedelta.max,
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "uuid4": uuid.uuid4(),
    "decimal": Decimal("3.14159265358979323846264338327950288419716939937510"),
    "decimal trailing zeros": Decimal("1.000"),
    "decimal exponent": Decimal("1E+2"),
    "decimal negative zero": Decimal("-0"),
    "decimal nan": Decimal("NaN"),
    "decimal snan": Decimal("sNaN"),
    "decimal inf": Decimal("-Infinity"),
    "enum": Color.RED,
    "enum with tuple value": Color.BLUE,
    "int enum": Level.HIGH,
    "str enum": Mode.SAFE,
    "flag combination": Perm.R | Perm.X,
    "empty flag": Perm(0),
    "dataclass": Box([1, 2], other={"k": (3,)}),
    "frozen slots dataclass": FrozenBox(item=frozenset({1})),
    "nested dataclasses": Outer(
        "run",
        Inner(T0.replace(tzinfo=UTC), frozenset({"x"})),
        [Inner(T0), Inner(T0.replace(tzinfo=PARIS), frozenset({"y", "z"}))],
    ),
    "pydantic with defaults": PChild(id=uuid.UUID(int=7)),
    "pydantic nested": PParent(
        name="p",
        children=[PChild(id=uuid.UUID(int=1), amount=Decimal("9.99"), level=Level.HIGH), PChild(id=uuid.UUID(int=2))],
        started=T0.replace(tzinfo=NEW_YORK),
    ),
    "pydantic holding a dataclass": PModel(item=Box(PChild(id=uuid.UUID(int=3))), count=2),
    "dataclass holding pydantic": Box(PModel(item={1: {2}}), other=PParent(name="x")),
    "user type": Point(1, -2),
    "user type with key": Money(Decimal("10.50"), "EUR"),
    "user types in a set": {Point(0, 0), Point(1, 1)},
    "user type as key": {Point(1, 2): [Money(Decimal("1"), "USD")]},
}


@pytest.mark.parametrize("value", SAMPLES.values(), ids=SAMPLES.keys())
def test_sample_round_trips_exactly(value: Any) -> None:
    assert_same(value, roundtrip(value))


@pytest.mark.parametrize("value", SAMPLES.values(), ids=SAMPLES.keys())
def test_sample_round_trips_through_dumps_and_loads(value: Any) -> None:
    codec = Codec()
    plain, pickled = codec.dumps(value)
    assert pickled is False
    assert_same(value, codec.loads(plain))


def test_nan_round_trips_as_a_float() -> None:
    out = roundtrip([math.nan, {"x": math.nan}, (math.nan,)])
    assert type(out[0]) is float and math.isnan(out[0])
    assert math.isnan(out[1]["x"]) and math.isnan(out[2][0])


def test_bool_int_and_float_stay_apart() -> None:
    out = roundtrip([1, True, 1.0, 0, False, 0.0])
    assert [type(x) for x in out] == [int, bool, float, int, bool, float]


def test_time_zone_kinds_are_kept() -> None:
    out = roundtrip(
        [
            T0,
            T0.replace(tzinfo=UTC),
            T0.replace(tzinfo=dt.timezone(dt.timedelta(hours=2))),
            T0.replace(tzinfo=PARIS),
        ]
    )
    naive, utc, fixed, zoned = out
    assert naive.tzinfo is None
    assert utc.tzinfo is UTC
    assert type(fixed.tzinfo) is dt.timezone and fixed.utcoffset() == dt.timedelta(hours=2)
    assert zoned.tzinfo is PARIS  # ZoneInfo instances are cached by key


def test_zoneinfo_keeps_wall_time_across_dst() -> None:
    summer, winter = roundtrip([dt.datetime(2024, 7, 1, 12, tzinfo=PARIS), dt.datetime(2024, 1, 1, 12, tzinfo=PARIS)])
    assert summer.utcoffset() == dt.timedelta(hours=2)
    assert winter.utcoffset() == dt.timedelta(hours=1)


def test_str_keyed_dicts_come_back_sorted() -> None:
    # Canonical bytes sort keys, so insertion order is not kept (see docs/codec.md).
    assert list(roundtrip({"b": 1, "a": 2, "c": 3})) == ["a", "b", "c"]


def test_dataclass_round_trip_does_not_call_init_or_post_init() -> None:
    calls: list[str] = []

    @dataclasses.dataclass
    class Tracked:
        x: int
        derived: int = dataclasses.field(init=False, default=0)

        def __post_init__(self) -> None:
            calls.append("post_init")
            self.derived = self.x * 2

    register_class(Tracked)  # defined in a function: encodable once registered
    original = Tracked(4)
    original.derived = 99  # changed after construction: the stored value wins
    calls.clear()
    out = roundtrip(original)
    assert calls == []
    assert type(out) is Tracked and (out.x, out.derived) == (4, 99)


def test_frozen_slots_dataclass_stays_frozen_and_hashable() -> None:
    out = roundtrip(FrozenBox((1, 2)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.item = 3
    assert hash(out) == hash(FrozenBox((1, 2)))
    assert not hasattr(out, "__dict__")


def test_pydantic_fields_set_is_kept() -> None:
    explicit = PModel(item=1, tag="default")  # same value as the default, but set
    implicit = PModel(item=1)
    assert roundtrip(explicit).model_fields_set == {"item", "tag"}
    assert roundtrip(implicit).model_fields_set == {"item"}
    assert roundtrip(implicit).model_dump(exclude_unset=True) == {"item": 1}


def test_pydantic_extra_fields_are_kept() -> None:
    class Loose(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        a: int = 1

    register_class(Loose)
    value = Loose(a=2, note=(1, {2}))  # type: ignore[call-arg]  # an extra field, allowed by the config
    out = roundtrip(value)
    assert_same(value, out)
    assert out.__pydantic_extra__ == {"note": (1, {2})}


def test_pydantic_alias_frozen_and_root_models() -> None:
    class Aliased(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(frozen=True)
        user_id: int = pydantic.Field(alias="userId")

    class Ids(pydantic.RootModel[list[uuid.UUID]]):
        pass

    register_class(Aliased)
    register_class(Ids)
    for value in (Aliased(userId=5), Ids([uuid.UUID(int=1)])):
        out = roundtrip(value)
        assert_same(value, out)
        assert out == value


def test_user_type_round_trips_nested() -> None:
    value = {"where": [Point(1, 2), (Point(3, 4),)], "cost": {Money(Decimal("2.50"), "EUR")}}
    assert_same(value, roundtrip(value))


def test_user_type_stored_under_its_key() -> None:
    plain, _ = Codec().dumps(Money(Decimal("1"), "EUR"))
    assert b"tests.example.Money" in plain
    assert b"_support" not in plain


def test_class_redefined_under_the_same_name_decodes_as_the_new_class() -> None:
    # A notebook cell re-run, importlib.reload or a dev server's autoreload all
    # rebind ``module:qualname`` to a new class. Decoding must give the current one.
    module = types.ModuleType("clew_test_notebook")
    sys.modules[module.__name__] = module
    try:
        source = "import dataclasses\n@dataclasses.dataclass\nclass State:\n    step: int\n"
        exec(source, module.__dict__)
        first = module.State
        assert type(roundtrip(first(1))) is first
        exec(source, module.__dict__)  # the cell runs again
        second = module.State
        assert second is not first
        out = roundtrip(second(2))
        assert type(out) is second, "decoded as the stale class from the first definition"
    finally:
        del sys.modules[module.__name__]


def test_big_int_beyond_the_str_conversion_limit() -> None:
    # Python refuses int<->str conversions above 4300 digits (sys.get_int_max_str_digits);
    # "int (arbitrary size)" must not depend on that limit.
    value = 7**6000  # about 5070 decimal digits
    assert_same(value, roundtrip(value))
    assert_same(-value, roundtrip(-value))


def test_mismatch_helper_is_strict() -> None:
    # The comparison used everywhere here must catch what == lets through.
    assert mismatch(1, True) is not None
    assert mismatch(1, 1.0) is not None
    assert mismatch(0.0, -0.0) is not None
    assert mismatch([1], (1,)) is not None
    assert mismatch({1}, frozenset({1})) is not None
    assert mismatch(Decimal("1.0"), Decimal("1.00")) is not None
    assert mismatch(T0.replace(tzinfo=UTC), T0.replace(tzinfo=zoneinfo.ZoneInfo("UTC"))) is not None
    assert mismatch(PModel(item=1), PModel(item=1, tag="default")) is not None
    assert mismatch({"a": [math.nan]}, {"a": [math.nan]}) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_nested_values_round_trip_exactly(value: Any) -> None:
    assert_same(value, roundtrip(value))


@settings(max_examples=100, deadline=None)
@given(st.one_of(datetimes, times, decimals, st.floats()))
def test_scalars_round_trip_exactly(value: Any) -> None:
    assert_same(value, roundtrip(value))

"""Shared pieces of the codec tests: sample types, Hypothesis strategies, exact comparison.

``mismatch`` is stricter than ``==``: types must match exactly at every level, NaN
equals NaN, ``-0.0`` differs from ``0.0``, Decimals compare by digits and exponent,
and time zones compare by kind, offset and name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import pydantic
from hypothesis import strategies as st

from clew.codec import Codec, register_type

# -- sample types --------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = 2
    BLUE = (1, 2)  # a tuple value goes through the tuple record on the way back


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"
    SAFE = "safe"


class Perm(enum.Flag):
    R = 1
    W = 2
    X = 4


@dataclasses.dataclass
class Box:
    item: Any
    other: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenBox:
    item: Any


@dataclasses.dataclass(frozen=True)
class Inner:
    when: dt.datetime
    tags: frozenset[str] = frozenset()


@dataclasses.dataclass(slots=True)
class Outer:
    name: str
    inner: Inner
    history: list[Inner] = dataclasses.field(default_factory=list)


class PModel(pydantic.BaseModel):
    item: Any
    tag: str = "default"
    count: int = 0


class PChild(pydantic.BaseModel):
    id: uuid.UUID
    amount: Decimal = Decimal("0.00")
    level: Level = Level.LOW


class PParent(pydantic.BaseModel):
    name: str
    children: list[PChild] = []
    started: dt.datetime | None = None


class Point:
    """A user type taught to the codec with register_type."""

    __slots__ = ("x", "y")

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    def __eq__(self, other: object) -> bool:
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"Point({self.x}, {self.y})"


class Money:
    """A user type stored under an explicit key."""

    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount = amount
        self.currency = currency

    def __eq__(self, other: object) -> bool:
        return type(other) is Money and (self.amount, self.currency) == (other.amount, other.currency)

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))


MONEY_KEY = "tests.example.Money"

register_type(Point, lambda p: [p.x, p.y], lambda d: Point(*d))
register_type(Money, lambda m: (m.amount, m.currency), lambda d: Money(*d), key=MONEY_KEY)


class Opaque:
    """A type the codec does not know."""


class Pickleable:
    """Unknown to the registry; only the pickle opt-in can store it."""

    def __init__(self, payload: object) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return type(other) is Pickleable and self.payload == other.payload


SPRUNG: list[str] = []


def _spring() -> str:
    SPRUNG.append("unpickled")
    return "trap"


class Trap:
    """Unpickling this runs ``_spring``: proof that a load did or did not unpickle."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_spring, ())


# -- exact comparison ----------------------------------------------------------


def _tz_mismatch(a: dt.tzinfo | None, b: dt.tzinfo | None, path: str) -> str | None:
    if type(a) is not type(b):
        return f"{path}: tzinfo {a!r} != {b!r}"
    if isinstance(a, zoneinfo.ZoneInfo):
        assert isinstance(b, zoneinfo.ZoneInfo)
        return None if a.key == b.key else f"{path}: zone {a.key} != {b.key}"
    if a is not None and b is not None and (a.utcoffset(None), a.tzname(None)) != (b.utcoffset(None), b.tzname(None)):
        return f"{path}: tzinfo {a!r} != {b!r}"
    return None


def _unordered_mismatch(a: list[Any], b: list[Any], path: str) -> str | None:
    remaining = list(b)
    for x in a:
        for j, y in enumerate(remaining):
            if mismatch(x, y) is None:
                del remaining[j]
                break
        else:
            return f"{path}: {x!r} has no exact counterpart in {b!r}"
    return None


def mismatch(a: Any, b: Any, path: str = "value") -> str | None:
    """Where ``a`` and ``b`` differ (types included), or None if they are the same."""
    if type(a) is not type(b):
        return f"{path}: type {type(a).__qualname__} != {type(b).__qualname__}"
    if isinstance(a, float):
        if math.isnan(a) and math.isnan(b):
            return None
        same = a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
        return None if same else f"{path}: {a!r} != {b!r}"
    if isinstance(a, Decimal):
        return None if a.as_tuple() == b.as_tuple() else f"{path}: {a!r} != {b!r}"
    if isinstance(a, enum.Enum):
        return None if a is b else f"{path}: {a!r} != {b!r}"
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if m := mismatch(x, y, f"{path}[{i}]"):
                return m
        return None
    if isinstance(a, set | frozenset):
        if len(a) != len(b):
            return f"{path}: size {len(a)} != {len(b)}"
        return _unordered_mismatch(list(a), list(b), path)
    if isinstance(a, dict):
        if len(a) != len(b):
            return f"{path}: size {len(a)} != {len(b)}"
        if m := _unordered_mismatch(list(a), list(b), f"{path} keys"):
            return m
        for k, v in a.items():
            other = next(v2 for k2, v2 in b.items() if mismatch(k, k2) is None)
            if m := mismatch(v, other, f"{path}[{k!r}]"):
                return m
        return None
    if isinstance(a, dt.datetime | dt.time):
        if a.replace(tzinfo=None) != b.replace(tzinfo=None) or a.fold != b.fold:
            return f"{path}: {a!r} != {b!r}"
        return _tz_mismatch(a.tzinfo, b.tzinfo, path)
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            if m := mismatch(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}"):
                return m
        return None
    if isinstance(a, pydantic.BaseModel):
        for name in type(a).model_fields:
            if m := mismatch(getattr(a, name), getattr(b, name), f"{path}.{name}"):
                return m
        if a.model_fields_set != b.model_fields_set:
            return f"{path}: fields set {a.model_fields_set} != {b.model_fields_set}"
        return mismatch(a.__pydantic_extra__, b.__pydantic_extra__, f"{path}.<extra>")
    return None if a == b else f"{path}: {a!r} != {b!r}"


def assert_same(a: Any, b: Any) -> None:
    """Assert that ``b`` is an exact copy of ``a``, types included, all the way down."""
    m = mismatch(a, b)
    assert m is None, m


def roundtrip(value: Any, codec: Codec | None = None) -> Any:
    """Encode to a stored blob and decode again."""
    codec = codec or Codec()
    return codec.decode(codec.encode(value))


# -- strategies ----------------------------------------------------------------

_DAY = dt.timedelta(hours=24)
_offsets = st.timedeltas(min_value=-_DAY + dt.timedelta(microseconds=1), max_value=_DAY - dt.timedelta(microseconds=1))
time_zones = st.one_of(
    st.none(),
    st.just(dt.UTC),
    st.builds(dt.timezone, _offsets),
    st.builds(dt.timezone, _offsets, st.text(max_size=6)),
    st.timezones(),
)
datetimes = st.datetimes(timezones=time_zones)
times = st.builds(lambda t, fold: t.replace(fold=fold), st.times(timezones=time_zones), st.integers(0, 1))
ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**80), max_value=10**80),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]),
)
decimals = st.decimals(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [Decimal("sNaN"), Decimal("-0"), Decimal("1E+2"), Decimal("1.000"), Decimal("NaN123")]
)
enums = st.sampled_from([*Color, *Level, *Mode, Perm.R | Perm.W, Perm(0)])
points = st.builds(Point, st.integers(-5, 5), st.integers(-5, 5))
moneys = st.builds(Money, st.decimals(allow_nan=False, places=2), st.sampled_from(["EUR", "USD"]))

hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
    datetimes,
    st.dates(),
    times,
    st.timedeltas(),
    st.uuids(),
    decimals.filter(lambda d: not d.is_snan()),  # a signalling NaN cannot be hashed
    enums,
    points,
    moneys,
)
hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(inner, max_size=3),
        st.builds(FrozenBox, inner),
    ),
    max_leaves=6,
)


def _pmodel(item: Any, extra: dict[str, Any]) -> PModel:
    return PModel(item=item, **extra)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
        st.dictionaries(hashables, children, max_size=3),
        st.sets(hashables, max_size=3),
        st.frozensets(hashables, max_size=3),
        st.builds(Box, children, children),
        st.builds(FrozenBox, children),
        st.builds(
            _pmodel,
            children,
            st.fixed_dictionaries({}, optional={"tag": st.text(max_size=4), "count": st.integers(-3, 3)}),
        ),
    )


values = st.recursive(hashables | decimals, _containers, max_leaves=12)
"""Nested values mixing every supported type."""

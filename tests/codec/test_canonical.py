"""Canonical bytes: equal values give equal plaintext, whatever order they were built in."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Any

import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clew.codec import ADDRESS_SIZE, Codec
from tests.codec._support import Box, Mode, PModel, Point, assert_same, values


def _shuffled_set(items: list[Any], rnd: random.Random, kind: type) -> Any:
    """A set with the same items, inserted in another order into a differently sized table.

    Filler objects are added first and removed after, so the hash table has another
    size and the iteration order generally differs, not only the insertion order.
    """
    rnd.shuffle(items)
    fillers = [object() for _ in range(rnd.randrange(0, 40))]
    out = set(fillers)
    out.update(items)
    out.difference_update(fillers)
    return out if kind is set else frozenset(out)


def reordered(value: Any, rnd: random.Random) -> Any:
    """An exact copy of ``value`` with every dict and set rebuilt in a random order."""
    cls = type(value)
    if cls is dict:
        items = [(reordered(k, rnd), reordered(v, rnd)) for k, v in value.items()]
        rnd.shuffle(items)
        return dict(items)
    if cls is set or cls is frozenset:
        return _shuffled_set([reordered(v, rnd) for v in value], rnd, cls)
    if cls is list:
        return [reordered(v, rnd) for v in value]
    if cls is tuple:
        return tuple(reordered(v, rnd) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: reordered(getattr(value, f.name), rnd) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    if isinstance(value, pydantic.BaseModel):
        fields = {name: reordered(getattr(value, name), rnd) for name in type(value).model_fields}
        return type(value).model_construct(_fields_set=set(value.model_fields_set), **fields)
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.randoms(use_true_random=False))
def test_bytes_do_not_depend_on_dict_or_set_order(value: Any, rnd: random.Random) -> None:
    other = reordered(value, rnd)
    assert_same(value, other)
    codec = Codec()
    assert codec.dumps(other)[0] == codec.dumps(value)[0]


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers(), min_size=2, max_size=12), st.randoms(use_true_random=False))
def test_str_keyed_dict_bytes_ignore_insertion_order(value: dict[str, int], rnd: random.Random) -> None:
    items = list(value.items())
    rnd.shuffle(items)
    assert Codec().dumps(dict(items))[0] == Codec().dumps(value)[0]


@settings(max_examples=100, deadline=None)
@given(st.sets(st.text(max_size=5) | st.integers(), min_size=2, max_size=20), st.randoms(use_true_random=False))
def test_set_bytes_ignore_iteration_order(value: set[Any], rnd: random.Random) -> None:
    other = _shuffled_set(list(value), rnd, set)
    assert Codec().dumps(other)[0] == Codec().dumps(value)[0]
    assert Codec().dumps(frozenset(other))[0] == Codec().dumps(frozenset(value))[0]


def test_examples_of_reordering() -> None:
    dumps = Codec().dumps
    assert dumps({"b": 1, "a": 2})[0] == dumps({"a": 2, "b": 1})[0]
    assert dumps({2: "x", 1: "y"})[0] == dumps({1: "y", 2: "x"})[0]
    assert dumps({Mode.SAFE: 1, (1, 2): 2})[0] == dumps({(1, 2): 2, Mode.SAFE: 1})[0]
    assert dumps({"x": {3: [1], 1: [2]}})[0] == dumps({"x": {1: [2], 3: [1]}})[0]
    assert dumps(Box({"q", "p", "r"}, {"z": 1, "y": 2}))[0] == dumps(Box({"r", "p", "q"}, {"y": 2, "z": 1}))[0]
    assert dumps(PModel(item={"b": 1, "a": 2}, tag="t"))[0] == dumps(PModel(tag="t", item={"a": 2, "b": 1}))[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_bytes_do_not_depend_on_the_encoder_path(value: Any) -> None:
    # A dict with non-str keys sends the whole value down the slow (Python) path; the
    # bytes of each part must be those the fast (C) path gives for it alone.
    dumps = Codec().dumps
    assert dumps([value, {1: 2}])[0] == b"\x92" + dumps(value)[0] + dumps({1: 2})[0]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_encoding_is_deterministic_and_stable_through_a_round_trip(value: Any) -> None:
    codec = Codec()
    plain = codec.dumps(value)[0]
    assert codec.dumps(value)[0] == plain
    assert codec.dumps(codec.loads(plain))[0] == plain


def test_pickle_opt_in_does_not_change_the_bytes_of_known_types() -> None:
    value = {"a": (1, {2}), "p": Point(1, 2), 3: Mode.FAST}
    assert Codec(allow_pickle=True).dumps(value) == Codec().dumps(value)


def test_address_is_blake2b_128_of_the_plaintext() -> None:
    codec = Codec()
    plain = codec.dumps({"a": 1})[0]
    assert ADDRESS_SIZE == 16
    assert codec.address(plain) == hashlib.blake2b(plain, digest_size=16).digest()


def test_address_does_not_depend_on_compression_settings() -> None:
    value = {"text": "abc" * 1000}
    raw, small = Codec(compress_threshold=1 << 30), Codec(compress_threshold=0, zstd_level=19)
    assert raw.encode(value) != small.encode(value)
    assert raw.address(raw.dumps(value)[0]) == small.address(small.dumps(value)[0])
    assert raw.unwrap(raw.encode(value)) == small.unwrap(small.encode(value))


def test_different_values_give_different_bytes() -> None:
    distinct = [1, True, 1.0, "1", b"1", (1,), [1], {1}, frozenset({1}), {"1": 1}, {1: 1}, Mode.FAST, "fast"]
    plains = {Codec().dumps(v)[0] for v in distinct}
    assert len(plains) == len(distinct)


def test_path_argument_does_not_change_the_bytes() -> None:
    assert Codec().dumps({"a": [1]}, "state")[0] == Codec().dumps({"a": [1]})[0]

"""Containers taken apart into (shape, keys, values) and put back together.

The store keeps large containers as trees of chunks, entry by entry; these two
functions are the only place that knows how each kind of container splits. A
*shape* is a small msgpack-able list naming the kind:

``["l"]``
    a list (values in order, no keys).
``["d"]``
    a dict whose keys are all ``str`` (sorted keys).
``["c", class_key]``
    a dataclass instance (its fields, sorted by name).
``["p", class_key, fields_set]``
    a Pydantic model without extra fields (its fields, sorted by name).

Anything else (tuples, sets, dicts with other keys, Pydantic models with extras,
user types) is not split: it is stored whole, like any other value.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from clew.codec import _types as t
from clew.errors import DecodeError

Parts = tuple[list[Any], list[str] | None, list[Any]]


def parts(value: Any) -> Parts | None:
    """``(shape, keys, values)`` of a container that can be split, else ``None``."""
    cls = type(value)
    if cls is list:
        return ["l"], None, value
    if cls is dict:
        if not all(type(k) is str for k in value):
            return None
        keys = sorted(value)
        return ["d"], keys, [value[k] for k in keys]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        keys = sorted(f.name for f in dataclasses.fields(value))
        return ["c", t.remember_class(cls)], keys, [getattr(value, k) for k in keys]
    if t.is_pydantic_instance(value) and not value.__pydantic_extra__:
        keys = sorted(cls.model_fields)
        return ["p", t.remember_class(cls), sorted(value.model_fields_set)], keys, [getattr(value, k) for k in keys]
    return None


def assemble(shape: list[Any], keys: list[str] | None, values: list[Any]) -> Any:
    """The container that :func:`parts` took apart.

    Raises:
        DecodeError: the shape is malformed or names a class of another kind.
    """
    kind = shape[0] if shape else None
    if kind == "l":
        return values
    if keys is None or len(keys) != len(values):
        raise DecodeError(f"malformed container record of kind {kind!r}")
    if kind == "d":
        return dict(zip(keys, values, strict=True))
    if kind == "c":
        cls = t.resolve_class(shape[1], "dataclass")
        t.check_kind(cls, shape[1], "dataclass")
        obj: Any = object.__new__(cls)
        for name, value in zip(keys, values, strict=True):
            object.__setattr__(obj, name, value)
        return obj
    if kind == "p":
        cls = t.resolve_class(shape[1], "pydantic model")
        t.check_kind(cls, shape[1], "pydantic model")
        return t.construct_model(cls, set(shape[2]), dict(zip(keys, values, strict=True)))
    raise DecodeError(f"unknown container kind {kind!r}")

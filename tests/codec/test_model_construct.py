"""Loading a Pydantic model builds exactly what ``model_construct`` builds, fast path or not."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from langchain_core.messages import AIMessage, HumanMessage

from clew.codec import Codec
from clew.codec import _types as t


class Plain(pydantic.BaseModel):
    a: int
    b: list[str] = []


class Extra(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    a: int


class Aliased(pydantic.BaseModel):
    a: int = pydantic.Field(alias="x")


class PostInit(pydantic.BaseModel):
    a: int
    seen: int = 0

    def model_post_init(self, context: Any) -> None:
        object.__setattr__(self, "seen", self.seen + 1)


class Private(pydantic.BaseModel):
    a: int
    _cache: dict[str, int] = pydantic.PrivateAttr(default_factory=dict)


def _same(x: Any, y: Any) -> None:
    assert type(x) is type(y)
    assert x == y
    assert x.__dict__ == y.__dict__ and list(x.__dict__) == list(y.__dict__)
    assert x.model_fields_set == y.model_fields_set
    assert x.__pydantic_extra__ == y.__pydantic_extra__
    assert x.model_dump() == y.model_dump()


@pytest.mark.parametrize(
    "value",
    [
        Plain(a=1, b=["x"]),
        Plain(a=2),
        Extra(a=1, more="yes"),
        Extra(a=1),
        Aliased(x=3),
        PostInit(a=1),
        Private(a=4),
        HumanMessage("hi", id="m1"),
        AIMessage("yo", id="m2", tool_calls=[{"name": "t", "args": {"q": 1}, "id": "c1"}]),
    ],
)
def test_a_loaded_model_is_what_model_construct_gives(value: pydantic.BaseModel) -> None:
    codec = Codec()
    loaded = codec.loads(codec.dumps(value)[0])
    fields = {k: getattr(value, k) for k in type(value).model_fields}
    fields.update(value.__pydantic_extra__ or {})
    _same(t.construct_model(type(value), set(value.model_fields_set), dict(fields)), loaded)
    expected = type(value).model_construct(_fields_set=set(value.model_fields_set), **fields)
    _same(loaded, expected)


def test_the_fast_path_is_taken_only_for_plain_models() -> None:
    assert t._plain_model(Plain) is not None
    assert t._plain_model(HumanMessage) is not None
    assert t._plain_model(Aliased) is None
    assert t._plain_model(PostInit) is None
    assert t._plain_model(Private) is None  # private attributes need model_post_init

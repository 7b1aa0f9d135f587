"""Checkpoints: commit and load round-trips, history listing, lookups."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import random
import uuid
from decimal import Decimal
from typing import Any

import pydantic
import pytest

import clew
from clew.errors import ConflictError, IntegrityError, NotFoundError
from tests.helpers import content
from tests.helpers.raw import Raw


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass(frozen=True)
class ToolCall:
    name: str
    args: dict[str, Any]
    at: dt.datetime


class Note(pydantic.BaseModel):
    author: str
    text: str
    tags: list[str] = []


def rich_state() -> dict[str, Any]:
    """Every kind of value a state may hold, nested."""
    when = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    return {
        "str": "héllo ✓ \x00 wörld",
        "empty_str": "",
        "int": 42,
        "negative": -(2**63),
        "big_int": 2**80 + 1,
        "float": 3.25,
        "neg_zero": -0.0,
        "bool": True,
        "none": None,
        "bytes": b"\x00\xffbinary",
        "tuple": (1, "two", (3.0, None)),
        "set": {"b", "a", "c"},
        "frozenset": frozenset({1, 2, 3}),
        "int_keys": {1: "one", 2: "two", (3, 4): "pair"},
        "datetime": when,
        "naive": dt.datetime(2020, 1, 2, 3, 4, 5),
        "offset": dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        "date": dt.date(1999, 12, 31),
        "time": dt.time(23, 59, 58, 1),
        "timedelta": dt.timedelta(days=-1, seconds=5, microseconds=7),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "decimal": Decimal("1.10"),
        "enum": Color.BLUE,
        "dataclass": ToolCall("search", {"q": "refund", "k": [1, 2]}, when),
        "pydantic": Note(author="ann", text="checked the order"),
        "nested": {"a": [{"b": {"c": [1, [2, [3, {"d": (4, 5)}]]]}}], "e": {}},
        "messages": [
            {"role": "user", "content": "hi", "at": when},
            {"role": "assistant", "content": "hello", "calls": [ToolCall("kb", {}, when)]},
        ],
        "empty_list": [],
        "empty_dict": {},
        "list_of_lists": [[1, 2], [], [[3]]],
    }


def assert_same(loaded: dict[str, Any], expected: dict[str, Any]) -> None:
    assert loaded == expected
    for key, value in expected.items():
        assert type(loaded[key]) is type(value), key
    # Exact, not just ==: the sign of zero, a Decimal's exponent, a time zone.
    for key in ("neg_zero", "decimal", "offset", "datetime", "naive", "time", "big_int"):
        if key in expected:
            assert repr(loaded[key]) == repr(expected[key]), key


def test_commit_returns_record_and_moves_head(store: clew.Store, run_id: str) -> None:
    c1 = store.commit(run_id, state={"n": 1}, parent=None, metadata={"step": "plan"}, kind="step")
    assert (c1.run_id, c1.branch, c1.parent_id, c1.kind, c1.seq) == (run_id, "main", None, "step", 1)
    assert c1.metadata == {"step": "plan"}
    assert len(bytes.fromhex(c1.hash)) == 32
    assert store.get_branch(run_id).head == c1.checkpoint_id
    c2 = store.commit(run_id, state={"n": 2}, parent=c1.checkpoint_id, kind="interrupt", status="paused")
    assert (c2.parent_id, c2.seq, c2.kind) == (c1.checkpoint_id, 2, "interrupt")
    assert c2.hash != c1.hash
    assert store.get_branch(run_id).head == c2.checkpoint_id
    assert store.get_run(run_id).status == "paused"
    assert store.get_checkpoint(run_id, c2.checkpoint_id) == c2
    assert store.find_checkpoint(c2.checkpoint_id) == c2


def test_commit_with_explicit_checkpoint_id(store: clew.Store, run_id: str) -> None:
    c = store.commit(run_id, state={"n": 1}, parent=None, checkpoint_id="step-0001")
    assert c.checkpoint_id == "step-0001"
    assert store.load_state(run_id, "step-0001") == {"n": 1}
    with pytest.raises(ConflictError):
        store.commit(run_id, state={"n": 2}, parent="step-0001", checkpoint_id="step-0001")
    assert store.get_branch(run_id).head == "step-0001"


def test_checkpoint_ids_are_unique_per_run_not_globally(store: clew.Store) -> None:
    a = store.create_run(agent="x").run_id
    b = store.create_run(agent="x").run_id
    store.commit(a, state={"who": "a"}, parent=None, checkpoint_id="c1")
    store.commit(b, state={"who": "b"}, parent=None, checkpoint_id="c1")
    assert store.load_state(a, "c1") == {"who": "a"}
    assert store.load_state(b, "c1") == {"who": "b"}
    with pytest.raises(NotFoundError, match="2 runs"):
        store.find_checkpoint("c1")


@pytest.mark.parametrize("cold", [False, True], ids=["same-writer", "fresh-writer"])
def test_rich_state_round_trips(stores: Any, store: clew.Store, run_id: str, cold: bool) -> None:
    state = rich_state()
    c1 = store.commit(run_id, state=state, parent=None)
    reader = stores.open() if cold else store
    if cold:  # in memory there is one store: drop what its writer remembers instead
        reader._ctx.forget(run_id)
    assert_same(reader.load_state(run_id, c1.checkpoint_id), state)
    # Change a few fields, keep the rest: the result is still exact.
    state2 = {**state, "int": 43, "messages": [*state["messages"], {"role": "user", "content": "more"}]}
    del state2["set"]
    c2 = store.commit(run_id, state=state2, parent=c1.checkpoint_id)
    assert_same(reader.load_state(run_id, c2.checkpoint_id), state2)
    assert_same(reader.load_state(run_id, c1.checkpoint_id), state)


def test_empty_state(store: clew.Store, run_id: str) -> None:
    c = store.commit(run_id, state={}, parent=None)
    assert store.load_state(run_id, c.checkpoint_id) == {}


def _equal_but_different(kind: str) -> tuple[Any, Any]:
    return {
        "int-bool": (1, True),
        "int-float": (1, 1.0),
        "decimal-exponent": (Decimal("1.0"), Decimal("1.00")),
        "zero-negzero": (0.0, -0.0),
        "datetime-zone": (
            dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC),
            dt.datetime(2024, 1, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        ),
    }[kind]


EQUAL_BUT_DIFFERENT = ["int-bool", "int-float", "decimal-exponent", "zero-negzero", "datetime-zone"]


@pytest.mark.parametrize("where", ["value", "list-item"])
def test_equal_values_of_another_type_are_not_conflated(store: clew.Store, where: str) -> None:
    wrong = []
    for kind in EQUAL_BUT_DIFFERENT:
        old, new = _equal_but_different(kind)

        def state(v: Any) -> dict[str, Any]:
            return {"f": {"k": [v]}} if where == "value" else {"f": ["x", v]}

        run_id = store.create_run(agent="types").run_id
        c1 = store.commit(run_id, state=state(old), parent=None)
        c2 = store.commit(run_id, state=state(new), parent=c1.checkpoint_id)
        if repr(store.load_state(run_id, c2.checkpoint_id)) != repr(state(new)):
            wrong.append(kind)
    assert wrong == []


def test_lists_round_trip_through_appends_edits_and_shrinks(store: clew.Store, stores: Any, run_id: str) -> None:
    """A chunked list survives every kind of change, read by a warm and a cold reader."""
    rnd = random.Random(3)
    cold = stores.open()
    messages: list[Any] = []
    parent: str | None = None
    history: list[tuple[str, list[Any]]] = []
    for step in range(120):
        roll = rnd.random()
        if roll < 0.7 or len(messages) < 5:  # append a few
            messages = messages + [content.message(rnd, "user", rnd.randint(1, 300)) for _ in range(rnd.randint(1, 9))]
        elif roll < 0.8:  # edit an old item in place (the caller mutates its own list)
            messages[rnd.randrange(len(messages))]["content"] = f"edited at {step}"
        elif roll < 0.9:  # drop the tail
            messages = messages[: rnd.randrange(len(messages))]
        else:  # replace everything
            messages = [{"role": "system", "content": f"reset {step}"}]
        c = store.commit(run_id, state={"messages": messages, "step": step}, parent=parent)
        parent = c.checkpoint_id
        history.append((parent, [dict(m) for m in messages]))
    for cid, expected in history[::7] + history[-3:]:
        cold._ctx.forget(run_id)
        assert cold.load_state(run_id, cid)["messages"] == expected
        assert store.load_state(run_id, cid)["messages"] == expected


def test_long_list_uses_index_nodes_and_loads_exactly(store: clew.Store, run_id: str, raw: Raw) -> None:
    items = [{"i": i, "text": f"item {i}"} for i in range(5000)]
    c = store.commit(run_id, state={"items": items}, parent=None)
    c2 = store.commit(run_id, state={"items": [*items, {"i": 5000}]}, parent=c.checkpoint_id)
    store._ctx.forget(run_id)
    assert store.load_state(run_id, c.checkpoint_id) == {"items": items}
    assert store.load_state(run_id, c2.checkpoint_id) == {"items": [*items, {"i": 5000}]}
    # The manifest names a few roots, not every chunk.
    manifest_size = raw.scalar("SELECT length(manifest) FROM checkpoints WHERE checkpoint_id = ?", c2.checkpoint_id)
    assert manifest_size < 1000


def test_caller_mutating_its_state_after_commit_does_not_change_the_checkpoint(store: clew.Store, run_id: str) -> None:
    state: dict[str, Any] = {"messages": [{"content": "a"}], "meta": {"k": [1]}}
    c1 = store.commit(run_id, state=state, parent=None)
    state["messages"][0]["content"] = "mutated"
    state["messages"].append({"content": "b"})
    state["meta"]["k"].append(2)
    c2 = store.commit(run_id, state=state, parent=c1.checkpoint_id)
    assert store.load_state(run_id, c1.checkpoint_id) == {"messages": [{"content": "a"}], "meta": {"k": [1]}}
    assert store.load_state(run_id, c2.checkpoint_id) == {
        "messages": [{"content": "mutated"}, {"content": "b"}],
        "meta": {"k": [1, 2]},
    }


def test_fields_can_change_shape(store: clew.Store, run_id: str) -> None:
    states: list[dict[str, Any]] = [{"f": [1, 2]}, {"f": "now a string"}, {"f": [3]}, {"g": 1}, {"f": [], "g": [[]]}]
    parent = None
    ids = []
    for s in states:
        parent = store.commit(run_id, state=s, parent=parent).checkpoint_id
        ids.append(parent)
    store._ctx.forget(run_id)
    assert [store.load_state(run_id, i) for i in ids] == states


def _chain(
    store: clew.Store, run_id: str, n: int, *, branch: str = "main", parent: str | None = None, tag: str = "m"
) -> list[str]:
    ids = []
    for i in range(n):
        parent = store.commit(
            run_id,
            state={"tag": tag, "i": i, "log": [f"{tag}{j}" for j in range(i + 1)]},
            parent=parent,
            branch=branch,
            metadata={"i": i},
        ).checkpoint_id
        ids.append(parent)
    return ids


def test_list_checkpoints_newest_first_paginated_through_fork(store: clew.Store, run_id: str) -> None:
    main = _chain(store, run_id, 6)
    store.fork(run_id, checkpoint_id=main[2], branch="alt")
    alt = _chain(store, run_id, 4, branch="alt", parent=main[2], tag="a")

    full = store.list_checkpoints(run_id)
    assert [c.checkpoint_id for c in full] == main[::-1]
    assert full.next_cursor is None
    assert [c.checkpoint_id for c in store.list_checkpoints(run_id, branch="alt")] == alt[::-1] + main[2::-1]

    for limit in (1, 2, 3, 7, 100):
        seen: list[str] = []
        branches: list[str] = []
        cursor = None
        while True:
            page = store.list_checkpoints(run_id, branch="alt", limit=limit, cursor=cursor)
            assert 0 < len(page) <= limit
            seen.extend(c.checkpoint_id for c in page)
            branches.extend(c.branch for c in page)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == alt[::-1] + main[2::-1], limit
        assert branches == ["alt"] * 4 + ["main"] * 3

    records = list(store.list_checkpoints(run_id, branch="alt"))
    for rec, older in itertools.pairwise(records):
        assert rec.parent_id == older.checkpoint_id
        assert rec.seq > older.seq
    assert records[-1].parent_id is None
    assert records[0].metadata == {"i": 3}
    assert records[0] == store.get_checkpoint(run_id, alt[-1])


def test_list_checkpoints_of_an_empty_branch(store: clew.Store, run_id: str) -> None:
    page = store.list_checkpoints(run_id)
    assert list(page) == [] and page.next_cursor is None


def test_list_checkpoints_never_loads_state(
    store: clew.Store, run_id: str, raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _chain(store, run_id, 5)
    # Every blob is gone: listing must not notice, loading must.
    assert raw.execute("DELETE FROM blobs WHERE rk = ?", raw.rk(run_id)) > 0
    sql: list[str] = []
    real_q = store._ctx.q

    def spy(*args: Any, **kw: Any) -> Any:
        q = real_q(*args, **kw)
        sql.append(q.sql.lower())
        return q

    monkeypatch.setattr(store._ctx, "q", spy)
    page = store.list_checkpoints(run_id, limit=3)
    page2 = store.list_checkpoints(run_id, limit=3, cursor=page.next_cursor)
    assert [c.checkpoint_id for c in [*page, *page2]] == ids[::-1]
    touched = [q for q in sql if "blobs" in q or "manifest" in q]
    assert sql and not touched, touched
    # The spy sees what a load reads, so the silence above means something.
    store._ctx.forget(run_id)
    with pytest.raises(IntegrityError, match="missing"):
        store.load_state(run_id, ids[-1])
    assert any("blobs" in q for q in sql) and any("manifest" in q for q in sql)


def test_lookups_of_unknown_things(store: clew.Store, run_id: str) -> None:
    c = store.commit(run_id, state={"n": 1}, parent=None)
    for call in (
        lambda: store.get_checkpoint(run_id, "nope"),
        lambda: store.load_state(run_id, "nope"),
        lambda: store.find_checkpoint("nope"),
        lambda: store.get_checkpoint("ghost", c.checkpoint_id),
        lambda: store.load_state("ghost", c.checkpoint_id),
        lambda: store.list_checkpoints(run_id, branch="nope"),
        lambda: store.get_branch(run_id, "nope"),
    ):
        with pytest.raises(NotFoundError):
            call()


def test_a_replaced_item_of_another_type_is_stored_even_after_many_appends(store: clew.Store) -> None:
    # The writer trusts the caller's own unchanged items (same objects) and checks
    # every replaced one type by type: replacing 1 by True deep in history is stored.
    run_id = store.create_run(agent="types").run_id
    items: list[object] = [{"n": 1}]
    head = store.commit(run_id, state={"f": items}, parent=None).checkpoint_id
    for i in range(20):
        items.append({"n": i})
        head = store.commit(run_id, state={"f": items}, parent=head).checkpoint_id
    items[0] = {"n": True}
    head = store.commit(run_id, state={"f": items}, parent=head).checkpoint_id
    assert repr(store.load_state(run_id, head)["f"][0]) == "{'n': True}"


class _Note(pydantic.BaseModel):
    text: str
    tags: list[str] = []


def test_in_place_edits_of_old_models_in_a_list_are_seen(store: clew.Store, run_id: str) -> None:
    """The writer compares a list's old items with its private copies at C speed for
    Pydantic models (their fields), and falls back to == when they differ."""
    notes = [_Note(text=f"note {i}", tags=["a"]) for i in range(20)]
    parent = store.commit(run_id, state={"notes": notes}, parent=None).checkpoint_id
    expected = []
    for edit in (
        lambda: setattr(notes[3], "text", "edited"),
        lambda: notes[7].tags.append("b"),
        lambda: notes.append(_Note(text="new")),
        lambda: notes[19].tags.clear(),
    ):
        edit()
        parent = store.commit(run_id, state={"notes": notes}, parent=parent).checkpoint_id
        expected.append((parent, [n.model_dump() for n in notes]))
    store._ctx.forget(run_id)
    for cid, want in expected:
        assert [n.model_dump() for n in store.load_state(run_id, cid)["notes"]] == want


class _Extra(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    text: str
    _seen: list[int] = pydantic.PrivateAttr(default_factory=list)


def test_a_models_private_copy_shares_only_atoms() -> None:
    """The writer's copy of a model: equal, with the same fields set, extras and private
    values, its dicts and lists its own, its strings the caller's (quick to compare)."""
    from clew.store import _tree

    note = _Note(text="x" * 500, tags=["a"])
    loose = _Extra(text="y" * 300, more={"k": [1, 2]})
    loose._seen.append(1)
    for model in (note, loose):
        copy_ = _tree.private_copy(model, b"", clew.codec.Codec())
        assert copy_ == model and type(copy_) is type(model)
        assert copy_.model_fields_set == model.model_fields_set
        assert copy_.text is model.text  # an atom: shared
    assert _tree.private_copy(note, b"", clew.codec.Codec()).tags is not note.tags
    copied = _tree.private_copy(loose, b"", clew.codec.Codec())
    assert copied.__pydantic_extra__ == {"more": {"k": [1, 2]}}
    assert copied.__pydantic_extra__["more"]["k"] is not loose.__pydantic_extra__["more"]["k"]
    assert copied._seen == [1] and copied._seen is not loose._seen
    loose.__pydantic_extra__["more"]["k"].append(3)
    assert copied != loose  # the caller's edit does not reach the copy

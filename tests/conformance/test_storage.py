"""What a store writes: each value once, and bytes linear in what changed."""

from __future__ import annotations

import random
from typing import Any

import clew
from clew.codec import Codec
from tests.helpers import content
from tests.helpers.raw import Raw


def _blob_rows(raw: Raw, run_id: str, value: Any) -> int:
    addr = Codec().address(Codec().dumps(value)[0])
    return int(raw.scalar("SELECT count(*) FROM blobs WHERE rk = ? AND addr = ?", raw.rk(run_id), addr))


def test_a_value_is_stored_once_across_checkpoints_and_branches(
    stores: Any, store: clew.Store, raw: Raw, run_id: str
) -> None:
    big = {"report": content.text(random.Random(1), 20_000), "rows": list(range(500))}
    c1 = store.commit(run_id, state={"big": big, "n": 1}, parent=None)
    first = raw.counts(run_id)["blobs"]  # big (a tree of a few blobs: it is large) and n
    c2 = store.commit(run_id, state={"big": big, "n": 2}, parent=c1.checkpoint_id)
    store.fork(run_id, checkpoint_id=c1.checkpoint_id, branch="alt")
    c3 = store.commit(run_id, state={"big": big, "n": 3}, parent=c1.checkpoint_id, branch="alt")
    # A writer that remembers nothing writes the same value again: still one row.
    fresh = stores.open()
    fresh._ctx.forget(run_id)
    c4 = fresh.commit(run_id, state={"big": dict(big), "n": 4, "copy": big}, parent=c3.checkpoint_id, branch="alt")
    assert _blob_rows(raw, run_id, 1) == 1 and _blob_rows(raw, run_id, 4) == 1
    # Blobs: big's, and the four values of n; nothing else.
    assert raw.counts(run_id)["blobs"] == first + 3
    for cid in (c1, c2, c3, c4):
        assert fresh.load_state(run_id, cid.checkpoint_id)["big"] == big


def test_list_items_are_stored_once_across_branches(store: clew.Store, raw: Raw, run_id: str) -> None:
    rnd = random.Random(2)
    messages = [content.message(rnd, "user", 2000) for _ in range(10)]
    c1 = store.commit(run_id, state={"messages": messages}, parent=None)
    store.fork(run_id, checkpoint_id=c1.checkpoint_id, branch="alt")
    a = store.commit(run_id, state={"messages": [*messages, {"role": "a"}]}, parent=c1.checkpoint_id)
    b = store.commit(run_id, state={"messages": [*messages, {"role": "b"}]}, parent=c1.checkpoint_id, branch="alt")
    size = raw.stored_bytes(run_id)
    raw_size = sum(len(Codec().dumps(m)[0]) for m in messages)
    assert size < raw_size  # the shared prefix is not written twice (and compresses)
    assert store.load_state(run_id, a.checkpoint_id)["messages"][-1] == {"role": "a"}
    assert store.load_state(run_id, b.checkpoint_id)["messages"][-1] == {"role": "b"}


def test_storage_grows_linearly_with_a_long_conversation(store: clew.Store, raw: Raw, run_id: str) -> None:
    """1,000 steps, each appending two ~400-byte messages and one ~1 KB tool result."""
    codec = Codec()
    rnd = random.Random(1000)
    messages: list[Any] = []
    tools: list[Any] = []
    appended = 0
    parent = None
    half: tuple[int, int] = (0, 0)
    steps = 1000
    for step in range(steps):
        new = [content.message(rnd, "user"), content.message(rnd, "assistant")]
        result = content.tool_result(rnd, step)
        messages = [*messages, *new]
        tools = [*tools, result]
        appended += sum(len(codec.dumps(item)[0]) for item in (*new, result))
        parent = store.commit(
            run_id,
            state={"messages": messages, "tool_results": tools, "step": step},
            parent=parent,
            metadata={"step": step},
        ).checkpoint_id
        if step + 1 == steps // 2:
            half = (appended, raw.stored_bytes(run_id))
    stored = raw.stored_bytes(run_id)
    assert appended > 1_500_000
    assert stored < 3 * appended, f"stored {stored} bytes for {appended} appended"
    # Doubling the steps roughly doubles the bytes: linear, not quadratic.
    first_half, second_half = half[1], stored - half[1]
    assert 0.8 < second_half / first_half < 1.25, (first_half, second_half)
    assert 0.9 < (stored / half[1]) / (appended / half[0]) < 1.1
    # And the whole history still loads.
    assert parent is not None
    state = store.load_state(run_id, parent)
    assert state["messages"] == messages and state["tool_results"] == tools

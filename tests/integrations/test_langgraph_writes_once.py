"""A LangGraph step's writes are stored once: the pending write and the state share blobs.

The graph is the dict workload of ``bench/langgraph_bench.py``: each step a node
returns two ~400 B messages (appended by ``add_messages``), a ~1 KB tool result
under a new key of a merged dict, and a counter. The large values of a
``put_writes`` entry go out of line (``clew.store._splice``): the list of messages
as its own bytes, which is the list leaf the next checkpoint's state writes for
them, so the journal row keeps only where the value is. Reads give back what
LangGraph's own ``InMemorySaver`` gives, and a changed byte in a shared blob is
caught.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt

import clew
from clew.codec import Codec
from clew.errors import IntegrityError
from clew.integrations.langgraph import ClewSaver
from clew.store import Retention, _splice
from clew.store._verify import manifest_addrs
from tests.conftest import StoreFactory
from tests.helpers import content
from tests.helpers.raw import Raw
from tests.integrations._parity import difference, normalize

N = 24
CODEC = Codec()


def _merge(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    return {**a, **b}


class DictState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    tool_results: Annotated[dict[str, str], _merge]
    i: int


def _made(n: int) -> list[tuple[list[AnyMessage], dict[str, str]]]:
    rnd = random.Random(1)
    return [
        (
            [
                HumanMessage(content=content.text(rnd, 400), id=f"u{i}"),
                AIMessage(content=content.text(rnd, 400), id=f"a{i}"),
            ],
            {f"c{i}": content.text(rnd, 1000)},
        )
        for i in range(n)
    ]


def dict_graph(n: int, checkpointer: BaseCheckpointSaver[Any]) -> Any:
    made = _made(n)

    def agent(state: DictState) -> dict[str, Any]:
        i = state["i"]
        return {"i": i + 1, "messages": made[i][0], "tool_results": made[i][1]}

    g = StateGraph(DictState)
    g.add_node("agent", agent)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", lambda s: "agent" if s["i"] < n else END, ["agent", END])
    return g.compile(checkpointer=checkpointer)


def cfg(name: str = "t") -> Any:
    return {"configurable": {"thread_id": name}, "recursion_limit": N + 20}


def _run(checkpointer: BaseCheckpointSaver[Any], name: str = "t") -> Any:
    graph = dict_graph(N, checkpointer)
    graph.invoke({"messages": [], "tool_results": {}, "i": 0}, cfg(name), durability="sync")
    return graph


@pytest.fixture
def store(stores: StoreFactory) -> clew.Store:
    return stores.open()


@pytest.fixture
def raw(stores: StoreFactory, store: clew.Store) -> Iterator[Raw]:
    r = Raw(stores, store)
    yield r
    r.close()


def _plains(raw: Raw, run_id: str) -> dict[bytes, bytes]:
    rows = raw.rows("SELECT addr, data FROM blobs WHERE rk = ?", raw.rk(run_id))
    return {bytes(a): CODEC.unwrap(bytes(d)) for a, d in rows}


def _splices(raw: Raw, run_id: str) -> list[tuple[int, bytes, bool]]:
    """Every splice ``(position, address, bare)`` of the run's journal rows."""
    out = []
    for (data,) in raw.rows("SELECT data FROM journal WHERE rk = ?", raw.rk(run_id)):
        if CODEC.spliced(bytes(data)):
            out.extend(_splice._parse(CODEC.unwrap(bytes(data)))[1])
    return out


def test_a_steps_messages_are_stored_once(store: clew.Store, raw: Raw) -> None:
    _run(ClewSaver(store))
    head = store.get_branch("t").head
    assert head is not None
    plains = _plains(raw, "t")
    reached = set(manifest_addrs(raw.manifest("t", head), plains))
    made = _made(N)
    splices = _splices(raw, "t")
    bare = {addr for _, addr, is_bare in splices if is_bare}
    for messages, results in made:
        # The messages write is the list leaf of appending them: one blob, which the state reaches.
        leaf = CODEC.address(CODEC.dumps(messages)[0])
        assert leaf in bare and leaf in reached
        # The dict write is stored bare too: the bytes of the map-log leaf setting those keys,
        # which the state reaches once the dict is a map log (4 KB and more).
        assert CODEC.address(CODEC.dumps(results)[0]) in bare
        # And no other blob holds those messages' text.
        text = str(messages[0].content).encode()
        assert sum(text in p for p in plains.values()) == 1
    late = [CODEC.address(CODEC.dumps(results)[0]) for _, results in made[N // 2 :]]
    assert all(addr in reached for addr in late)  # each result stored once, shared with the state
    # The journal rows keep only the small fields and where the values are: a step's
    # write entry is about 2.9 KB, its row about 230 bytes (1.1 KB with values inline).
    journal = raw.scalar("SELECT sum(length(data)) FROM journal WHERE rk = ?", raw.rk("t"))
    assert journal < 400 * (N + 1)
    rows = raw.rows("SELECT data FROM journal WHERE rk = ?", raw.rk("t"))
    assert not any(str(made[-1][0][1].content).encode()[:60] in CODEC.unwrap(bytes(d)) for (d,) in rows)
    assert store.verify("t").ok


def _seen(graph: Any, checkpointer: BaseCheckpointSaver[Any]) -> list[Any]:
    """What a user sees of the thread: its state, history, and each checkpoint's pending writes."""
    history = list(graph.get_state_history(cfg()))
    writes = []
    for snap in history:
        tup = checkpointer.get_tuple(snap.config)
        assert tup is not None
        writes.append(tup.pending_writes)
    return normalize([graph.get_state(cfg()), history, writes])


def test_pending_writes_read_as_in_memory(store: clew.Store) -> None:
    memory = InMemorySaver()
    saver = ClewSaver(store)
    expected = _seen(_run(memory), memory)
    got = _seen(_run(saver), saver)
    assert got == expected, difference(got, expected)
    assert any(w for w in got[2])  # the checkpoints do have pending writes


class Split(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    tool_results: Annotated[dict[str, str], _merge]


def _interrupted(checkpointer: BaseCheckpointSaver[Any], runs: list[str]) -> Any:
    """``work`` (large writes) and ``ask`` (a person's answer) run side by side; ``ask``
    pauses, so ``work``'s writes wait as pending writes and are not run again on resume."""
    made = _made(2)

    def work(state: Split) -> dict[str, Any]:
        runs.append("work")
        return {"messages": made[0][0], "tool_results": made[1][1]}

    def ask(state: Split) -> dict[str, Any]:
        answer = interrupt({"question": "go on?"})
        return {"messages": [HumanMessage(f"answer: {answer} " + "y" * 600, id="h")]}

    g = StateGraph(Split)
    g.add_node("work", work)
    g.add_node("ask", ask)
    g.add_edge(START, "work")
    g.add_edge(START, "ask")
    g.add_edge("work", END)
    g.add_edge("ask", END)
    return g.compile(checkpointer=checkpointer)


def _resume(checkpointer: BaseCheckpointSaver[Any]) -> tuple[list[Any], list[str]]:
    runs: list[str] = []
    graph = _interrupted(checkpointer, runs)
    graph.invoke({"messages": [], "tool_results": {}}, cfg())
    paused = graph.get_state(cfg())
    tup = checkpointer.get_tuple(paused.config)
    assert tup is not None
    graph.invoke(Command(resume="yes"), cfg())
    return normalize([paused, tup.pending_writes, graph.get_state(cfg()), list(graph.get_state_history(cfg()))]), runs


def test_an_interrupted_graph_resumes_from_its_stored_writes(store: clew.Store, raw: Raw) -> None:
    expected, memory_runs = _resume(InMemorySaver())
    got, runs = _resume(ClewSaver(store))
    assert got == expected, difference(got, expected)
    assert runs == memory_runs == ["work"]  # its writes came back from the store
    assert sum(bare for _, _, bare in _splices(raw, "t")) >= 2
    assert store.verify("t").ok


def test_a_flipped_byte_in_a_shared_write_blob_is_caught(store: clew.Store, raw: Raw) -> None:
    saver = ClewSaver(store)
    graph = _run(saver)
    history = list(graph.get_state_history(cfg()))
    last = CODEC.address(CODEC.dumps(_made(N)[-1][0])[0])  # the last step's messages
    raw.flip("blobs", "data", "rk = ? AND addr = ?", (raw.rk("t"), last), -1)
    assert ("blob", last.hex()) in [(p.kind, p.ident) for p in store.verify("t").problems]
    store._ctx.forget("t")
    with pytest.raises(IntegrityError, match=last.hex()):
        graph.get_state(cfg())
    with pytest.raises(IntegrityError, match=last.hex()):
        store.list_journal("t")
    # The head's grandparent reads neither that state nor that write (sealed into the head).
    good = saver.get_tuple(history[2].config)
    assert good is not None and len(good.checkpoint["channel_values"]["messages"]) == 2 * (N - 2)
    assert [w[1] for w in good.pending_writes] == ["i", "messages", "tool_results", "branch:to:agent"]


def test_retention_keeps_the_blobs_of_kept_writes(store: clew.Store, raw: Raw) -> None:
    saver = ClewSaver(store)
    graph = _run(saver)
    kept = list(graph.get_state_history(cfg()))[:3]
    before = [saver.get_tuple(s.config) for s in kept]
    blobs = raw.counts("t")["blobs"]
    report = store.gc([Retention(agent="langgraph", keep_last=3)])
    assert report.checkpoints_pruned > 0 and 0 < raw.counts("t")["blobs"] < blobs
    store._ctx.forget("t")
    assert [saver.get_tuple(s.config) for s in kept] == before
    assert all(t is not None and t.pending_writes for t in before[1:])
    assert store.verify("t").ok

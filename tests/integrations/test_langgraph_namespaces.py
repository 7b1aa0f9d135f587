"""Subgraph namespaces are branches of their thread's run, and LangGraph cannot tell.

The same calls go to ``InMemorySaver`` and to ``ClewSaver`` (memory, SQLite,
PostgreSQL; sync and async), including a namespace written before its thread's root
namespace (as a subgraph does under ``durability="exit"``), forks and writes inside a
namespace; what comes back must be equal. Graph-level scenarios (subgraph
interrupts, ``get_state(subgraphs=True)``, history by ``checkpoint_ns``) are in
``test_langgraph_parity.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from clew.integrations.langgraph import ClewSaver
from tests.conftest import StoreFactory
from tests.integrations._graphs import review_graph
from tests.integrations._parity import difference, normalize
from tests.integrations.test_langgraph_parity import nested_graph

NS = "inner:6b1c6bd2-7a5e-4f8e-9d3a-1f0e2c3b4a59"
OTHER = "inner:0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d|deep:1f2e3d4c-5b6a-4978-8877-665544332211"


def _conf(ns: str, cid: str | None = None, thread: str = "t") -> Any:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if cid is not None:
        conf["checkpoint_id"] = cid
    return {"configurable": conf}


def _cp(n: int) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = {"n": n, "notes": [f"note {i}" for i in range(n)]}
    cp["channel_versions"] = {"n": n + 1, "notes": n + 1}
    return cp


def _raw(t: Any) -> Any:
    return (
        None if t is None else (t.config, t.parent_config, t.metadata, t.pending_writes, t.checkpoint["channel_values"])
    )


def _calls() -> list[tuple[str, tuple[Any, ...]]]:
    """A call sequence: (method, args), with the checkpoint ids fixed up front."""
    c = {k: _cp(i) for i, k in enumerate(("s1", "r1", "s2", "o1", "r2", "s3", "s4"))}
    ids = {k: v["id"] for k, v in c.items()}
    return [
        (
            "put",
            (_conf(NS), c["s1"], {"source": "input", "step": -1}, c["s1"]["channel_versions"]),
        ),  # a namespace before the root
        ("put", (_conf(""), c["r1"], {"source": "input", "step": -1}, c["r1"]["channel_versions"])),
        ("put_writes", (_conf(NS, ids["s1"]), [("n", 1)], "task-a")),
        ("put", (_conf(NS, ids["s1"]), c["s2"], {"source": "loop", "step": 0}, c["s2"]["channel_versions"])),
        ("put", (_conf(OTHER), c["o1"], {"source": "input", "step": -1}, c["o1"]["channel_versions"])),
        ("put_writes", (_conf("", ids["r1"]), [("n", 2), ("__interrupt__", "wait")], "task-b")),
        ("put", (_conf("", ids["r1"]), c["r2"], {"source": "loop", "step": 0}, c["r2"]["channel_versions"])),
        ("get_tuple", (_conf(NS, ids["s1"]),)),  # time travel reads the checkpoint first
        (
            "put",
            (_conf(NS, ids["s1"]), c["s3"], {"source": "fork", "step": 0}, c["s3"]["channel_versions"]),
        ),  # a fork inside NS
        ("put_writes", (_conf(NS, ids["s1"]), [("notes", ["late"])], "task-c")),  # after s1 had children
        ("put", (_conf(NS, ids["s3"]), c["s4"], {"source": "loop", "step": 1}, c["s4"]["channel_versions"])),
    ]


def _reads(saver: BaseCheckpointSaver[Any], returned: list[Any]) -> list[Any]:
    out: list[Any] = [returned]
    for ns in ("", NS, OTHER, "inner:never"):
        out.append(_raw(saver.get_tuple(_conf(ns))))
        out.append([_raw(t) for t in saver.list(_conf(ns))])
    out.append(sorted((_raw(t) for t in saver.list({"configurable": {"thread_id": "t"}})), key=repr))
    out.append(sorted((_raw(t) for t in saver.list(None)), key=repr))
    for t in list(saver.list(_conf(NS))):  # every checkpoint by its own config, and not from another namespace
        out.append(_raw(saver.get_tuple(t.config)))
        out.append(_raw(saver.get_tuple(_conf("", t.config["configurable"]["checkpoint_id"]))))
    return out


def run(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    returned = []
    for method, args in _calls():
        got = getattr(saver, method)(*args)
        returned.append(_raw(got) if method == "get_tuple" else got)
    return _reads(saver, returned)


async def arun(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    returned = []
    for method, args in _calls():
        got = await getattr(saver, "a" + method)(*args)
        returned.append(_raw(got) if method == "get_tuple" else got)
    out: list[Any] = [returned]
    for ns in ("", NS, OTHER, "inner:never"):
        out.append(_raw(await saver.aget_tuple(_conf(ns))))
        out.append([_raw(t) async for t in saver.alist(_conf(ns))])
    out.append(sorted([_raw(t) async for t in saver.alist({"configurable": {"thread_id": "t"}})], key=repr))
    out.append(sorted([_raw(t) async for t in saver.alist(None)], key=repr))
    for t in [t async for t in saver.alist(_conf(NS))]:
        out.append(_raw(await saver.aget_tuple(t.config)))
        out.append(_raw(await saver.aget_tuple(_conf("", t.config["configurable"]["checkpoint_id"]))))
    return out


def _rethread(raw: Any, thread: str) -> Any:
    config, parent, *rest = raw
    move = lambda c: c and {"configurable": {**c["configurable"], "thread_id": thread}}  # noqa: E731
    return (move(config), move(parent), *rest)


def _same(expected: Any, got: Any) -> None:
    assert (diff := difference(normalize(expected), normalize(got))) is None, diff


def _one_run(store: Any) -> None:
    runs = store.list_runs(agent="langgraph").items
    assert [r.run_id for r in runs] == ["t"]
    names = {b.name for b in store.list_branches("t")}
    assert {f"{NS}/main", f"{OTHER}/main", "main"} <= names
    assert store.verify("t").ok


def test_namespaces_look_as_on_in_memory_saver(stores: StoreFactory) -> None:
    expected = run(InMemorySaver())
    saver = ClewSaver(stores.open())
    _same(expected, run(saver))
    _one_run(saver.store)


async def test_namespaces_look_as_on_in_memory_saver_async(stores: StoreFactory) -> None:
    expected = await arun(InMemorySaver())
    async with ClewSaver.afrom_url(stores.url) as saver:
        _same(expected, await arun(saver))
        _one_run(saver.store or stores.open())  # the async SQLite store's sync twin, or the same PostgreSQL schema


def test_copy_prune_and_delete_keep_namespaces_apart(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    run(saver)
    before = {ns: [_raw(t) for t in saver.list(_conf(ns))] for ns in ("", NS, OTHER)}
    saver.copy_thread("t", "copy")
    for ns, listed in before.items():
        copied = [_raw(t) for t in saver.list(_conf(ns, thread="copy"))]
        assert normalize(copied) == normalize([_rethread(t, "copy") for t in listed])
    saver.prune(["copy"])
    for ns, listed in before.items():
        kept = [t.config["configurable"]["checkpoint_id"] for t in saver.list(_conf(ns, thread="copy"))]
        assert kept == [listed[0][0]["configurable"]["checkpoint_id"]]  # each namespace keeps its latest
    store = saver.store
    assert store is not None and store.verify("copy").ok
    saver.delete_thread("copy")
    assert [r.run_id for r in store.list_runs(agent="langgraph").items] == ["t"]


def test_the_cli_lists_one_run_per_thread_with_its_subgraphs_as_branches(tmp_path: Path) -> None:
    db = str(tmp_path / "lg.db")
    with ClewSaver.from_url(f"sqlite:///{db}") as saver:
        nested_graph().compile(checkpointer=saver).invoke(
            {"messages": [("user", "hi")]}, {"configurable": {"thread_id": "n"}}
        )
        review_graph().compile(checkpointer=saver).invoke(
            {"messages": [("user", "hi")]}, {"configurable": {"thread_id": "r"}}
        )

    def clew(*args: str) -> Any:
        proc = subprocess.run([sys.executable, "-m", "clew.cli", *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    runs = clew("runs", "--db", db, "--json")["runs"]
    assert sorted((r["run_id"], r["status"]) for r in runs) == [("n", "paused"), ("r", "paused")]
    branches = {b["name"]: b for b in clew("branches", "n", "--db", db, "--json")}
    sub = next(name for name in branches if name.endswith("/main"))
    assert sub.startswith("inner:") and branches[sub]["status"] == "paused"
    shown = clew("show", "n", "--db", db, "--branch", sub, "--json")  # the subgraph's state, messages decoded
    assert [m["content"] for m in shown["state"]["messages"]] == ["hi", "prep", "draft"]


def exit_scenario(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    """``durability="exit"``: the subgraph saves when it pauses, before its thread has any checkpoint."""
    graph = nested_graph().compile(checkpointer=saver)
    cfg: Any = {"configurable": {"thread_id": "x"}}
    rec: list[Any] = [graph.invoke({"messages": [HumanMessage("hi")]}, cfg, durability="exit")]
    paused = graph.get_state(cfg, subgraphs=True)
    rec += [paused, list(graph.get_state_history(cfg))]
    if paused.tasks and paused.tasks[0].state is not None:
        rec.append(list(graph.get_state_history(paused.tasks[0].state.config)))
    rec.append(graph.invoke(Command(resume="yes"), cfg, durability="exit"))
    rec += [graph.get_state(cfg, subgraphs=True), list(graph.get_state_history(cfg))]
    return rec


def test_a_subgraph_that_saves_before_its_thread(stores: StoreFactory) -> None:
    expected = exit_scenario(InMemorySaver())
    saver = ClewSaver(stores.open())
    _same(expected, exit_scenario(saver))
    assert saver.store is not None and saver.store.verify("x").ok
    assert [r.run_id for r in saver.store.list_runs(agent="langgraph").items] == ["x"]
    sub = next(b for b in saver.store.list_branches("x") if b.name.endswith("/main"))
    assert sub.base == "__thread__"  # the run's anchor: the thread had no checkpoint when the subgraph saved
    assert saver.store.list_checkpoints("x", branch="main").items[-1].checkpoint_id == "__thread__"


async def aexit_scenario(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    graph = nested_graph().compile(checkpointer=saver)
    cfg: Any = {"configurable": {"thread_id": "x"}}
    rec: list[Any] = [await graph.ainvoke({"messages": [HumanMessage("hi")]}, cfg, durability="exit")]
    paused = await graph.aget_state(cfg, subgraphs=True)
    rec += [paused, [s async for s in graph.aget_state_history(cfg)]]
    rec.append(await graph.ainvoke(Command(resume="yes"), cfg, durability="exit"))
    rec += [await graph.aget_state(cfg, subgraphs=True), [s async for s in graph.aget_state_history(cfg)]]
    return rec


async def test_a_subgraph_that_saves_before_its_thread_async(stores: StoreFactory) -> None:
    expected = await aexit_scenario(InMemorySaver())
    async with ClewSaver.afrom_url(stores.url) as saver:
        _same(expected, await aexit_scenario(saver))
        store = saver.store or stores.open()
        assert store.verify("x").ok and [r.run_id for r in store.list_runs(agent="langgraph").items] == ["x"]

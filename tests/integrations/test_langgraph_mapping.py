"""LangGraph threads are ordinary clew runs, mapped as docs/langgraph.md says."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.types import Command

from clew.errors import ConflictError
from clew.integrations.langgraph import ClewSaver
from tests.conftest import StoreFactory
from tests.integrations import _workload as w
from tests.integrations._graphs import review_graph
from tests.integrations.conftest import thread


def _cfg(thread_id: str = "t", checkpoint_id: str | None = None, ns: str = "") -> Any:
    conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def _cp(**values: Any) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = dict(values)
    cp["channel_versions"] = {k: 1 for k in values}
    return cp


def test_a_thread_is_a_clew_run(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    graph = w.compile_workload("loop", 3, saver)
    w.run(graph, "t", 3)
    store = saver.store
    assert store is not None
    run = store.get_run("t")
    assert run.agent == "langgraph" and run.labels == {"thread_id": "t", "checkpoint_ns": ""}
    history = list(graph.get_state_history(thread()))
    records = list(store.list_checkpoints("t"))
    assert [r.checkpoint_id for r in records] == [s.config["configurable"]["checkpoint_id"] for s in history]
    assert [r.kind for r in records] == ["step"] * 4 + ["input"]
    for snap, rec in zip(history, records, strict=True):
        # LangGraph's metadata where clew's tools look for it; its checkpoint fields aside.
        assert {k: v for k, v in rec.metadata.items() if k != "__langgraph__"} == snap.metadata
        assert {"ts", "channel_versions", "versions_seen"} <= set(rec.metadata["__langgraph__"])
        tup = saver.get_tuple(snap.config)
        assert tup is not None
        assert store.load_state("t", rec.checkpoint_id) == tup.checkpoint["channel_values"]
        assert tup.checkpoint["channel_values"].get("messages", []) == snap.values["messages"]
        parent = snap.parent_config["configurable"]["checkpoint_id"] if snap.parent_config else None
        assert rec.parent_id == parent
    assert store.verify("t").ok


def test_pending_writes_are_journal_entries(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    graph = review_graph().compile(checkpointer=saver)
    graph.invoke({"messages": [HumanMessage("hi")]}, thread())
    assert saver.store is not None
    assert saver.store.get_run("t").status == "paused"
    head = saver.get_tuple(thread())
    assert head is not None
    journal = saver.store.list_journal("t")
    interrupts = [e for e in journal if e.kind == "interrupt"]
    assert len(interrupts) == 1
    data = interrupts[0].data
    assert data["checkpoint"] == head.checkpoint["id"]
    assert data["writes"][0][:2] == [-3, "__interrupt__"]
    assert {"task", "path"} <= set(data)
    graph.invoke(Command(resume="ok"), thread())
    assert saver.store.get_run("t").status == "completed"
    assert any(e.kind == "resume" for e in saver.store.list_journal("t"))


def test_writes_before_their_checkpoint_are_committed_with_it(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    first = saver.put(_cfg(), _cp(n=0), {}, {})
    second = _cp(n=1)
    # LangGraph saves in the background: a task's writes can come before their checkpoint.
    saver.put_writes(_cfg(checkpoint_id=second["id"]), [("ch", "early")], "task-1")
    saver.put(first, second, {}, {})
    tup = saver.get_tuple(thread())
    assert tup is not None and tup.pending_writes == [("task-1", "ch", "early")]
    assert saver.store is not None
    sealed = saver.store.list_journal("t", checkpoint_id=second["id"])
    assert [e.data["checkpoint"] for e in sealed] == [second["id"]]


def test_writes_after_a_child_wait_on_the_late_writes_branch(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    c0 = saver.put(_cfg(), _cp(n=0), {}, {})
    c1 = saver.put(c0, _cp(n=1), {}, {})
    saver.put_writes(c0, [("ch", "late")], "task-0")  # after c1 was stored
    assert saver.store is not None
    late = saver.store.get_branch("t", "late-writes")
    assert late.head == c0["configurable"]["checkpoint_id"]
    old = saver.get_tuple(c0)
    assert old is not None and old.pending_writes == [("task-0", "ch", "late")]
    latest = saver.get_tuple(thread())
    assert latest is not None and latest.checkpoint["id"] == c1["configurable"]["checkpoint_id"]
    # A fork from that checkpoint starts its own branch; late-writes never holds checkpoints.
    saver.put(old.config, cp := _cp(n=2), {}, {})
    assert saver.store.get_branch("t", f"fork-{cp['id']}").head == cp["id"]
    assert saver.store.get_branch("t", "late-writes").head == c0["configurable"]["checkpoint_id"]
    again = saver.get_tuple(c0)
    assert again is not None and again.pending_writes == [("task-0", "ch", "late")]


def test_writes_keep_langgraph_semantics(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    c0 = saver.put(_cfg(), _cp(), {}, {})
    saver.put_writes(c0, [("a", 1), ("b", 2)], "t2", "path-b")
    saver.put_writes(c0, [("a", 9)], "t2", "path-b")  # a regular write keeps its first value
    saver.put_writes(c0, [("__error__", "first")], "t1", "path-a")
    saver.put_writes(c0, [("__error__", "second")], "t1", "path-a")  # a special one its last
    tup = saver.get_tuple(c0)
    assert tup is not None
    assert tup.pending_writes == [("t1", "__error__", "second"), ("t2", "a", 1), ("t2", "b", 2)]


def test_parents_langgraph_never_stored_are_kept(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    cfg = saver.put(_cfg(checkpoint_id="not-a-stored-id"), cp := _cp(n=0), {}, {})
    tup = saver.get_tuple(cfg)
    assert tup is not None and tup.parent_config is not None
    assert tup.parent_config["configurable"]["checkpoint_id"] == "not-a-stored-id"
    assert saver.store is not None
    rec = saver.store.get_checkpoint("t", cp["id"])
    assert rec.parent_id is None and rec.metadata["__langgraph__"]["parent"] == "not-a-stored-id"


def test_a_repeated_put_changes_nothing(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    c0 = saver.put(_cfg(), cp := _cp(n=0), {}, {})
    again = saver.put(_cfg(), cp, {}, {})
    assert again["configurable"]["checkpoint_id"] == c0["configurable"]["checkpoint_id"]
    assert len(list(saver.list(thread()))) == 1


def test_run_ids_are_checked_to_be_langgraph_threads(stores: StoreFactory) -> None:
    store = stores.open()
    store.create_run("taken", agent="billing-bot")
    saver = ClewSaver(store)
    with pytest.raises(ConflictError, match="not LangGraph thread 'taken'"):
        saver.put(_cfg("taken"), _cp(), {}, {})
    with pytest.raises(ConflictError, match="not LangGraph thread"):
        saver.get_tuple(thread("taken"))


def test_versions() -> None:
    saver = ClewSaver.__new__(ClewSaver)
    assert saver.get_next_version(None, None) == 1
    assert saver.get_next_version(4, None) == 5
    nxt = saver.get_next_version("00000000000000000000000000000007.0.5", None)
    assert isinstance(nxt, str) and nxt.startswith("00000000000000000000000000000008.")


def test_delete_for_runs_rebuilds_a_verifiable_thread(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    c0 = saver.put(_cfg(), _cp(n=0), {"run_id": "r1"}, {})
    c1 = saver.put(c0, _cp(n=1), {"run_id": "r2"}, {})
    saver.put_writes(c1, [("ch", "kept")], "task")
    c2 = saver.put(c1, _cp(n=2), {"run_id": "r1"}, {})
    saver.put_writes(c2, [("ch", "head")], "task")
    saver.delete_for_runs(["r1"])
    left = list(saver.list(thread()))
    assert [t.checkpoint["channel_values"]["n"] for t in left] == [1]
    kept = left[0]
    assert kept.pending_writes == [("task", "ch", "kept")]
    # LangGraph's parent id is kept (as the stock savers do); clew's chain is whole again.
    assert (
        kept.parent_config is not None
        and kept.parent_config["configurable"]["checkpoint_id"] == c0["configurable"]["checkpoint_id"]
    )
    assert saver.store is not None
    assert saver.store.verify("t").ok
    assert not [r for r in saver.store.list_runs().items if "rewrite_of" in r.labels]


def test_prune_keeps_the_latest_with_its_writes(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    graph = w.compile_workload("loop", 3, saver)
    w.run(graph, "t", 3)
    before = graph.get_state(thread()).values
    saver.prune(["t"])
    assert len(list(saver.list(thread()))) == 1
    assert graph.get_state(thread()).values == before
    assert saver.store is not None and saver.store.verify("t").ok
    with pytest.raises(ValueError, match="unknown prune strategy"):
        saver.prune(["t"], strategy="keep_some")


def test_copy_thread_keeps_branches_and_refuses_to_overwrite(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    c0 = saver.put(_cfg(), _cp(n=0), {}, {})
    saver.put(c0, _cp(n=1), {}, {})
    old = saver.get_tuple(c0)
    assert old is not None
    saver.put(old.config, _cp(n=2), {}, {})  # a fork
    saver.copy_thread("t", "u")
    assert saver.store is not None
    assert sorted(b.name.split("-")[0] for b in saver.store.list_branches("u")) == ["fork", "main"]
    assert [t.checkpoint["id"] for t in saver.list(thread("u"))] == [t.checkpoint["id"] for t in saver.list(thread())]
    with pytest.raises(ConflictError, match="already has checkpoints"):
        saver.copy_thread("t", "u")


def test_missing_extra_names_it() -> None:
    code = (
        "import sys; sys.modules['langgraph'] = None\n"
        "try:\n"
        "    import clew.integrations.langgraph\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("MissingExtraError") and "pip install 'clew[langgraph]'" in out


def test_list_without_a_thread_lists_every_thread(stores: StoreFactory) -> None:
    saver = ClewSaver(stores.open())
    a = saver.put(_cfg("a"), _cp(n=1), {}, {})
    saver.put(_cfg("b"), _cp(n=2), {}, {})
    saver.put(_cfg("a", ns="child:1"), _cp(n=3), {}, {})
    assert saver.store is not None
    saver.store.create_run("a~rewrite-x", agent="langgraph", labels={"rewrite_of": "a"})  # a scratch run
    everything = list(saver.list(None))
    assert sorted(t.checkpoint["channel_values"]["n"] for t in everything) == [1, 2, 3]
    all_ns = list(saver.list({"configurable": {"thread_id": "a"}}))  # no checkpoint_ns: every namespace
    assert sorted(t.config["configurable"]["checkpoint_ns"] for t in all_ns) == ["", "child:1"]
    only = list(saver.list(thread("a") | {"configurable": {**a["configurable"]}}))
    assert [t.checkpoint["id"] for t in only] == [a["configurable"]["checkpoint_id"]]


def test_the_cli_sees_langgraph_threads(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from clew.cli import main

    db = tmp_path / "cli.db"
    with ClewSaver.from_url(f"sqlite:///{db}") as saver:
        graph = review_graph().compile(checkpointer=saver)
        graph.invoke({"messages": [HumanMessage("hi")]}, thread("t1"))
        head = saver.get_tuple(thread("t1"))
    assert head is not None

    def cli(*args: str) -> Any:
        assert main([*args, "--db", str(db), "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    assert [(r["run_id"], r["agent"], r["status"]) for r in cli("runs")["runs"]] == [("t1", "langgraph", "paused")]
    history = cli("history", "t1")
    assert [c["kind"] for c in history] == ["step", "step", "input"]
    assert history[0]["metadata"]["source"] == "loop"
    assert cli("verify", "t1")["ok"] is True
    shown = cli("show", "t1")
    assert shown["checkpoint_id"] == head.checkpoint["id"]
    assert [m["content"] for m in shown["state"]["messages"]] == ["hi", "plan 1"]

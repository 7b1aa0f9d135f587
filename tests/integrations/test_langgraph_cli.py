"""LangGraph threads through the ``clew`` CLI, in a fresh process with no flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.types import Command

from clew.integrations.langgraph import ClewSaver
from tests.integrations._graphs import review_graph
from tests.integrations.conftest import thread


def _clew(*args: str) -> Any:
    proc = subprocess.run([sys.executable, "-m", "clew.cli", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_show_compare_export_and_status_of_a_thread(tmp_path: Path) -> None:
    db = str(tmp_path / "lg.db")
    with ClewSaver.from_url(f"sqlite:///{db}") as saver:
        graph = review_graph().compile(checkpointer=saver)
        graph.invoke({"messages": [HumanMessage("hi")]}, thread())
        graph.invoke(Command(resume="ok"), thread())
        before = next(s for s in graph.get_state_history(thread()) if s.next == ("review",))
        forked = graph.update_state(before.config, {"messages": [HumanMessage("edited")]})
        graph.invoke(Command(resume="no"), forked)
        assert saver.store is not None
        fork = next(b.name for b in saver.store.list_branches("t") if b.name.startswith("fork-"))

    shown = json.loads(_clew("show", "t", "--db", db, "--json"))
    assert [m["content"] for m in shown["state"]["messages"]] == ["hi", "plan 1", "review: ok"]
    forked_state = json.loads(_clew("show", "t", "--db", db, "--branch", fork, "--json"))
    assert [m["content"] for m in forked_state["state"]["messages"]][-2:] == ["edited", "review: no"]
    assert "messages" in _clew("compare", "t", "main", fork, "--db", db)
    lines = [json.loads(line) for line in _clew("export", "t", "--db", db).splitlines()]
    assert any(line.get("kind") == "interrupt" or "interrupt" in json.dumps(line) for line in lines)
    runs = json.loads(_clew("runs", "--db", db, "--json"))["runs"]
    assert [(r["run_id"], r["status"]) for r in runs] == [("t", "completed")]
    assert fork in _clew("branches", "t", "--db", db, "--wide")  # forks are found by listing branches

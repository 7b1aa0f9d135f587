"""A store from before subgraph namespaces were branches of the thread's run keeps working.

``tests/fixtures/langgraph_ns_runs.db`` holds thread ``n`` of ``nested_graph`` paused
inside its subgraph, written when each namespace was a run ``thread#ns``. The rest of
the scenario runs on it (sync and async) and must look to LangGraph exactly as on
``InMemorySaver``; the subgraph namespace goes on in its own run, as before.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import clew
from clew.integrations.langgraph import ClewSaver
from tests.integrations._parity import difference, normalize
from tests.integrations.test_langgraph_parity import MODES, _alist, cfg, nested_graph

FIXTURE = Path(__file__).parents[1] / "fixtures" / "langgraph_ns_runs.db"


def _rest(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    graph = nested_graph().compile(checkpointer=saver)
    paused = graph.get_state(cfg("n"), subgraphs=True)
    sub_config = paused.tasks[0].state.config
    rec: list[Any] = [paused, paused.tasks[0].state, graph.get_state(sub_config)]
    rec.append(list(graph.get_state_history(sub_config)))
    rec.append(list(graph.stream(Command(resume="yes"), cfg("n"), stream_mode=MODES, subgraphs=True)))
    rec.append(graph.get_state(cfg("n"), subgraphs=True))
    rec.append(list(graph.get_state_history(cfg("n"))))
    rec.append(list(graph.get_state_history(sub_config)))
    return rec


async def _arest(saver: BaseCheckpointSaver[Any]) -> list[Any]:
    graph = nested_graph().compile(checkpointer=saver)
    paused = await graph.aget_state(cfg("n"), subgraphs=True)
    sub_config = paused.tasks[0].state.config
    rec: list[Any] = [paused, paused.tasks[0].state, await graph.aget_state(sub_config)]
    rec.append(await _alist(graph.aget_state_history(sub_config)))
    rec.append(await _alist(graph.astream(Command(resume="yes"), cfg("n"), stream_mode=MODES, subgraphs=True)))
    rec.append(await graph.aget_state(cfg("n"), subgraphs=True))
    rec.append(await _alist(graph.aget_state_history(cfg("n"))))
    rec.append(await _alist(graph.aget_state_history(sub_config)))
    return rec


def _expected() -> Any:
    saver = InMemorySaver()
    graph = nested_graph().compile(checkpointer=saver)
    list(graph.stream({"messages": [HumanMessage("hi")]}, cfg("n"), stream_mode=MODES, subgraphs=True))
    return normalize(_rest(saver))


def _copy(tmp_path: Path) -> str:
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)
    return f"sqlite:///{path}"


def _legacy_layout(url: str) -> None:
    with clew.open(url) as store:
        runs = store.list_runs(agent="langgraph").items
        assert sorted(r.run_id.partition("#")[0] for r in runs) == ["n", "n"]  # still a run per namespace
        for r in runs:
            assert r.status == "completed" and store.verify(r.run_id).ok
            assert all("/" not in b.name for b in store.list_branches(r.run_id))


def test_a_thread_with_namespace_runs_resumes_as_on_in_memory_saver(tmp_path: Path) -> None:
    url = _copy(tmp_path)
    with ClewSaver.from_url(url) as saver:
        assert (diff := difference(_expected(), normalize(_rest(saver)))) is None, diff
    _legacy_layout(url)


async def test_a_thread_with_namespace_runs_resumes_as_on_in_memory_saver_async(tmp_path: Path) -> None:
    url = _copy(tmp_path)
    async with ClewSaver.afrom_url(url) as saver:
        assert (diff := difference(_expected(), normalize(await _arest(saver)))) is None, diff
    _legacy_layout(url)

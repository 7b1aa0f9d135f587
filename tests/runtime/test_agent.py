"""The Agent API: steps over a typed state, a checkpoint after every step with its journal."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from pydantic import BaseModel

import clew
from clew.errors import ConfigError, ConflictError, InvalidStateError
from tests.runtime.conftest import Tools, assert_chain, kinds


class Notes(BaseModel):
    topic: str
    notes: list[str] = []
    summary: dict[str, int] | None = None


@dataclasses.dataclass
class NotesDC:
    topic: str
    notes: list[str] = dataclasses.field(default_factory=list)
    summary: dict[str, int] | None = None


def three_steps(agent: clew.Agent[Any], tools: Tools) -> None:
    get = (lambda s, k: s[k]) if agent._adapter.kind == "dict" else getattr

    def put(s: Any, k: str, v: Any) -> None:
        if isinstance(s, dict):
            s[k] = v
        else:
            setattr(s, k, v)

    @agent.step(start=True)
    def gather(state: Any, ctx: clew.Context) -> str:
        tools.ctx = ctx
        get(state, "notes").append(ctx.call("search", tools.tool("search"), get(state, "topic")))
        time.sleep(0.01)
        return "more"

    @agent.step
    def more(state: Any, ctx: clew.Context) -> str:
        tools.ctx = ctx
        get(state, "notes").append(ctx.call("search", tools.tool("search"), "more"))
        return "summarize"

    @agent.step
    def summarize(state: Any, ctx: clew.Context) -> None:
        put(state, "summary", {"notes": len(get(state, "notes"))})


def make_state(kind: str) -> Any:
    if kind == "pydantic":
        return Notes(topic="tides")
    if kind == "dataclass":
        return NotesDC(topic="tides")
    return {"topic": "tides", "notes": [], "summary": None}


STATE_TYPES = {"pydantic": Notes, "dataclass": NotesDC, "dict": dict}


@pytest.mark.parametrize("kind", ["pydantic", "dataclass", "dict"])
def test_state_types_run_and_round_trip(store: clew.Store, tools: Tools, kind: str) -> None:
    agent = clew.Agent("notes", state=STATE_TYPES[kind], store=store)
    three_steps(agent, tools)
    run = agent.start(make_state(kind))
    assert run.status == "completed"
    assert isinstance(run.state, STATE_TYPES[kind])
    expected = make_state(kind)
    if kind == "dict":
        expected.update(notes=["search:tides", "search:more"], summary={"notes": 2})
    else:
        expected.notes, expected.summary = ["search:tides", "search:more"], {"notes": 2}
    assert run.state == expected
    loaded = agent.state_at(run.checkpoint_id)
    assert isinstance(loaded, STATE_TYPES[kind])
    assert loaded == expected
    assert store.get_run(run.run_id).status == "completed"
    assert store.verify(run.run_id).ok


def test_a_checkpoint_after_every_step(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("notes", state=Notes, store=store, version="7", schema_version=3)
    three_steps(agent, tools)
    run = agent.start(Notes(topic="tides"), run_id="r1", labels={"team": "ocean"})
    assert (run.run_id, run.status, run.branch) == ("r1", "completed", "main")
    history = agent.history("r1")
    assert kinds(history) == [("start", None), ("step", "gather"), ("step", "more"), ("step", "summarize")]
    assert_chain(history)
    assert history[0].checkpoint_id == run.checkpoint_id == store.get_branch("r1").head
    start, gather, more, summarize = reversed(history)
    assert start.metadata["next"] == "gather"
    for ckpt, nxt in ((gather, "more"), (more, "summarize"), (summarize, None)):
        meta = ckpt.metadata
        assert meta["next"] == nxt
        assert meta["attempts"] == 1
        assert isinstance(meta["duration_ms"], float) and meta["duration_ms"] >= 0
        assert (meta["code_version"], meta["schema_version"]) == ("7", 3)
        assert meta["state_type"] == f"{Notes.__module__}:Notes"
    assert gather.metadata["duration_ms"] >= 10  # the step slept 10 ms
    # The state at each checkpoint is the state after that step.
    assert agent.state_at(start.checkpoint_id).notes == []
    assert agent.state_at(gather.checkpoint_id).notes == ["search:tides"]
    assert agent.state_at(more.checkpoint_id, run_id="r1").notes == ["search:tides", "search:more"]
    assert agent.state_at(summarize.checkpoint_id).summary == {"notes": 2}
    record = store.get_run("r1")
    assert record.labels == {"team": "ocean"}
    assert record.agent == "notes"
    assert store.get_branch("r1").lease_owner is None  # released once the run stopped


def test_each_steps_journal_is_sealed_into_its_checkpoint(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("notes", state=Notes, store=store)
    three_steps(agent, tools)
    run = agent.start(Notes(topic="tides"))
    _, gather, more, summarize = reversed(agent.history(run.run_id))
    for ckpt, arg in ((gather, "tides"), (more, "more")):
        entries = store.list_journal(run.run_id, checkpoint_id=ckpt.checkpoint_id)
        assert [e.kind for e in entries] == ["call.intent", "call.outcome"]
        assert all(e.checkpoint_id == ckpt.checkpoint_id for e in entries)
        intent, outcome = (e.data for e in entries)
        assert intent["name"] == outcome["name"] == "search"
        assert intent["key"] == outcome["key"]
        assert outcome["ok"] is True and outcome["result"] == f"search:{arg}"
    assert store.list_journal(run.run_id, checkpoint_id=summarize.checkpoint_id) == []
    assert store.list_journal(run.run_id, pending_on="main") == []
    assert store.verify(run.run_id).ok


def test_step_names_and_start_step(store: clew.Store) -> None:
    agent = clew.Agent("named", state=dict, store=store)

    @agent.step(name="first", start=True)
    def a(state: dict[str, Any], ctx: clew.Context) -> str:
        state["path"] = [ctx.step]
        return "second"

    @agent.step(name="second")
    def b(state: dict[str, Any], ctx: clew.Context) -> None:
        state["path"].append(ctx.step)
        state["run"] = ctx.run_id
        state["branch"] = ctx.branch

    run = agent.start({})
    assert run.state == {"path": ["first", "second"], "run": run.run_id, "branch": "main"}
    assert [c.metadata.get("step") for c in agent.history(run.run_id)] == ["second", "first", None]


def test_configuration_errors(store: clew.Store) -> None:
    agent = clew.Agent("cfg", state=dict, store=store)
    with pytest.raises(ConfigError, match="no start step"):
        agent.start({})

    @agent.step(start=True)
    def one(state: dict[str, Any], ctx: clew.Context) -> None:
        pass

    with pytest.raises(ConfigError, match="already has a step 'one'"):
        agent.step(one)
    with pytest.raises(ConfigError, match="already starts at 'one'"):
        agent.step(name="two", start=True)(one)
    with pytest.raises(ConfigError):
        clew.Agent("cfg", state=dict, store=store, on_version_mismatch="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="state type"):
        clew.Agent("cfg", state=list, store=store)  # type: ignore[arg-type]


def test_start_checks_the_state_type(store: clew.Store) -> None:
    agent = clew.Agent("typed", state=Notes, store=store)

    @agent.step(start=True)
    def one(state: Notes, ctx: clew.Context) -> None:
        pass

    with pytest.raises(InvalidStateError, match="Notes"):
        agent.start({"topic": "x"})  # type: ignore[arg-type]
    dict_agent = clew.Agent("d", state=dict, store=store)
    dict_agent.step(start=True)(lambda s, c: None)
    with pytest.raises(InvalidStateError, match="str keys"):
        dict_agent.start({1: "x"})
    assert store.list_runs().items == []  # nothing was written


def test_start_with_a_taken_run_id_conflicts_and_leaves_the_run_alone(store: clew.Store) -> None:
    agent = clew.Agent("ids", state=dict, store=store)

    @agent.step(start=True)
    def one(state: dict[str, Any], ctx: clew.Context) -> None:
        state["n"] = state["n"] + 1

    first = agent.start({"n": 1}, run_id="same")
    with pytest.raises(ConflictError, match="same"):
        agent.start({"n": 100}, run_id="same")
    assert agent.state_at(first.checkpoint_id) == {"n": 2}
    assert store.get_run("same").status == "completed"


async def test_sync_and_async_apis_refuse_the_wrong_store(store: clew.Store, astore: clew.AsyncStore) -> None:
    sync_agent = clew.Agent("s", state=dict, store=store)
    sync_agent.step(start=True)(lambda s, c: None)
    with pytest.raises(ConfigError, match="sync store"):
        await sync_agent.astart({})
    async_agent = clew.Agent("a", state=dict, store=astore)
    async_agent.step(start=True)(lambda s, c: None)
    with pytest.raises(ConfigError, match="async store"):
        async_agent.start({})


def test_async_step_on_a_sync_store_is_a_config_error(store: clew.Store) -> None:
    agent = clew.Agent("mixed", state=dict, store=store)

    @agent.step(start=True)
    async def step(state: dict[str, Any], ctx: clew.Context) -> None:
        pass

    with pytest.raises(ConfigError, match="open_async"):
        agent.start({})


def test_list_state_grows_by_appending(store: clew.Store) -> None:
    """A 200-step conversation: every checkpoint is intact and holds the list so far."""
    agent = clew.Agent("chat", state=dict, store=store)

    @agent.step(start=True)
    def talk(state: dict[str, Any], ctx: clew.Context) -> str | None:
        state["messages"].append({"turn": len(state["messages"]), "text": "hi " * 10})
        return "talk" if len(state["messages"]) < 200 else None

    run = agent.start({"messages": []})
    assert len(run.state["messages"]) == 200
    history = agent.history(run.run_id)
    assert len(history) == 201
    assert_chain(history)
    mid = history[100]
    assert [m["turn"] for m in agent.state_at(mid.checkpoint_id)["messages"]] == list(range(100))
    assert store.verify(run.run_id).ok

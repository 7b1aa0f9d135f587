"""Ephemeral fields are never written; they are supplied again at resume, recover and state_at."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

import clew
from clew.audit import export_run
from tests.conftest import StoreFactory
from tests.runtime.conftest import SimulatedCrash

SECRET = "sk-live-0123456789abcdef"


class Client:
    """An API client: not something a store can or should hold."""

    def __init__(self, name: str) -> None:
        self.name = name

    def ask(self, q: str) -> str:
        return f"{self.name} says {q}"


class Chat(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    question: str
    answers: list[str] = []
    client: Client | None = None
    api_key: str | None = None


def chat_agent(store: clew.Store, **options: Any) -> clew.Agent[Chat]:
    agent = clew.Agent("chat", state=Chat, store=store, ephemeral=("client", "api_key"), **options)

    @agent.step(start=True)
    def first(state: Chat, ctx: clew.Context) -> str:
        assert state.client is not None and state.api_key == SECRET
        state.answers.append(state.client.ask(state.question))
        ctx.interrupt("go on?")
        return "second"

    @agent.step
    def second(state: Chat, ctx: clew.Context) -> None:
        assert state.client is not None and state.api_key == SECRET, "ephemeral fields not supplied"
        state.answers.append(state.client.ask("again"))

    return agent


def test_ephemeral_fields_are_never_written(store: clew.Store) -> None:
    agent = chat_agent(store)
    run = agent.start(Chat(question="hi", client=Client("bot"), api_key=SECRET), run_id="r")
    assert run.status == "paused"
    for c in agent.history("r"):
        stored = store.load_state("r", c.checkpoint_id)
        assert "client" not in stored and "api_key" not in stored
        assert set(stored) == {"question", "answers"}
    exported = "\n".join(export_run(store, "r"))
    assert SECRET not in exported and "Client" not in exported
    for line in exported.splitlines():
        rec = json.loads(line)
        if rec["type"] == "checkpoint":
            assert "api_key" not in rec["state"]
    run = agent.resume("r", answer=True, ephemeral={"client": Client("bot"), "api_key": SECRET})
    assert run.status == "completed"
    assert run.state.answers == ["bot says hi", "bot says again"]
    assert run.state.api_key == SECRET  # the returned state carries what was supplied
    assert all(SECRET not in line for line in export_run(store, "r"))
    assert store.verify("r").ok


def test_without_them_again_the_fields_are_missing(store: clew.Store) -> None:
    agent = chat_agent(store)
    agent.start(Chat(question="hi", client=Client("bot"), api_key=SECRET), run_id="r")
    run = agent.resume("r", answer=True)
    assert run.status == "failed"
    assert run.error is not None and run.error["type"] == "builtins.AssertionError"  # state.client is None
    run = agent.resume("r", ephemeral={"client": Client("bot"), "api_key": SECRET})
    assert run.status == "completed"


def test_state_at_and_recover_take_ephemeral_values(stores: StoreFactory) -> None:
    store = stores.open()
    crash = {"on": True}
    agent = clew.Agent("eph", state=dict, store=store, ephemeral=("client",), worker_id="dead", lease_ttl=0.2)

    @agent.step(start=True)
    def go(state: dict[str, Any], ctx: clew.Context) -> None:
        state["said"] = state["client"].ask("x")
        if crash["on"]:
            raise SimulatedCrash

    with pytest.raises(SimulatedCrash):
        agent.start({"client": Client("c1")}, run_id="r")
    start = agent.history("r")[0]
    assert store.load_state("r", start.checkpoint_id) == {}
    assert agent.state_at(start.checkpoint_id) == {}
    assert agent.state_at(start.checkpoint_id, ephemeral={"client": "given"}) == {"client": "given"}
    crash["on"] = False
    store.acquire_lease("r", owner="dead", ttl=0.2)
    time.sleep(0.25)
    rescuer = clew.Agent("eph", state=dict, store=stores.open(), ephemeral=("client",), worker_id="alive")
    rescuer.step(start=True)(go)
    [run] = rescuer.recover(ephemeral={"client": Client("c2")})
    assert run.status == "completed" and run.state["said"] == "c2 says x"
    assert store.load_state("r", run.checkpoint_id) == {"said": "c2 says x"}


def test_unknown_ephemeral_field_is_refused(store: clew.Store) -> None:
    with pytest.raises(clew.errors.ConfigError, match="nope"):
        clew.Agent("eph", state=Chat, store=store, ephemeral=("nope",))

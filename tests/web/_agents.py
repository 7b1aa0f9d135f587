"""Small agents for the inspector's tests (importable as ``--agent tests.web._agents:make_agent``)."""

from __future__ import annotations

from typing import Any

import clew


def make_agent(store: clew.Store) -> clew.Agent[dict[str, Any]]:
    """An agent that looks something up, asks a person, and finishes with the answer."""
    agent: clew.Agent[dict[str, Any]] = clew.Agent("helper", state=dict, store=store, version="1")

    @agent.step(start=True)
    def look(state: dict[str, Any], ctx: clew.Context) -> str:
        state["found"] = ctx.call("lookup", lambda q: f"result for {q}", state.get("q", "?"))
        return "ask"

    @agent.step
    def ask(state: dict[str, Any], ctx: clew.Context) -> None:
        answer = ctx.interrupt({"question": f"approve {state['found']}?"})
        state["answer"] = answer

    return agent

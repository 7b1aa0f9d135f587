"""An agent the CLI's action commands load as ``tests.cli.reviewagent:agent`` (store: ``$REVIEW_URL``)."""

from __future__ import annotations

import os

from pydantic import BaseModel

import clew


class Draft(BaseModel):
    text: str
    tone: str = "plain"
    approved_by: str | None = None
    sent: bool = False


def make(store: clew.Store) -> clew.Agent[Draft]:
    agent = clew.Agent("review", state=Draft, store=store)

    @agent.step(start=True)
    def write(state: Draft, ctx: clew.Context) -> str:
        state.text = f"{state.text} ({state.tone})"
        return "review"

    @agent.step
    def review(state: Draft, ctx: clew.Context) -> str | None:
        answer = ctx.interrupt({"review": state.text})
        state.approved_by = answer.get("reviewer") if answer.get("approved") else None
        return "send" if state.approved_by else None

    @agent.step
    def send(state: Draft, ctx: clew.Context) -> None:
        state.sent = True

    return agent


def agent() -> clew.Agent[Draft]:
    return make(clew.open(os.environ["REVIEW_URL"]))

"""Redacted values are shown as redacted wherever clew renders a state (export, CLI, inspector)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, SecretStr

import clew
from clew.audit import export_run, to_jsonable


class Ticket(BaseModel):
    email: SecretStr
    note: str


def test_a_redacted_value_renders_as_redacted(tmp_path: Path) -> None:
    store = clew.open(f"sqlite:///{tmp_path / 'r.db'}")
    agent = clew.Agent("redact", state=Ticket, store=store)

    @agent.step(start=True)
    def note(state: Ticket, ctx: clew.Context) -> None:
        state.note = "done"

    run = agent.start(Ticket(email=SecretStr("alice@example.com"), note=""), run_id="r")
    shown = to_jsonable(store.load_state("r", run.checkpoint_id))
    assert shown["email"]["$redacted"] == "SecretStr" and len(shown["email"]["digest"]) == 16
    exported = "\n".join(export_run(store, "r"))
    assert "alice@example.com" not in exported
    assert json.loads(exported.splitlines()[-2])  # every line is JSON
    assert '"$redacted": "SecretStr"' in exported

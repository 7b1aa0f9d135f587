"""The inspector's actions: resume a paused branch, fork from a checkpoint, cancel a branch.

Each goes through :class:`clew.Agent`, which records it (actor, reason) exactly as
the Python API does. Without an agent (``--agent``), or in read-only mode, they are off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from clew.errors import ConfigError
from clew.runtime import Agent, Run

NO_ANSWER = object()


@dataclass(frozen=True, slots=True)
class Actions:
    """What may be done, and why not where it may not."""

    agent: Agent[Any] | None
    read_only: bool

    def why_not(self, action: str) -> str | None:
        """None if ``action`` is available, else a sentence saying why not and how to turn it on."""
        if self.read_only:
            return "read-only mode: actions are off"
        if self.agent is None:
            return "no agent loaded: start clew ui with --agent module:attr to resume, fork and cancel runs"
        return None

    def info(self) -> dict[str, Any]:
        return {
            "read_only": self.read_only,
            "agent": self.agent.name if self.agent is not None else None,
            "actions": {a: {"enabled": self.why_not(a) is None, "note": self.why_not(a)} for a in ACTIONS},
        }

    def _agent(self, action: str) -> Agent[Any]:
        why = self.why_not(action)
        if why is not None or self.agent is None:
            raise ActionRefused(why or action)
        return self.agent

    def resume(self, run_id: str, *, branch: str | None, answer: Any, actor: str) -> dict[str, Any]:
        agent = self._agent("resume")
        kw: dict[str, Any] = {"actor": actor, "branch": branch or None}
        run = agent.resume(run_id, answer, **kw) if answer is not NO_ANSWER else agent.resume(run_id, **kw)
        return _run_body(run)

    def fork(
        self,
        checkpoint_id: str,
        *,
        run_id: str,
        branch: str,
        update: dict[str, Any] | None,
        actor: str,
        reason: str | None,
        run: bool,
    ) -> dict[str, Any]:
        agent = self._agent("fork")
        if not branch:
            raise ConfigError("fork: name the new branch")
        result = agent.fork(
            checkpoint_id, branch=branch, update=update, actor=actor, reason=reason, run=run, run_id=run_id
        )
        if isinstance(result, Run):
            return _run_body(result)
        return {"run_id": result, "branch": branch, "status": "created", "checkpoint_id": None}

    def cancel(self, run_id: str, *, branch: str | None, actor: str, reason: str | None) -> dict[str, Any]:
        done = self._agent("cancel").cancel(run_id, branch or None, actor=actor, reason=reason)
        names = ", ".join(b.name for b in done)
        return {"run_id": run_id, "branch": names or branch, "status": "cancelled", "checkpoint_id": None}


ACTIONS = ("resume", "fork", "cancel")


class ActionRefused(ConfigError):
    """An action asked of an inspector that has it turned off."""


def _run_body(run: Run[Any]) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "branch": run.branch,
        "status": run.status,
        "checkpoint_id": run.checkpoint_id or None,
        "error": dict(run.error) if run.error else None,
    }


def parse_json(text: str | None, what: str, *, obj: bool = False) -> Any:
    """A form field's JSON, or NO_ANSWER when empty. Raises ConfigError naming the field and the fault."""
    if text is None or not text.strip():
        return NO_ANSWER
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if obj and not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object of field names to new values")
    return value


def need_actor(actor: str | None) -> str:
    if not actor or not actor.strip():
        raise ConfigError("say who you are: the actor is recorded with the action")
    return actor.strip()

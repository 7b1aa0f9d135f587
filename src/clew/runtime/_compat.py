"""Load every stored checkpoint of an agent with the current code, and say what would fail.

Meant for a user's CI: before deploying code that changes the state type, its steps or
its schema version, ``clew check-compat module:agent`` (or ``agent.check_compat()``)
tells which stored checkpoints it could no longer load or continue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clew.errors import ClewError
from clew.runtime._effects import Program, StoreCall
from clew.store import CheckpointRecord

if TYPE_CHECKING:
    from clew.runtime._agent import AgentBase


@dataclass(frozen=True, slots=True)
class CompatProblem:
    """One checkpoint the current code cannot load or continue.

    Attributes:
        run_id: the run.
        checkpoint_id: the checkpoint.
        schema_version: the schema version it was written with (None if unrecorded).
        error: the error's type name (``NoUpcasterError``, ``DecodeError``,
            ``InvalidStateError``, ``StepNotFoundError``...).
        message: what went wrong and how to fix it.
    """

    run_id: str
    checkpoint_id: str
    schema_version: int | None
    error: str
    message: str


@dataclass(frozen=True, slots=True)
class CompatReport:
    """What :meth:`Agent.check_compat` found.

    Attributes:
        agent: the agent's name.
        runs: how many runs were checked.
        checkpoints: how many checkpoints were loaded.
        problems: one entry per checkpoint that would fail.
    """

    agent: str
    runs: int = 0
    checkpoints: int = 0
    problems: list[CompatProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every checkpoint loads."""
        return not self.problems


@dataclass(frozen=True, slots=True)
class MigrateReport:
    """What :meth:`Agent.migrate` did.

    Attributes:
        migrated: (run id, branch, new checkpoint id) of each paused branch rewritten.
        skipped: (run id, branch, why) of old-version heads left as they are: they are
            brought up to date when loaded, by the upcasters.
    """

    migrated: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)


def old_heads(agent: AgentBase[Any], *, runs: int | None = None) -> Program:
    """(run id, branch record, head) of every branch whose head has an older schema version."""
    out = []
    cursor = None
    seen = 0
    while runs is None or seen < runs:
        page = yield _call("list_runs", agent=agent.name, limit=100, cursor=cursor)
        for r in page.items:
            if runs is not None and seen >= runs:
                break
            seen += 1
            for b in (yield _call("list_branches", run_id=r.run_id)):
                if b.head is None:
                    continue
                head = yield _call("get_checkpoint", run_id=r.run_id, checkpoint_id=b.head)
                if agent._upcasters.stored_version(head.metadata) < agent._upcasters.current:
                    out.append((r.run_id, b, head))
        cursor = page.next_cursor
        if cursor is None:
            break
    return out


def _call(method: str, **kwargs: Any) -> StoreCall:
    return StoreCall(method, kwargs)


def check_compat(agent: AgentBase[Any], *, runs: int | None = None) -> Program:
    """A program returning a :class:`CompatReport` over the agent's stored runs (at most ``runs``)."""
    report = CompatReport(agent.name)
    n_runs = n_ckpts = 0
    cursor = None
    while runs is None or n_runs < runs:
        page = yield _call("list_runs", agent=agent.name, limit=100, cursor=cursor)
        for r in page.items:
            if runs is not None and n_runs >= runs:
                break
            n_runs += 1
            seen: set[str] = set()
            for b in (yield _call("list_branches", run_id=r.run_id)):
                cur = None
                while True:
                    hist = yield _call("list_checkpoints", run_id=r.run_id, branch=b.name, limit=500, cursor=cur)
                    for c in hist.items:
                        if c.checkpoint_id in seen:
                            continue
                        seen.add(c.checkpoint_id)
                        n_ckpts += 1
                        problem = yield from _check_one(agent, c)
                        if problem is not None:
                            report.problems.append(problem)
                    cur = hist.next_cursor
                    if cur is None:
                        break
        cursor = page.next_cursor
        if cursor is None:
            break
    return CompatReport(agent.name, n_runs, n_ckpts, report.problems)


def _check_one(agent: AgentBase[Any], c: CheckpointRecord) -> Program:
    version = c.metadata.get("schema_version")
    version = version if isinstance(version, int) else None
    try:
        fields = yield from agent._load_fields(c)
        agent._adapter.validate_stored(fields, f"checkpoint {c.checkpoint_id} of run {c.run_id!r}")
        nxt = c.metadata.get("next")
        if nxt is not None and nxt not in agent._steps:
            from clew.errors import StepNotFoundError

            raise StepNotFoundError(
                f"checkpoint {c.checkpoint_id} of run {c.run_id!r} continues at step {nxt!r}, which agent "
                f"{agent.name!r} no longer defines (it has {sorted(agent._steps)})"
            )
    except ClewError as exc:
        return CompatProblem(c.run_id, c.checkpoint_id, version, type(exc).__name__, str(exc))
    return None

"""Bad input to the runtime: a typed error, and the last good checkpoint still loads.

Each case builds a run, does one bad thing, and names the error it must raise; the
common check then loads the run's last good checkpoint and verifies the trail.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import clew
from clew.errors import (
    InvalidStateError,
    NotFoundError,
    RunStatusError,
    StepNotFoundError,
    UnknownTypeError,
)
from tests.conftest import StoreFactory
from tests.runtime import _proc


class Opaque:
    """A type the codec does not know."""


@dataclass
class KBResult:
    query: str
    raw: Any


def research_agent(store: clew.Store, *, broken: str | None = None) -> clew.Agent[dict[str, Any]]:
    """plan -> search -> answer; ``broken`` makes one step misbehave."""
    agent = clew.Agent("research", state=dict, store=store)

    @agent.step(start=True)
    def plan(state: dict[str, Any], ctx: clew.Context) -> str:
        state["plan"] = ["kb"]
        return "search"

    @agent.step
    def search(state: dict[str, Any], ctx: clew.Context) -> Any:
        state["tool_results"] = {"kb": KBResult("q", Opaque() if broken == "unencodable" else "text")}
        if broken == "bad-next":
            return "summarise"  # a typo: the step is called "answer"
        if broken == "not-a-name":
            return 42
        if broken == "ask":
            ctx.interrupt("which source?")
        return "answer"

    @agent.step
    def answer(state: dict[str, Any], ctx: clew.Context) -> None:
        state["answer"] = "42"

    return agent


def without_search_step(store: clew.Store) -> clew.Agent[dict[str, Any]]:
    """The same agent as deployed later, with its search step renamed."""
    agent = research_agent(store)
    agent._steps["web_search"] = dataclasses.replace(agent._steps.pop("search"), name="web_search")
    return agent


@dataclass
class Case:
    setup: Callable[[clew.Store], tuple[clew.Agent[Any], str]]
    act: Callable[[clew.Agent[Any], str], Any]
    error: type[Exception]
    match: str
    good: dict[str, Any]  # the state at the head afterwards


def _run(
    broken: str | None = None, *, status: str = "completed"
) -> Callable[[clew.Store], tuple[clew.Agent[Any], str]]:
    def setup(store: clew.Store) -> tuple[clew.Agent[Any], str]:
        agent = research_agent(store, broken=broken)
        if broken in ("unencodable", "bad-next", "not-a-name"):
            with pytest.raises(Exception):
                agent.start({}, run_id="r")
        else:
            run = agent.start({}, run_id="r")
            assert run.status == status, run
        return agent, "r"

    return setup


def _failed(store: clew.Store) -> tuple[clew.Agent[Any], str]:
    agent = clew.Agent("research", state=dict, store=store)

    @agent.step(start=True)
    def plan(state: dict[str, Any], ctx: clew.Context) -> None:
        state["plan"] = ["kb"]
        raise ConnectionError("down")

    assert agent.start({"plan": []}, run_id="r").status == "failed"
    return agent, "r"


AFTER_PLAN = {"plan": ["kb"]}
DONE = {"plan": ["kb"], "tool_results": {"kb": KBResult("q", "text")}, "answer": "42"}

CASES: dict[str, Case] = {
    "step-returns-unknown-name": Case(
        _run("bad-next"),
        lambda a, r: research_agent(a.store, broken="bad-next").resume(r),  # type: ignore[arg-type]
        StepNotFoundError,
        r"returned 'summarise'.*\['answer', 'plan', 'search'\]",
        AFTER_PLAN,
    ),
    "step-returns-a-non-name": Case(
        _run("not-a-name"),
        lambda a, r: research_agent(a.store, broken="not-a-name").resume(r),  # type: ignore[arg-type]
        StepNotFoundError,
        "returned 42",
        AFTER_PLAN,
    ),
    "resume-at-a-step-the-code-lacks": Case(
        _run("ask", status="paused"),
        lambda a, r: without_search_step(a.store).resume(r, answer="kb"),  # type: ignore[arg-type]
        StepNotFoundError,
        r"continues at step 'search'.*\['answer', 'plan', 'web_search'\]",
        AFTER_PLAN,
    ),
    "unencodable-state": Case(
        _run("unencodable"),
        lambda a, r: research_agent(a.store, broken="unencodable").resume(r),  # type: ignore[arg-type]
        UnknownTypeError,
        r"state\.tool_results\['kb'\]\.raw.*Opaque",
        AFTER_PLAN,
    ),
    "fork-update-fails-validation": Case(
        lambda s: _typed(s),
        lambda a, r: a.fork(a.history(r)[0].checkpoint_id, branch="b", update={"count": "many"}),
        InvalidStateError,
        "count",
        {"count": 1},
    ),
    "edit-update-fails-validation": Case(
        lambda s: _typed(s, pause=True),
        lambda a, r: a.edit(r, update={"count": [1]}, actor="x"),
        InvalidStateError,
        "count",
        {"count": 1},
    ),
    "edit-unknown-field": Case(
        lambda s: _typed(s, pause=True),
        lambda a, r: a.edit(r, update={"cuont": 2}, actor="x"),
        InvalidStateError,
        "cuont",
        {"count": 1},
    ),
    "resume-a-completed-run": Case(_run(), lambda a, r: a.resume(r), RunStatusError, "completed", DONE),
    "answer-a-completed-run": Case(_run(), lambda a, r: a.resume(r, answer="x"), RunStatusError, "completed", DONE),
    "answer-a-failed-run": Case(
        _failed, lambda a, r: a.resume(r, answer="x"), RunStatusError, "failed, not paused", {"plan": []}
    ),
    "edit-a-failed-run": Case(
        _failed, lambda a, r: a.edit(r, update={"plan": []}), RunStatusError, "only a paused branch", {"plan": []}
    ),
    "resume-a-paused-run-without-answer": Case(
        _run("ask", status="paused"),
        lambda a, r: a.resume(r),
        RunStatusError,
        "resume it with answer",
        AFTER_PLAN,
    ),
    "resume-an-unknown-run": Case(_run(), lambda a, r: a.resume("no-such-run"), NotFoundError, "no-such-run", DONE),
}


@dataclass
class Count:
    count: int


def _typed(store: clew.Store, *, pause: bool = False) -> tuple[clew.Agent[Any], str]:
    agent = clew.Agent("typed", state=Count, store=store)

    @agent.step(start=True)
    def inc(state: Count, ctx: clew.Context) -> str | None:
        state.count += 1
        return "ask" if pause else None

    @agent.step
    def ask(state: Count, ctx: clew.Context) -> None:
        ctx.interrupt("ok?")

    agent.start(Count(0), run_id="r")
    return agent, "r"


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(store: clew.Store, name: str) -> None:
    case = CASES[name]
    agent, run_id = case.setup(store)
    before = [c.checkpoint_id for c in store.list_checkpoints(run_id).items]
    with pytest.raises(case.error, match=case.match):
        case.act(agent, run_id)
    # Nothing lost: the checkpoints are those of before, the head loads, the trail verifies.
    assert [c.checkpoint_id for c in store.list_checkpoints(run_id).items] == before
    head = store.get_branch(run_id).head
    assert head is not None
    assert _plain(agent.state_at(head)) == _plain(case.good)
    assert store.verify(run_id).ok
    assert store.get_branch(run_id).lease_owner is None


def test_unencodable_state_fails_the_run_with_the_field_path(store: clew.Store) -> None:
    agent = research_agent(store, broken="unencodable")
    with pytest.raises(UnknownTypeError) as info:
        agent.start({}, run_id="r")
    assert info.value.path == "state.tool_results['kb'].raw"
    assert info.value.type_name.endswith("Opaque")
    record = store.get_branch("r")
    assert record.status == "failed" and record.error is not None
    assert record.error["type"] == "clew.errors.UnknownTypeError"
    assert record.error["step"] == "search"
    assert agent.state_at(agent.history("r")[0].checkpoint_id) == AFTER_PLAN
    # Fixed code resumes it from the last good checkpoint.
    run = research_agent(store).resume("r")
    assert run.status == "completed" and run.state == DONE


def test_unencodable_start_state_is_refused(store: clew.Store) -> None:
    agent = research_agent(store)
    with pytest.raises(UnknownTypeError) as info:
        agent.start({"client": Opaque()}, run_id="r")
    assert info.value.path == "state.client"
    # The run and its first checkpoint are one transaction: nothing was left behind...
    with pytest.raises(NotFoundError):
        store.get_run("r")
    # ...so the same run id starts cleanly with a state clew can store.
    assert agent.start({}, run_id="r").status == "completed"


def test_a_bad_next_step_fails_the_run(store: clew.Store) -> None:
    agent = research_agent(store, broken="bad-next")
    with pytest.raises(StepNotFoundError):
        agent.start({}, run_id="r")
    record = store.get_branch("r")
    assert record.status == "failed" and record.error is not None
    assert record.error["type"] == "clew.errors.StepNotFoundError"
    assert agent.recover() == []


def test_a_failed_fork_leaves_nothing_behind(store: clew.Store) -> None:
    agent = research_agent(store)
    run = agent.start({}, run_id="r")
    with pytest.raises(UnknownTypeError, match=r"state\.extra"):
        agent.fork(run.checkpoint_id, branch="b", update={"extra": Opaque()})
    assert [b.name for b in store.list_branches("r")] == ["main"]
    assert store.get_branch("r").lease_owner is None


def test_a_dict_update_needs_str_keys(store: clew.Store) -> None:
    agent = research_agent(store)
    run = agent.start({}, run_id="r")
    with pytest.raises(InvalidStateError, match="str"):
        agent.fork(run.checkpoint_id, branch="b", update={1: "x"})
    assert [b.name for b in store.list_branches("r")] == ["main"]


def test_a_run_without_a_first_checkpoint_does_not_poison_recover(stores: StoreFactory, tmp_path: Path) -> None:
    # Agent.start writes the run and its first checkpoint in one transaction; a run
    # made through the store API without a state, whose creator went away, must not
    # block recover() nor be claimed again and again.
    store = stores.open()
    store.create_run("o1", agent="orders", lease_owner="gone", lease_ttl=0.2)
    assert store.get_branch("o1").head is None
    time.sleep(0.25)
    agent = _proc.order_agent(store, tmp_path / "effects")
    agent.recover()  # must not raise: other runs wait behind this one
    assert store.get_run("o1").status == "failed"
    assert "no checkpoint" in store.get_branch("o1").error["message"]  # type: ignore[index]
    assert agent.recover() == []


class Unstorable:
    """A tool result clew cannot encode."""


def test_a_tool_result_clew_cannot_store_fails_the_run_and_names_the_path(store: clew.Store) -> None:
    agent = clew.Agent("tools", state=dict, store=store)
    calls = []

    @agent.step(start=True)
    def fetch(state: dict[str, Any], ctx: clew.Context) -> None:
        state["got"] = ctx.call("fetch", lambda: calls.append(1) or Unstorable())

    with pytest.raises(UnknownTypeError) as info:
        agent.start({}, run_id="r")
    assert "journal[call.outcome]" in str(info.value)
    record = store.get_branch("r")
    assert record.status == "failed" and record.lease_owner is None  # not left for recover() to loop on
    assert agent.recover() == []
    # The call ran but its outcome was not recorded: resuming never runs it silently again.
    paused = agent.resume("r")
    assert paused.status == "paused" and "unknown_outcome" in paused.interrupt
    assert calls == [1]
    assert store.load_state("r", store.get_branch("r").head) == {}

"""Interrupts pause a run durably; resume with an answer; edits of a paused run; restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import clew
from clew.errors import InvalidStateError, RunStatusError
from tests.conftest import StoreFactory
from tests.runtime import _proc
from tests.runtime.conftest import Tools, journal, kinds


def review_agent(store: clew.Store, runs: list[str]) -> clew.Agent[_proc.Order]:
    agent = clew.Agent("review", state=_proc.Order, store=store)

    @agent.step(start=True)
    def draft(state: _proc.Order, ctx: clew.Context) -> str:
        state.charged = "draft"
        return "review"

    @agent.step
    def review(state: _proc.Order, ctx: clew.Context) -> str | None:
        runs.append(ctx.step)
        assert state.approved_by is None  # the state the step started from, on every run of it
        answer = ctx.interrupt({"approve": state.item, "draft": state.charged})
        state.approved_by = answer["by"]
        return "ship" if answer["ok"] else None

    @agent.step
    def ship(state: _proc.Order, ctx: clew.Context) -> None:
        state.shipped = True

    return agent


def test_interrupt_pauses_durably_and_resume_continues_with_the_answer(store: clew.Store) -> None:
    runs: list[str] = []
    agent = review_agent(store, runs)
    run = agent.start(_proc.Order(item="lamp"), run_id="r")
    assert run.status == "paused"
    assert run.interrupt == {"approve": "lamp", "draft": "draft"}
    record = store.get_branch("r")
    assert record.status == "paused" and record.lease_owner is None
    head = agent.history("r")[0]
    assert head.checkpoint_id == run.checkpoint_id
    assert head.kind == "interrupt"
    assert head.metadata["interrupt"] == {"approve": "lamp", "draft": "draft"}
    assert head.metadata["next"] == "review"
    assert agent.state_at(head.checkpoint_id) == _proc.Order(item="lamp", charged="draft")
    assert run.state == _proc.Order(item="lamp", charged="draft")

    run = agent.resume("r", answer={"ok": True, "by": "alice"}, actor="alice")
    assert run.status == "completed"
    assert run.state == _proc.Order(item="lamp", charged="draft", approved_by="alice", shipped=True)
    assert runs == ["review", "review"]  # the step ran again and got its answer
    [answer] = journal(store, "r", "answer")
    assert answer.data["answer"] == {"ok": True, "by": "alice"}
    assert answer.data["actor"] == "alice" and answer.data["index"] == 0
    assert kinds(agent.history("r")) == [
        ("start", None),
        ("step", "draft"),
        ("interrupt", None),
        ("step", "review"),
        ("step", "ship"),
    ]
    review_ckpt = agent.history("r")[1]
    assert answer.checkpoint_id == review_ckpt.checkpoint_id  # sealed into the step it answered
    assert store.verify("r").ok


def test_several_interrupts_in_one_step_are_matched_in_order(store: clew.Store, tools: Tools) -> None:
    agent = clew.Agent("quiz", state=dict, store=store)

    @agent.step(start=True)
    def ask(state: dict[str, Any], ctx: clew.Context) -> None:
        tools.ctx = ctx
        state["context"] = ctx.call("lookup", tools.tool("lookup"), "q")
        state["a"] = ctx.interrupt("first?")
        state["b"] = ctx.interrupt("second?")
        state["c"] = ctx.interrupt("third?")

    run = agent.start({})
    questions = [run.interrupt]
    for answer in ("one", None, ["three"]):
        run = agent.resume(run.run_id, answer=answer, actor="quizmaster")
        questions.append(run.interrupt)
    assert run.status == "completed"
    assert questions == ["first?", "second?", "third?", None]
    assert run.state == {"context": "lookup:q", "a": "one", "b": None, "c": ["three"]}
    assert tools.count("lookup") == 1
    assert [e.data["index"] for e in journal(store, run.run_id, "answer")] == [0, 1, 2]
    assert [k for k, _ in kinds(agent.history(run.run_id))] == ["start", "interrupt", "interrupt", "interrupt", "step"]


def test_a_paused_run_needs_an_answer(store: clew.Store) -> None:
    agent = review_agent(store, [])
    agent.start(_proc.Order(item="lamp"), run_id="r")
    with pytest.raises(RunStatusError, match="answer"):
        agent.resume("r")
    assert store.get_run("r").status == "paused"
    assert store.get_branch("r").lease_owner is None


def test_edit_a_paused_run_then_resume(store: clew.Store) -> None:
    runs: list[str] = []
    agent = review_agent(store, runs)
    paused = agent.start(_proc.Order(item="lamp"), run_id="r")
    ckpt = agent.edit("r", update={"item": "floor lamp"}, actor="bob", reason="customer changed the order")
    assert ckpt.kind == "edit"
    assert ckpt.parent_id == paused.checkpoint_id
    assert (ckpt.metadata["actor"], ckpt.metadata["reason"]) == ("bob", "customer changed the order")
    assert ckpt.metadata["next"] == "review" and ckpt.metadata["interrupt"] == paused.interrupt
    assert agent.state_at(ckpt.checkpoint_id).item == "floor lamp"
    [entry] = store.list_journal("r", checkpoint_id=ckpt.checkpoint_id)
    assert entry.kind == "edit"
    assert entry.data == {"actor": "bob", "reason": "customer changed the order", "fields": ["item"]}
    assert store.get_run("r").status == "paused"
    # Still paused at the same question: the answer continues from the edited state.
    run = agent.resume("r", answer={"ok": True, "by": "alice"}, actor="alice")
    assert run.status == "completed"
    assert run.state.item == "floor lamp" and run.state.approved_by == "alice"
    assert [k for k, _ in kinds(agent.history("r"))] == ["start", "step", "interrupt", "edit", "step", "step"]
    assert store.verify("r").ok


def test_edits_are_validated_and_need_a_paused_run(store: clew.Store) -> None:
    agent = review_agent(store, [])
    paused = agent.start(_proc.Order(item="lamp"), run_id="r")
    with pytest.raises(InvalidStateError, match="shipped"):
        agent.edit("r", update={"shipped": "not a bool"}, actor="bob")
    with pytest.raises(InvalidStateError, match="colour"):
        agent.edit("r", update={"colour": "red"}, actor="bob")
    assert agent.history("r")[0].checkpoint_id == paused.checkpoint_id  # nothing written
    assert store.get_branch("r").lease_owner is None
    agent.resume("r", answer={"ok": False, "by": "alice"})
    with pytest.raises(RunStatusError, match="completed"):
        agent.edit("r", update={"item": "x"})


@pytest.mark.parametrize("where", ["pause-in-child", "resume-in-child"])
def test_a_paused_run_survives_a_restart(shared_stores: StoreFactory, tmp_path: Path, where: str) -> None:
    stores = shared_stores
    log = tmp_path / "effects"
    if where == "pause-in-child":
        _proc.finish(
            _proc.child(
                f"""
                from tests.runtime._proc import Order, order_agent
                with clew.open(URL) as store:
                    run = order_agent(store, Path({str(log)!r})).start(Order(item="lamp"), run_id="o1")
                    assert run.status == "paused", run
                """,
                stores.url,
            )
        )
        store = stores.open()
        assert store.get_run("o1").status == "paused"
        run = _proc.order_agent(store, log).resume("o1", answer={"by": "alice"}, actor="alice")
        state = run.state
    else:
        with clew.open(stores.url) as first:
            assert _proc.order_agent(first, log).start(_proc.Order(item="lamp"), run_id="o1").status == "paused"
        out = _proc.finish(
            _proc.child(
                f"""
                from tests.runtime._proc import Order, order_agent
                with clew.open(URL) as store:
                    run = order_agent(store, Path({str(log)!r})).resume("o1", answer={{"by": "alice"}}, actor="alice")
                    print(run.status)
                """,
                stores.url,
            )
        )
        assert out.strip() == "completed"
        store = stores.open()
        state = _proc.order_agent(store, log).state_at(store.get_branch("o1").head)  # type: ignore[arg-type]
    assert state == _proc.Order(item="lamp", charged="receipt-lamp", approved_by="alice", shipped=True)
    assert store.get_run("o1").status == "completed"
    assert len(_proc.effects(log)) == 1  # the charge before the pause was not repeated
    assert store.verify("o1").ok


def test_an_answer_that_loses_the_race_is_refused(stores: StoreFactory) -> None:
    import threading

    store = stores.open()
    first = review_agent(store, [])
    first.start(_proc.Order(item="lamp"), run_id="r")
    late_store = stores.open()
    late = review_agent(late_store, [])
    late.worker_id = "late"
    read, go = threading.Event(), threading.Event()
    list_branches = late_store.list_branches

    def slow_list_branches(run_id: str) -> list[clew.BranchRecord]:
        records = list_branches(run_id)
        if threading.current_thread().name == "late" and not read.is_set():
            read.set()  # the late worker saw the branch paused...
            assert go.wait(10)  # ...and stalls while the first answer wins
        return records

    late_store.list_branches = slow_list_branches  # type: ignore[method-assign]
    out: dict[str, object] = {}

    def answer_late() -> None:
        try:
            out["run"] = late.resume("r", answer={"ok": True, "by": "mallory"}, actor="mallory")
        except RunStatusError as exc:
            out["error"] = exc

    t = threading.Thread(target=answer_late, name="late")
    t.start()
    assert read.wait(10)
    won = first.resume("r", answer={"ok": False, "by": "alice"}, actor="alice")
    go.set()
    t.join(10)
    assert won.status == "completed" and won.state.approved_by == "alice"
    assert isinstance(out.get("error"), RunStatusError), out
    assert store.list_journal("r", pending_on="main") == []
    assert store.get_run("r").status == "completed"

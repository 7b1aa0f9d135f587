"""Actions from the pages: bad input gets a clear error and leaves the store as it was."""

from __future__ import annotations

from pathlib import Path

import clew
from clew.web import load_agent
from tests.web._agents import make_agent
from tests.web.conftest import client_for, csrf_of


def test_a_fork_edit_the_state_type_rejects_writes_nothing(demo_copy: Path) -> None:
    with clew.open(f"sqlite:///{demo_copy}") as store:
        c = client_for(store, agent=load_agent("clew.examples.support_agent:make_agent", store))
        token = csrf_of(c)
        run = c.get("/api/v1/runs/ticket-c42").json()
        billing = next(x for x in run["checkpoints"] if x["step"] == "lookup_billing")["checkpoint_id"]
        before = [b.head for b in store.list_branches("ticket-c42")]
        for update, words in [
            ('{"no_such_field": 1}', "does not have"),
            ('{"articles": "not a list"}', "articles"),
            ('["strategy"]', "JSON object"),
            ('{"strategy": ', "not valid JSON"),
        ]:
            r = c.post(
                "/actions/fork",
                data={
                    "csrf": token,
                    "run_id": "ticket-c42",
                    "checkpoint_id": billing,
                    "branch": "x",
                    "update": update,
                    "actor": "eve",
                    "run": "on",
                },
            )
            assert r.status_code == 400, (update, r.status_code)
            assert words in r.text, (update, r.text[-800:])
        r = c.post(
            "/actions/fork",
            data={
                "csrf": token,
                "run_id": "ticket-c42",
                "checkpoint_id": billing,
                "branch": "x",
                "update": "{}",
                "actor": " ",
            },
        )
        assert r.status_code == 400 and "actor" in r.text
        assert [b.head for b in store.list_branches("ticket-c42")] == before
        assert store.load_state("ticket-c42", before[0])["sent"] is True  # the last good checkpoint loads
        assert store.verify("ticket-c42").ok


def test_resuming_a_completed_run_is_a_conflict_and_changes_nothing(store: clew.Store) -> None:
    agent = make_agent(store)
    agent.start({"q": "a"}, run_id="r1")
    agent.resume("r1", {"ok": True}, actor="ann")
    head = store.get_branch("r1").head
    c = client_for(store, agent=make_agent)
    token = csrf_of(c)
    r = c.post("/actions/resume", data={"csrf": token, "run_id": "r1", "answer": "1", "actor": "bo"})
    assert r.status_code == 409 and "completed" in r.text
    assert store.get_branch("r1").head == head and store.get_run("r1").status == "completed"
    r = c.post("/actions/resume", data={"csrf": token, "run_id": "nope", "answer": "1", "actor": "bo"})
    assert r.status_code == 404


def test_cancel_records_actor_and_reason(store: clew.Store) -> None:
    make_agent(store).start({"q": "a"}, run_id="r1")
    c = client_for(store, agent=make_agent)
    assert 'action="/actions/cancel"' in c.get("/runs/r1").text
    token = csrf_of(c)
    form = {"csrf": token, "run_id": "r1", "branch": "main", "actor": "ann"}
    r = c.post("/actions/cancel", data={**form, "reason": ""})
    assert r.status_code == 400 and "reason" in r.text
    assert store.get_branch("r1").status == "paused"
    r = c.post("/actions/cancel", data={**form, "reason": "a duplicate ticket"})
    assert r.status_code == 303, r.text
    assert store.get_branch("r1").status == "cancelled" and store.get_run("r1").status == "cancelled"
    entry = next(j for j in store.list_journal("r1") if j.kind == "cancel")
    assert (entry.data["actor"], entry.data["reason"], entry.data["was"]) == ("ann", "a duplicate ticket", "paused")
    page = c.get("/runs/r1").text
    assert 'cancelled</b> by <span class="actor">ann</span>: “a duplicate ticket”' in page
    r = c.post("/actions/cancel", data={**form, "reason": "again"})
    assert r.status_code == 409 and "already cancelled" in r.text

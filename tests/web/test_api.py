"""The JSON API against its OpenAPI schema: every route documented, every answer valid."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from starlette.routing import Route

import clew
from clew.web import create_app
from tests.web._agents import make_agent
from tests.web.conftest import client_for, csrf_of

SCHEMA = json.loads((Path(clew.__file__).parent / "web" / "openapi.json").read_text())


def check(body: Any, path: str, method: str, status: int) -> None:
    """Validate ``body`` against the schema's response for ``method path status``."""
    op = SCHEMA["paths"][path][method]
    assert str(status) in op["responses"], f"{method.upper()} {path} answered {status}, which the schema does not list"
    schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
    resolver_doc = {**schema, "components": SCHEMA["components"]}
    jsonschema.validate(body, resolver_doc, cls=jsonschema.Draft202012Validator)


def test_schema_is_valid_openapi_shape() -> None:
    assert SCHEMA["openapi"].startswith("3.1")
    jsonschema.Draft202012Validator.check_schema({"$defs": SCHEMA["components"]["schemas"]})
    for path, ops in SCHEMA["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] and op["summary"], (method, path)
            for ref in re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(op)):
                assert ref in SCHEMA["components"]["schemas"], ref


def test_every_api_route_is_documented_and_every_documented_path_exists(store: clew.Store) -> None:
    app = create_app(store)
    served = set()
    for r in app.routes:
        if isinstance(r, Route) and r.path.startswith("/api/v1"):
            for m in r.methods or ():
                if m != "HEAD":
                    served.add((re.sub(r"\{(\w+):path\}", r"{\1}", r.path), m.lower()))
    documented = {(p, m) for p, ops in SCHEMA["paths"].items() for m in ops}
    assert served == documented


def test_read_answers_match_the_schema(demo_db: Path) -> None:
    with clew.open(f"sqlite:///{demo_db}") as store:
        c = client_for(store)
        r = c.get("/api/v1/runs")
        check(r.json(), "/api/v1/runs", "get", 200)
        assert [x["run_id"] for x in r.json()["items"]] == ["ticket-c42"]
        run = c.get("/api/v1/runs/ticket-c42").json()
        check(run, "/api/v1/runs/{run_id}", "get", 200)
        assert {b["name"]: b["status"] for b in run["branches"]} == {"main": "completed", "refund": "completed"}
        cid = next(x["checkpoint_id"] for x in run["checkpoints"] if x["kind"] == "fork")
        first = run["checkpoints"][0]["checkpoint_id"]
        for url, path in [
            (f"/api/v1/checkpoints/{cid}", "/api/v1/checkpoints/{checkpoint_id}"),
            (f"/api/v1/checkpoints/{cid}?run=ticket-c42", "/api/v1/checkpoints/{checkpoint_id}"),
            (f"/api/v1/checkpoints/{cid}/diff", "/api/v1/checkpoints/{checkpoint_id}/diff"),
            (f"/api/v1/checkpoints/{cid}/diff?against={first}", "/api/v1/checkpoints/{checkpoint_id}/diff"),
            (f"/api/v1/checkpoints/{cid}/value?path=/billing", "/api/v1/checkpoints/{checkpoint_id}/value"),
            ("/api/v1/compare?run=ticket-c42&a=main&b=refund", "/api/v1/compare"),
            ("/api/v1/verify/ticket-c42", "/api/v1/verify/{run_id}"),
            ("/api/v1/info", "/api/v1/info"),
        ]:
            r = c.get(url)
            assert r.status_code == 200, (url, r.text)
            check(r.json(), path, "get", 200)
        diff = c.get(f"/api/v1/checkpoints/{cid}/diff").json()
        assert diff["changes"] == [{"path": "strategy", "change": "changed", "before": "explain", "after": "refund"}]
        cmp = c.get("/api/v1/compare?run=ticket-c42&a=main&b=refund").json()
        assert {ch["path"] for ch in cmp["changes"]} == {"approved_by", "draft", "strategy"}
        assert cmp["fork_point"] == c.get(f"/api/v1/checkpoints/{cid}").json()["checkpoint"]["parent_id"]


def test_error_answers_match_the_schema(store: clew.Store) -> None:
    c = client_for(store)
    for url, path, status in [
        ("/api/v1/runs/nope", "/api/v1/runs/{run_id}", 404),
        ("/api/v1/checkpoints/nope", "/api/v1/checkpoints/{checkpoint_id}", 404),
        ("/api/v1/runs?since=yesterday-ish", "/api/v1/runs", 400),
        ("/api/v1/runs?label=nokey", "/api/v1/runs", 400),
        ("/api/v1/compare?run=x", "/api/v1/compare", 400),
    ]:
        r = c.get(url)
        assert r.status_code == status, (url, r.text)
        check(r.json(), path, "get", status)
    token = csrf_of(c)
    r = c.post("/api/v1/actions/resume", json={"run_id": "x", "actor": "a"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 403  # no agent: the action is off
    check(r.json(), "/api/v1/actions/resume", "post", 403)
    assert "--agent" in r.json()["error"]["message"]


def test_actions_through_the_api(store: clew.Store) -> None:
    agent = make_agent(store)
    run = agent.start({"q": "invoice"}, run_id="r1")
    assert run.status == "paused"
    c = client_for(store, agent=make_agent)
    token = csrf_of(c)
    h = {"X-CSRF-Token": token}
    r = c.post("/api/v1/actions/resume", json={"run_id": "r1", "answer": {"ok": True}, "actor": "ann"}, headers=h)
    assert r.status_code == 200, r.text
    check(r.json(), "/api/v1/actions/resume", "post", 200)
    assert r.json()["status"] == "completed"
    start = agent.history("r1")[-1]
    r = c.post(
        "/api/v1/actions/fork",
        json={
            "run_id": "r1",
            "checkpoint_id": start.checkpoint_id,
            "branch": "again",
            "update": {"q": "refund"},
            "actor": "bo",
            "reason": "try refunds",
            "run": True,
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    check(r.json(), "/api/v1/actions/fork", "post", 200)
    assert r.json()["status"] == "paused"
    r = c.post("/api/v1/actions/resume", json={"run_id": "r1", "actor": "ann", "answer": 1}, headers={})
    assert r.status_code == 403  # no CSRF token
    r = c.post("/api/v1/actions/fork", content=b"{not json", headers=h)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    check(r.json(), "/api/v1/actions/fork", "post", 400)
    # The store, through the Python API, holds what the actions did.
    assert store.get_branch("r1", "again").head is not None
    assert agent.state_at(store.get_branch("r1", "again").head, run_id="r1")["q"] == "refund"
    fork_entry = next(j for j in store.list_journal("r1") if j.kind == "fork")
    assert fork_entry.data["actor"] == "bo" and fork_entry.data["reason"] == "try refunds"
    answer = next(j for j in store.list_journal("r1") if j.kind == "answer")
    assert answer.data["actor"] == "ann" and answer.data["answer"] == {"ok": True}


@pytest.mark.parametrize("limit", [1, 3])
def test_runs_paging_walks_every_run_once(store: clew.Store, limit: int) -> None:
    for i in range(7):
        store.create_run(f"run-{i}", agent="a" if i % 2 else "b", labels={"team": "x" if i < 4 else "y"})
    c = client_for(store)
    seen, cursor = [], None
    while True:
        body = c.get("/api/v1/runs", params={"limit": limit, **({"cursor": cursor} if cursor else {})}).json()
        check(body, "/api/v1/runs", "get", 200)
        seen += [x["run_id"] for x in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"run-{i}" for i in reversed(range(7))]
    assert [x["run_id"] for x in c.get("/api/v1/runs?agent=a").json()["items"]] == ["run-5", "run-3", "run-1"]
    assert [x["run_id"] for x in c.get("/api/v1/runs?label=team=y&agent=b").json()["items"]] == ["run-6", "run-4"]
    assert [x["run_id"] for x in c.get("/api/v1/runs?q=run-3").json()["items"]] == ["run-3"]
    assert len(c.get("/api/v1/runs?q=run-").json()["items"]) == 7
    assert c.get("/api/v1/runs?since=1h").json()["items"] and not c.get("/api/v1/runs?since=2999-01-01").json()["items"]
    assert not c.get("/api/v1/runs?until=1h").json()["items"] and c.get("/api/v1/runs?until=2999-01-01").json()["items"]


def test_runs_by_a_branchs_status(store: clew.Store) -> None:
    agent = make_agent(store)
    agent.start({"q": "a"}, run_id="waiting")
    agent.start({"q": "b"}, run_id="forked")
    agent.resume("forked", {"ok": 1}, actor="ann")
    start = agent.history("forked")[-1].checkpoint_id
    agent.fork(start, branch="again", actor="bo", reason="retry")  # pauses on the new branch
    store.create_run("idle", agent="helper")
    c = client_for(store)
    body = c.get("/api/v1/runs?branch_status=paused").json()
    check(body, "/api/v1/runs", "get", 200)
    assert [r["run_id"] for r in body["items"]] == ["forked", "waiting"]
    assert [r["run_id"] for r in c.get("/api/v1/runs?status=running").json()["items"]] == ["idle"]
    assert "forked" in c.get("/?branch_status=paused").text

"""Safe by default: user strings escaped, CSRF on actions, a token beyond localhost, read-only mode."""

from __future__ import annotations

from starlette.testclient import TestClient

import clew
from clew.web import create_app
from tests.web._agents import make_agent
from tests.web.conftest import client_for, csrf_of

EVIL = '<script>alert("x")</script>'
QUOTED_ID = "run\"'><img src=x onerror=alert(1)>"


def _evil_store(store: clew.Store) -> str:
    agent = make_agent(store)
    agent.start({"q": EVIL, "note": EVIL * 100, "items": [EVIL] * 120}, run_id=QUOTED_ID, labels={"who": EVIL})
    return QUOTED_ID


def test_a_script_in_state_and_quotes_in_an_id_render_as_text(store: clew.Store) -> None:
    run_id = _evil_store(store)
    c = client_for(store, agent=make_agent)
    head = store.get_branch(run_id).head
    pages = [
        c.get("/"),
        c.get("/?q=" + EVIL),
        c.get("/runs/" + run_id),
        c.get(f"/checkpoints/{head}?run={run_id}"),
        c.get(f"/checkpoints/{head}?run={run_id}&path=/items&offset=50"),
        c.get(f"/compare?run={run_id}&a=main&b=main"),
        c.get("/runs/" + EVIL),  # a 404 page that names the id
    ]
    for page in pages:
        assert "<script>alert" not in page.text, page.url
        assert "<img src=x" not in page.text, page.url
        assert "onerror=alert(1)>" not in page.text.replace("onerror=alert(1)&gt;", ""), page.url
    run_page = pages[2].text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in pages[3].text  # shown, as text
    assert "run&#34;&#39;&gt;&lt;img src=x onerror=alert(1)&gt;" in run_page
    assert pages[6].status_code == 404


def test_forms_without_the_csrf_token_change_nothing(store: clew.Store) -> None:
    agent = make_agent(store)
    agent.start({"q": "a"}, run_id="r1")
    c = client_for(store, agent=make_agent)
    token = csrf_of(c)
    before = store.get_branch("r1").head
    r = c.post("/actions/resume", data={"run_id": "r1", "answer": "true", "actor": "eve"})
    assert r.status_code == 403 and "CSRF" in r.text
    r = c.post("/actions/resume", data={"run_id": "r1", "answer": "true", "actor": "eve", "csrf": "forged"})
    assert r.status_code == 403
    r = c.post(
        "/actions/resume",
        data={"run_id": "r1", "answer": "true", "actor": "eve", "csrf": token},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403  # a cross-origin post, even with a token
    assert store.get_branch("r1").head == before
    assert store.get_run("r1").status == "paused"
    r = c.post("/actions/resume", data={"run_id": "r1", "answer": "true", "actor": "ann", "csrf": token})
    assert r.status_code == 303 and r.headers["location"].startswith("/runs/r1?done=")
    assert store.get_run("r1").status == "completed"


def test_a_token_is_required_when_one_is_set(store: clew.Store) -> None:
    store.create_run("r1", agent="a")
    c = TestClient(create_app(store, token="s3cret"), follow_redirects=False, base_url="http://10.1.2.3:8765")
    assert c.get("/").status_code == 401
    assert c.get("/api/v1/runs").status_code == 401
    assert c.get("/?token=wrong").status_code == 401
    r = c.get("/runs/r1?token=s3cret")
    assert r.status_code == 303 and r.headers["location"] == "/runs/r1"  # the token leaves the URL for a cookie
    assert c.get("/runs/r1").status_code == 200
    bare = TestClient(create_app(store, token="s3cret"), base_url="http://10.1.2.3:8765")
    assert bare.get("/api/v1/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_without_a_token_only_localhost_names_are_served(store: clew.Store) -> None:
    app = create_app(store)
    assert TestClient(app, base_url="http://127.0.0.1:8765").get("/").status_code == 200
    assert TestClient(app, base_url="http://localhost:8765").get("/").status_code == 200
    # A DNS-rebinding page reaches 127.0.0.1 under its own name: refused.
    assert TestClient(app, base_url="http://attacker.example:8765").get("/").status_code == 403


def test_read_only_turns_every_action_off(store: clew.Store) -> None:
    agent = make_agent(store)
    agent.start({"q": "a"}, run_id="r1")
    c = client_for(store, agent=make_agent, read_only=True)
    page = c.get("/runs/r1").text
    assert 'action="/actions/resume"' not in page and "read-only mode" in page
    head = store.get_branch("r1").head
    assert 'action="/actions/fork"' not in c.get(f"/checkpoints/{head}").text
    token = csrf_of(c)
    r = c.post("/actions/resume", data={"run_id": "r1", "answer": "true", "actor": "ann", "csrf": token})
    assert r.status_code == 403
    r = c.post(
        "/api/v1/actions/fork",
        json={"run_id": "r1", "checkpoint_id": head, "branch": "b", "actor": "x"},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 403 and "read-only" in r.json()["error"]["message"]
    assert store.get_run("r1").status == "paused" and [b.name for b in store.list_branches("r1")] == ["main"]


def test_without_an_agent_actions_say_how_to_turn_them_on(store: clew.Store) -> None:
    agent = make_agent(store)
    agent.start({"q": "a"}, run_id="r1")
    page = client_for(store).get("/runs/r1").text
    assert 'action="/actions/resume"' not in page
    assert "--agent module:attr" in page

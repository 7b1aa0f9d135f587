"""The pages: state trees paged and folded, nested diffs, comparisons, verify status, filters and paging."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import clew
from clew.web._diff import MISSING, changes
from tests.web._agents import make_agent
from tests.web.conftest import client_for

BIG = "x" * 150_000


def _items(html: str) -> list[str]:
    return re.findall(r'<li value="(\d+)">', html)


def test_long_lists_are_paged_and_long_strings_folded(store: clew.Store) -> None:
    agent = make_agent(store)
    agent.start({"q": "a", "items": [f"item {i}" for i in range(120)], "essay": "word " * 200, "big": BIG}, run_id="r1")
    head = store.get_branch("r1").head
    c = client_for(store)
    page = c.get(f"/checkpoints/{head}?run=r1").text
    assert _items(page)[:1] == ["0"] and "items 50-99 of 120" in page
    assert len([i for i in _items(page) if int(i) < 120]) >= 50 and "item 50" not in page
    more = re.search(r'href="([^"]+offset=50)"', page)
    assert more, "no link to the next items"
    second = c.get(more.group(1).replace("&amp;", "&")).text
    assert '"item 50"' in second and '"item 99"' in second and '"item 100"' not in second
    assert "items 100-119 of 120" in second
    last = c.get(f"/checkpoints/{head}?run=r1&path=/items&offset=100", headers={"X-Fragment": "1"}).text
    assert "<html" not in last and '"item 119"' in last and "offset=150" not in last
    # A long string is folded behind its first characters; a huge one is cut, with a link to all of it.
    assert '<details class="fold">' in page and "(1000 characters)" in page
    assert "(150000 characters)" in page and "cut at 100000 characters" in page
    assert BIG not in page
    whole = c.get(f"/api/v1/checkpoints/{head}/value?run=r1&path=/big").json()
    assert whole["total"] == 150_000 and whole["value"] == BIG
    part = c.get(f"/api/v1/checkpoints/{head}/value?run=r1&path=/items&offset=110&limit=5").json()
    assert part["value"] == [f"item {i}" for i in range(110, 115)] and part["total"] == 120
    assert c.get(f"/api/v1/checkpoints/{head}/value?run=r1&path=/nope").status_code == 404


def test_nested_diffs_name_paths_and_list_appends() -> None:
    before = {"msgs": ["a", "b"], "user": {"name": "ann", "tags": ["x"]}, "n": 1}
    after = {"msgs": ["a", "b", "c", "d"], "user": {"name": "bob", "tags": ["x"], "age": 3}, "n": 1}
    out = changes("state", before, after)
    assert {"path": "state.msgs", "change": "appended 2", "before": None, "after": ["c", "d"]} in out
    assert {"path": "state.user.name", "change": "changed", "before": "ann", "after": "bob"} in out
    assert {"path": "state.user.age", "change": "added", "before": None, "after": 3} in out
    assert len(out) == 3
    assert changes("l", ["a", "b", "c"], ["a"]) == [
        {"path": "l", "change": "removed 2 from the end", "before": ["b", "c"], "after": None}
    ]
    assert changes("l", ["a", "b", "c"], ["a", "x", "c"]) == [
        {"path": "l[1]", "change": "changed", "before": "b", "after": "x"}
    ]
    assert changes("l", ["a", "b", "c"], ["x", "c"]) == [
        {"path": "l", "change": "removed 2", "before": ["a", "b"], "after": None},
        {"path": "l", "change": "added 1", "before": None, "after": ["x"]},
    ]
    assert changes("f", MISSING, 1)[0]["change"] == "added"
    assert len(changes("m", {str(i): i for i in range(500)}, {str(i): -i for i in range(500)})) == 201


def test_diff_against_any_checkpoint_and_compare_two_runs(store: clew.Store) -> None:
    agent = make_agent(store)
    agent.start({"q": "one"}, run_id="r1")
    agent.resume("r1", {"ok": 1}, actor="ann")
    agent.start({"q": "two"}, run_id="r2")
    c = client_for(store)
    first = agent.history("r1")[-1].checkpoint_id
    head = store.get_branch("r1").head
    page = c.get(f"/checkpoints/{head}?run=r1&against={first}").text
    assert "<td><code>answer</code></td><td>added</td>" in page and "<code>found</code>" in page
    body = c.get("/api/v1/compare?run=r1&a=main&b_run=r2&b=main").json()
    assert body["fork_point"] is None
    assert {ch["path"] for ch in body["changes"]} == {"answer", "found", "q"}
    assert body["a"]["status"] == "completed" and body["b"]["status"] == "paused"
    html = c.get("/compare?run=r1&a=main&b_run=r2&b=main").text
    assert "r1 · main" in html and "r2 · main" in html


def test_verify_status_shows_a_changed_byte(store: clew.Store, tmp_path: Path) -> None:
    agent = make_agent(store)
    agent.start({"q": "a"}, run_id="r1")
    c = client_for(store)
    head = store.get_branch("r1").head
    assert "checks out" in c.get(f"/checkpoints/{head}?run=r1").text
    start = agent.history("r1")[-1].checkpoint_id
    db = sqlite3.connect(tmp_path / "ui.db", isolation_level=None)
    table = next(
        n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'") if n.endswith("checkpoints")
    )
    (meta,) = db.execute(f"SELECT meta FROM {table} WHERE checkpoint_id = ?", (start,)).fetchone()
    db.execute(
        f"UPDATE {table} SET meta = ? WHERE checkpoint_id = ?", (bytes(meta[:-1]) + bytes([meta[-1] ^ 1]), start)
    )
    db.close()
    page = c.get(f"/checkpoints/{head}?run=r1").text
    assert "problems on this chain" in page and start in page
    assert c.get("/api/v1/verify/r1").json()["ok"] is False
    assert store.load_state("r1", head)["found"] == "result for a"  # the last good state still loads


def test_runs_page_filters_and_pages(store: clew.Store) -> None:
    for i in range(5):
        store.create_run(f"run-{i}", agent="bot", labels={"env": "prod" if i % 2 else "dev"})
    c = client_for(store)
    page = c.get("/?limit=2").text
    assert "run-4" in page and "run-3" in page and "run-2" not in page
    older = re.search(r'href="(/\?[^"]*cursor=[^"]+)" rel="next"', page)
    assert older
    page2 = c.get(older.group(1).replace("&amp;", "&")).text
    assert "run-2" in page2 and "run-1" in page2 and "run-4" not in page2 and "« newest" in page2
    labelled = c.get("/?label=env%3Dprod").text
    assert "run-3" in labelled and "run-1" in labelled and "run-2" not in labelled
    assert "no runs match" in c.get("/?agent=nobody").text
    assert all(f"run-{i}" in c.get("/?q=run-").text for i in range(5))
    assert "run-3" in c.get("/?q=run-3").text and "run-4" not in c.get("/?q=run-3").text
    assert c.get("/?since=soon").status_code == 400


def test_a_run_page_shows_priority_and_each_claim_with_its_reason(store: clew.Store) -> None:
    agent = make_agent(store)
    rid = agent.enqueue({"q": "a"}, run_id="queued", priority=3)
    owner = '<b id="x">w"1</b>'  # worker ids are text: shown as text
    (lease,) = store.claim_expired(owner=owner, ttl=30, agent="helper")
    c = client_for(store)
    page = c.get(f"/runs/{rid}").text
    assert "priority 3" in page
    assert "claimed from the queue" in page and "queued" in page and f"epoch {lease.epoch}" in page
    assert '<b id="x">' not in page and "&lt;b id=&#34;x&#34;&gt;w&#34;1&lt;/b&gt;" in page
    body = c.get(f"/api/v1/runs/{rid}").json()
    (main,) = body["branches"]
    assert main["priority"] == 3
    (pending,) = main["pending"]  # the claim, recorded with the lease, sealed by the next checkpoint
    assert pending["kind"] == "lease" and pending["data"]["owner"] == owner and pending["data"]["reason"] == "queued"

"""End to end in real headless Chromium: the demo's run, its tree, a diff, a comparison, a resume, a fork, a cancel.

Debian's ``chromium`` driven by Playwright through its executable path (no browser
download). Screenshots of each page go to test-artifacts/inspector/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import clew
from clew.examples import support_agent as demo
from tests.conftest import IN_CI
from tests.web.conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "inspector"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    path = os.environ.get("CLEW_CHROMIUM") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        msg = f"Chromium not found at {path}: apt install chromium, or set CLEW_CHROMIUM (scripts/check does)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def site(demo_copy: Path, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """`clew ui` over a copy of the demo's store, with a second ticket paused for review."""
    counters = tmp_path / "counters"
    counters.write_text("kb\nkb\n")  # the knowledge base's outage is over
    env = {**os.environ, "CLEW_DEMO_COUNTERS": str(counters)}
    demo.COUNTERS = counters
    with clew.open(f"sqlite:///{demo_copy}") as store:
        run = demo.make_agent(store).start(
            demo.Ticket(customer_id="c-77", question="Where is my invoice?"), run_id="ticket-c77"
        )
        assert run.status == "paused"
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clew.cli",
            "ui",
            "--db",
            str(demo_copy),
            "--port",
            str(port),
            "--agent",
            "clew.examples.support_agent:make_agent",
            "--run",
            "ticket-c42",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/runs/ticket-c42" in line, line
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "clew ui did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", demo_copy, counters
    finally:
        proc.terminate()
        proc.wait(10)


def test_inspect_compare_resume_and_fork_in_chromium(site: tuple[str, Path, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, db, counters = site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with clew.open(f"sqlite:///{db}") as store:  # the demo's worker was SIGKILLed; recover() took the run over
        (takeover,) = [e.data for e in store.list_journal("ticket-c42") if e.kind == "lease"]
    assert takeover["reason"] == "lease expired" and takeover["previous_owner"] != takeover["owner"]

    def shot(page: object, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        # The runs list, live-refreshed from /api/v1/runs.
        page.goto(base + "/")
        expect(page.get_by_role("link", name="ticket-c42")).to_be_visible()
        expect(page.get_by_role("link", name="ticket-c77")).to_be_visible()
        page.wait_for_function("document.getElementById('runs').hasAttribute('data-refreshed')", timeout=10_000)
        expect(page.get_by_role("link", name="ticket-c42")).to_be_visible()
        shot(page, "1-runs")

        # The demo's run: two branches, completed.
        page.get_by_role("link", name="ticket-c42").click()
        expect(page.locator("h1")).to_contain_text("ticket-c42")
        expect(page.locator("#branch-refund")).to_contain_text("completed")
        expect(page.locator("svg.tree a.node")).to_have_count(11)
        # Why the run resumed where it did: the takeover, in the timeline of the step it resumed with.
        ev = page.locator(".timeline .ev.takeover")
        expect(ev).to_have_count(1)
        expect(ev).to_contain_text("taken over")
        expect(ev).to_contain_text(f"from {takeover['previous_owner']}: lease expired")
        expect(ev).to_contain_text(f"by {takeover['owner']} (epoch {takeover['epoch']})")
        expect(ev.get_by_role("link")).to_have_attribute("href", f"#c-{takeover['head']}")
        shot(page, "2-run")

        # Follow the tree to the fork: bob's, with his reason; the diff against its parent.
        page.locator("svg.tree a.node.k-fork").click()
        expect(page.locator("h1")).to_contain_text("Fork checkpoint")
        expect(page.locator(".meta")).to_contain_text("customer asked twice; try a refund")
        expect(page.locator("table.diff").first).to_contain_text("strategy")
        expect(page.locator("table.diff").first).to_contain_text('"refund"')
        expect(page.locator(".verify")).to_contain_text("checks out")
        shot(page, "3-checkpoint")

        # A diff against another checkpoint: main's last one.
        page.locator("select[name=against]").select_option(label="#6 main step send_reply")
        page.get_by_role("button", name="diff").click()
        other = page.locator("#diff-other ~ table.diff")
        expect(other).to_contain_text("sent")
        expect(other).to_contain_text("approved_by")
        shot(page, "4-diff")

        # Compare the two branches side by side.
        page.goto(base + "/runs/ticket-c42")
        page.get_by_role("link", name="compare with main").click()
        expect(page.locator("table.diff")).to_contain_text("draft")
        expect(page.locator(".side")).to_have_count(2)
        expect(page.locator(".side").nth(1)).to_contain_text("fork by bob")
        shot(page, "5-compare")

        # Resume the paused ticket with an answer (bad JSON is caught before sending).
        page.goto(base + "/runs/ticket-c77")
        expect(page.locator("#branch-main")).to_contain_text("paused")
        form = page.locator("form[action='/actions/resume']")
        form.locator("textarea[name=answer]").fill('{"approved": tru')
        expect(form.get_by_role("button")).to_be_disabled()
        form.locator("textarea[name=answer]").fill('{"approved": true, "reviewer": "carol"}')
        form.locator("input[name=actor]").fill("carol")
        shot(page, "6-resume-form")
        form.get_by_role("button").click()
        expect(page.locator(".flash")).to_contain_text("resumed main: now completed")
        expect(page.locator("#branch-main")).to_contain_text("completed")
        shot(page, "7-resumed")

        # Fork from the billing checkpoint with a state edit.
        page.locator("svg.tree a.node.k-step", has_text="lookup_billing").click()
        fork = page.locator("form[action='/actions/fork']")
        fork.locator("input[name=branch]").fill("refund")
        fork.locator("textarea[name=update]").fill('{"strategy": "refund"}')
        fork.locator("input[name=actor]").fill("dave")
        fork.locator("input[name=reason]").fill("customer asked for a refund")
        fork.get_by_role("button", name="fork").click()
        expect(page.locator(".flash")).to_contain_text("forked refund: now paused")
        expect(page.locator("#branch-refund")).to_contain_text("paused")
        shot(page, "8-forked")

        # Cancel the new branch, with who and why.
        cancel = page.locator("#branch-refund ~ tr.action-row form[action='/actions/cancel']").first
        cancel.locator("input[name=actor]").fill("erin")
        cancel.locator("input[name=reason]").fill("customer withdrew the request")
        cancel.get_by_role("button").click()
        expect(page.locator(".flash")).to_contain_text("cancelled refund")
        expect(page.locator("#branch-refund")).to_contain_text("cancelled")
        expect(page.locator(".timeline")).to_contain_text("customer withdrew the request")
        shot(page, "9-cancelled")
        browser.close()
    assert errors == []

    # The store, read through the Python API, holds what the browser did.
    with clew.open(f"sqlite:///{db}") as store:
        assert {b.name for b in store.list_branches("ticket-c77")} == {"main", "refund"}
        journal = store.list_journal("ticket-c77")
        answer = next(j for j in journal if j.kind == "answer")
        assert answer.data["actor"] == "carol"
        assert answer.data["answer"] == {"approved": True, "reviewer": "carol"}
        fork = next(j for j in journal if j.kind == "fork")
        assert (fork.data["actor"], fork.data["reason"], fork.data["fields"]) == (
            "dave",
            "customer asked for a refund",
            ["strategy"],
        )
        main_state = store.load_state("ticket-c77", store.get_branch("ticket-c77", "main").head)
        assert main_state["approved_by"] == "carol" and main_state["sent"] is True
        refund = store.get_checkpoint("ticket-c77", store.get_branch("ticket-c77", "refund").head)
        assert refund.kind == "interrupt"
        assert store.load_state("ticket-c77", refund.checkpoint_id)["strategy"] == "refund"
        assert store.get_branch("ticket-c77", "refund").status == "cancelled"
        assert store.get_branch("ticket-c77", "main").status == "completed"
        cancelled = next(j for j in store.list_journal("ticket-c77") if j.kind == "cancel")
        assert (cancelled.data["actor"], cancelled.data["reason"]) == ("erin", "customer withdrew the request")
        assert store.verify("ticket-c77").ok and store.verify("ticket-c42").ok
    assert counters.read_text().split().count("email") == 1  # one reply sent, by the resume

"""The examples run end to end: the support-agent demo crashes a worker, recovers, pauses, forks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import clew

ROOT = Path(__file__).resolve().parents[1]


def test_support_agent_demo(tmp_path: Path) -> None:
    db = tmp_path / "support.db"
    env = {**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "120"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "support_agent.py"), "--db", str(db)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "killed" in done.stdout and "verify: OK" in done.stdout
    assert "clew ui --db " in done.stdout and ":make_agent --run ticket-c42" in done.stdout  # the inspector's command
    # The trail it left is whole and tells the story.
    with clew.open(f"sqlite:///{db}") as store:
        run = store.get_run("ticket-c42")
        assert run.status == "completed"
        assert {b.name for b in store.list_branches("ticket-c42")} == {"main", "refund"}
        assert store.verify("ticket-c42").ok
        kinds = [c.kind for c in store.list_checkpoints("ticket-c42").items]
        assert kinds.count("interrupt") == 1 and "start" in kinds

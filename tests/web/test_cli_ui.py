"""`clew ui`: localhost by default; beyond it, a token made and printed; a bad --agent is a clear error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

import clew
from tests.web.conftest import ROOT
from tests.web.test_browser import _free_port


def _start(db: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "clew.cli", "ui", "--db", str(db), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline()]
    if "token" in lines[0] and "http" not in lines[0]:
        lines.append(proc.stdout.readline())
    return proc, lines


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_binding_beyond_localhost_makes_and_prints_a_token(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with clew.open(f"sqlite:///{db}") as s:
        s.create_run("r1", agent="a")
    port = _free_port()
    proc, lines = _start(db, "--host", "0.0.0.0", "--port", str(port))
    try:
        assert "needs this token" in lines[0]
        m = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", lines[1])
        assert m and int(m.group(1)) == port, lines
        token = m.group(2)
        base = f"http://127.0.0.1:{port}"
        _wait(base + "/api/v1/info")
        assert httpx.get(base + "/api/v1/runs").status_code == 401
        ok = httpx.get(base + "/api/v1/runs", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["items"][0]["run_id"] == "r1"
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_bad_agent_spec_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    clew.open(f"sqlite:///{db}").close()
    for spec, words in [
        ("nocolon", "module:attr"),
        ("no_such_module_xyz:make", "cannot import"),
        ("tests.web._agents:nothing_here", "has no 'nothing_here'"),
        ("tests.web._agents:clew", "not a clew.Agent"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "clew.cli", "ui", "--db", str(db), "--agent", spec],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert words in proc.stderr, proc.stderr

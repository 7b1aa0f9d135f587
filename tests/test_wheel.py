"""The built package works on its own: a wheel installed in a fresh venv runs `clew demo` outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import clew

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "CLEW_URL", "CLEW_STORE")}
    env["COLUMNS"] = "120"
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_demo(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT, cwd=tmp_path)
    [wheel] = dist.glob("clew-*.whl")
    venv.create(tmp_path / "venv", with_pip=True)
    py = tmp_path / "venv" / "bin" / "python"
    _run(py, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"  # no examples/ here, no checkout anywhere near
    elsewhere.mkdir()
    where = _run(py, "-c", "import clew; print(clew.__file__)", cwd=elsewhere).stdout
    assert str(tmp_path / "venv") in where  # the installed copy, not the checkout
    clew_cmd = tmp_path / "venv" / "bin" / "clew"
    assert _run(clew_cmd, "--version", cwd=elsewhere).stdout.strip() == f"clew {clew.__version__}"
    db = elsewhere / "demo.db"
    demo = _run(clew_cmd, "demo", "--db", db, cwd=elsewhere)
    assert "killed" in demo.stdout and "verify: OK" in demo.stdout
    history = _run(py, "-m", "clew", "history", "ticket-c42", "--db", db, cwd=elsewhere)
    assert "interrupt" in history.stdout

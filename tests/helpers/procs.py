"""Start the suite's child processes (``tests/helpers/child.py``) with clew importable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
CHILD = Path(__file__).with_name("child.py")


def spawn(*args: str) -> subprocess.Popen[str]:
    """Run ``child.py`` with ``args``; stdout and stderr are pipes of text."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """Wait for a child to exit 0 and return its stdout."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err}"
    return out


def wait_for(path: Path, timeout: float = 60) -> None:
    """Wait until a child has made ``path``."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.001)


def publish(path: Path, text: str = "") -> None:
    """Make ``path`` appear at once, with its content (children poll for it)."""
    tmp = path.with_name("." + path.name)
    tmp.write_text(text)
    os.replace(tmp, path)

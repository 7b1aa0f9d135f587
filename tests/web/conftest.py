"""Fixtures for the inspector: stores with real runs in them, a client, the demo's store."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import clew
from clew.web import create_app
from tests.web._agents import make_agent

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "support_agent.py"  # runs clew.examples.support_agent


@pytest.fixture
def store(tmp_path: Path) -> Iterator[clew.Store]:
    with clew.open(f"sqlite:///{tmp_path / 'ui.db'}") as s:
        yield s


@pytest.fixture
def agent(store: clew.Store) -> clew.Agent[dict[str, Any]]:
    return make_agent(store)


def client_for(store: clew.Store, **kw: Any) -> TestClient:
    return TestClient(create_app(store, **kw), follow_redirects=False)


def csrf_of(client: TestClient) -> str:
    """Open the runs page, as a browser would, and read the page's CSRF token."""
    page = client.get("/")
    m = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert m, page.text[:500]
    return m.group(1)


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The support-agent demo's store: run ticket-c42 with its crash, review and refund fork."""
    path = tmp_path_factory.mktemp("demo") / "support.db"
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--db", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


@pytest.fixture
def demo_copy(demo_db: Path, tmp_path: Path) -> Path:
    """A private copy of the demo's store, for tests that change it."""
    dst = tmp_path / "support.db"
    shutil.copy(demo_db, dst)
    return dst

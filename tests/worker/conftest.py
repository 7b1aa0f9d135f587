"""The ``work`` fixture: a store that worker processes share, and a directory for their marks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import StoreFactory


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_stores: StoreFactory) -> Iterator[StoreFactory]:
    monkeypatch.setenv("WORK_DIR", str(tmp_path))
    monkeypatch.setenv("WORK_URL", shared_stores.url)
    yield shared_stores

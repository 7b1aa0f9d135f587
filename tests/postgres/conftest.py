"""Fixtures of the PostgreSQL suite: stores reached through pgbouncer in both pool modes.

The shared suites (conformance, runtime, LangGraph) are run again here with every
store opened through pgbouncer, in transaction mode (``?pooler=transaction``) and in
session mode (``?pooler=session``); ``Raw`` still reads the server directly.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import clew
from tests.conformance.conftest import raw, run_id
from tests.conftest import StoreFactory
from tests.runtime.conftest import tools

POOL_MODES = ["transaction", "session"]
__all__ = ["raw", "run_id", "tools"]


@pytest.fixture
def backend() -> str:
    return "postgres"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Shared tests parametrized by backend name run here for PostgreSQL only (the rest run in their suite)."""
    here = Path(__file__).parent
    keep, drop = [], []
    for item in items:
        spec = getattr(item, "callspec", None)
        other = spec is not None and spec.params.get("backend", "postgres") != "postgres"
        (drop if other and Path(str(item.fspath)).parent == here else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=POOL_MODES)
def stores(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory("postgres", tmp_path, via=str(request.param))
    yield factory
    factory.close()


@pytest.fixture(params=POOL_MODES)
def shared_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory("postgres", tmp_path, via=str(request.param))
    yield factory
    factory.close()


if importlib.util.find_spec("langgraph") is not None:
    from clew.integrations.langgraph import ClewSaver

    @pytest.fixture
    def saver(stores: StoreFactory) -> Iterator[ClewSaver]:
        yield ClewSaver(stores.open())

    @pytest.fixture
    async def asaver(stores: StoreFactory) -> AsyncIterator[ClewSaver]:
        astore = await clew.open_async(stores.url)
        try:
            yield ClewSaver(astore=astore)
        finally:
            await astore.close()

"""Fixtures for the LangGraph integration: savers on every backend.

Without LangGraph installed these tests are not collected, except under ``CI=true``
where a missing ``clew[langgraph]`` is a failure.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

if importlib.util.find_spec("langgraph") is None and not IN_CI:
    collect_ignore_glob = ["test_*.py"]
else:
    import clew
    from clew.integrations.langgraph import ClewSaver
    from tests.conftest import StoreFactory

    @pytest.fixture
    def saver(stores: StoreFactory) -> Iterator[ClewSaver]:
        """A sync saver; on ``memory`` every saver of the test shares one database."""
        yield ClewSaver(stores.open())

    @pytest.fixture
    async def asaver(stores: StoreFactory) -> AsyncIterator[ClewSaver]:
        """An async saver (its own database on ``memory``)."""
        astore = await clew.open_async(stores.url)
        try:
            yield ClewSaver(astore=astore)
        finally:
            await astore.close()


def thread(name: str = "t") -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}

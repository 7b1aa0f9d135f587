"""LangGraph's own checkpointer conformance suite, at its top level, on every clew store.

The suite calls the async methods. A second run drives the sync methods through a
shim whose async methods call them, so both drivers of the shared flows are held
to the same contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

import clew
from clew.integrations.langgraph import ClewSaver
from tests.conftest import StoreFactory


class SyncDriven(ClewSaver):
    """The sync methods, exposed under the async names the suite calls."""

    async def aget_tuple(self, config: Any) -> Any:
        return self.get_tuple(config)

    async def alist(self, config: Any, **kwargs: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        for item in self.list(config, **kwargs):
            yield item

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: Any, writes: Sequence[Any], task_id: str, task_path: str = "") -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.prune(thread_ids, strategy=strategy)


def _assert_full(report: Any) -> None:
    failures = {name: r.failures for name, r in report.results.items() if r.failures}
    assert not failures, failures
    assert {name for name, r in report.results.items() if r.detected} == {c.value for c in ALL_CAPABILITIES}
    assert report.passed_all_base()
    assert report.conformance_level() == "FULL"


async def test_conformance_async_methods(stores: StoreFactory) -> None:
    @checkpointer_test(name=f"ClewSaver[{stores.backend}]")
    async def factory() -> AsyncIterator[ClewSaver]:
        astore = await clew.open_async(stores.url)  # a fresh database per suite on memory://
        try:
            yield ClewSaver(astore=astore)
        finally:
            await astore.close()

    _assert_full(await validate(factory))


async def test_conformance_sync_methods(stores: StoreFactory) -> None:
    @checkpointer_test(name=f"ClewSaver-sync[{stores.backend}]")
    async def factory() -> AsyncIterator[ClewSaver]:
        with clew.open(stores.url) as store:
            yield SyncDriven(store)

    _assert_full(await validate(factory))

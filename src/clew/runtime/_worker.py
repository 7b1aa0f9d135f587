"""Long-running workers: take queued runs and runs whose worker died, until told to stop.

``agent.serve()`` and ``clew worker module:agent`` run a :class:`Worker`; ``await
agent.aserve()`` an :class:`AsyncWorker` on an async store. Each of its ``concurrency``
threads (or tasks) claims one run at a time (``Store.claim_expired``: a run that is
``running`` with no lease, or whose lease expired, highest priority first, then the
oldest; on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so any number of workers on any
number of machines share the work) and executes it until it completes, pauses or fails.
With ``max_running`` a claim is refused, in its own transaction, while that many of the
agent's runs hold a live lease anywhere.

On SIGTERM or SIGINT (or :meth:`Worker.stop`, or cancelling ``aserve``) the worker
drains: no new run is claimed, a run in progress finishes the step it is in,
checkpoints it and gives its lease up, so another worker continues it at once. A second
signal stops the process the default way. On SIGKILL nothing runs: the lease expires
after ``lease_ttl`` and another worker recovers the run from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

from clew.errors import ConfigError, LeaseError, StoreUnavailableError
from clew.store import AsyncStore, Lease, Store

if TYPE_CHECKING:
    from clew.runtime._agent import Agent
    from clew.runtime._engine import Run

log = logging.getLogger("clew.worker")


class _WorkerBase:
    def __init__(
        self,
        agent: Agent[Any],
        *,
        concurrency: int = 1,
        poll: float = 1.0,
        ephemeral: Mapping[str, Any] | None = None,
        max_running: int | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"worker concurrency must be a positive int, not {concurrency!r}")
        if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 < poll < float("inf"):
            raise ConfigError(f"worker poll must be a positive number of seconds, not {poll!r}")
        if max_running is not None and (
            isinstance(max_running, bool) or not isinstance(max_running, int) or max_running < 1
        ):
            raise ConfigError(f"worker max_running must be a positive int (or None: no limit), not {max_running!r}")
        self.agent = agent
        self.concurrency = concurrency
        self.poll = float(poll)
        self.ephemeral = ephemeral
        self.max_running = max_running
        self.stopping = threading.Event()
        self.executed = 0  # runs this worker took and executed
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Drain: claim nothing more, finish the current steps, release the leases."""
        if not self.stopping.is_set():
            log.info("worker %s stopping: finishing current steps", self.agent.worker_id)
        self.stopping.set()

    def _claim_args(self) -> dict[str, Any]:
        agent = self.agent
        return {
            "owner": agent.worker_id,
            "ttl": agent.lease_ttl,
            "limit": 1,
            "agent": agent.name,
            "max_running": self.max_running,
        }

    def _serving(self) -> None:
        limit = f", at most {self.max_running} running across workers" if self.max_running else ""
        log.info(
            "worker %s serving agent %r on %s (concurrency %d%s)",
            self.agent.worker_id,
            self.agent.name,
            self.agent.store.url,
            self.concurrency,
            limit,
        )

    def _claimed(self, lease: Lease) -> None:
        log.info(
            "run %s (branch %s) claimed by %s (epoch %d)", lease.run_id, lease.branch, self.agent.worker_id, lease.epoch
        )

    def _done(self, lease: Lease, result: Run[Any]) -> None:
        if result.status == "running":
            log.info(
                "run %s (branch %s) checkpointed at %s and released for another worker",
                lease.run_id,
                lease.branch,
                result.checkpoint_id,
            )


class Worker(_WorkerBase):
    """Runs an agent's queued and orphaned runs on ``concurrency`` threads until stopped.

    Args:
        agent: the agent, on a sync store.
        concurrency: how many runs this worker executes at once.
        poll: seconds to wait when there is nothing to claim.
        ephemeral: ephemeral field values given to every run it executes.
        max_running: at most this many of the agent's runs hold a live lease at once,
            across every worker sharing the store (None: no limit).
    """

    def __init__(
        self,
        agent: Agent[Any],
        *,
        concurrency: int = 1,
        poll: float = 1.0,
        ephemeral: Mapping[str, Any] | None = None,
        max_running: int | None = None,
    ) -> None:
        super().__init__(agent, concurrency=concurrency, poll=poll, ephemeral=ephemeral, max_running=max_running)
        if not isinstance(agent.store, Store):
            raise ConfigError(
                f"agent {agent.name!r} has an async store; serve() needs a sync one (clew.open), or use aserve()"
            )
        self.store: Store = agent.store

    def run(self) -> None:
        """Work until :meth:`stop` (or SIGTERM/SIGINT, in the main thread)."""
        agent = self.agent
        agent._stop = self.stopping
        restore = self._install_signals()
        self._serving()
        threads = [
            threading.Thread(target=self._loop, name=f"clew-worker-{i}", daemon=True) for i in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.2)  # short waits: the main thread must stay free to take signals
        finally:
            self.stopping.set()
            for t in threads:
                t.join()
            agent._stop = None
            restore()
            log.info("worker %s stopped after %d runs", agent.worker_id, self.executed)

    def _install_signals(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("worker %s got %s", self.agent.worker_id, signal.Signals(signum).name)
            self.stop()
            for sig, old in previous.items():  # a second signal: the default way
                signal.signal(sig, old)

        for sig in previous:
            signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore

    def _loop(self) -> None:
        agent = self.agent
        while not self.stopping.is_set():
            try:
                claimed = self.store.claim_expired(**self._claim_args())
            except StoreUnavailableError as exc:
                log.warning("worker %s cannot reach the store: %s; retrying", agent.worker_id, exc)
                self.stopping.wait(self.poll)
                continue
            if not claimed:
                self.stopping.wait(self.poll)
                continue
            lease = claimed[0]
            self._claimed(lease)
            try:
                result = agent._run_sync(agent._keeper(lease), self.ephemeral)
            except LeaseError as exc:  # LeaseLostError: another worker took it over; it goes on there
                log.warning("run %s (branch %s): %s", lease.run_id, lease.branch, exc)
                continue
            except Exception:
                log.exception("run %s (branch %s): the worker could not execute it", lease.run_id, lease.branch)
                continue
            finally:
                with self._lock:
                    self.executed += 1
            self._done(lease, result)


class AsyncWorker(_WorkerBase):
    """Runs an agent's queued and orphaned runs as ``concurrency`` tasks until cancelled.

    The async twin of :class:`Worker`, for an agent on an async store: the same
    arguments, and the same drain when cancelled, stopped or signalled.
    """

    def __init__(
        self,
        agent: Agent[Any],
        *,
        concurrency: int = 1,
        poll: float = 1.0,
        ephemeral: Mapping[str, Any] | None = None,
        max_running: int | None = None,
    ) -> None:
        super().__init__(agent, concurrency=concurrency, poll=poll, ephemeral=ephemeral, max_running=max_running)
        if not isinstance(agent.store, AsyncStore):
            raise ConfigError(
                f"agent {agent.name!r} has a sync store; aserve() needs an async one (clew.open_async), or use serve()"
            )
        self.store: AsyncStore = agent.store
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        """Drain: claim nothing more, finish the current steps, release the leases (any thread)."""
        super().stop()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def run(self) -> None:
        """Work until :meth:`stop`, cancellation, or SIGTERM/SIGINT (in the main thread)."""
        agent = self.agent
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        agent._stop = self.stopping
        restore = self._install_signals(self._loop)
        self._serving()
        tasks = [asyncio.create_task(self._work(), name=f"clew-worker-{i}") for i in range(self.concurrency)]
        try:
            try:
                await asyncio.wait(tasks)
            except asyncio.CancelledError:
                self.stop()
                await asyncio.wait(tasks)  # the drain: current steps finish, leases are released
                raise
        finally:
            self.stop()
            for t in tasks:  # cancelled again while draining: stop at once
                t.cancel()
            agent._stop = None
            restore()
            self._loop = self._wake = None
            log.info("worker %s stopped after %d runs", agent.worker_id, self.executed)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        sigs = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.getsignal(sig) for sig in sigs}

        def handler(sig: signal.Signals) -> None:
            log.info("worker %s got %s", self.agent.worker_id, sig.name)
            self.stop()
            restore()  # a second signal: the default way

        def restore() -> None:
            for sig, old in previous.items():
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
                    signal.signal(sig, old)

        try:
            for sig in sigs:
                loop.add_signal_handler(sig, handler, sig)
        except (NotImplementedError, RuntimeError):  # a loop without signal support
            restore()
            return lambda: None
        return restore

    async def _sleep(self) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.poll)

    async def _work(self) -> None:
        agent = self.agent
        while not self.stopping.is_set():
            try:
                claimed = await self.store.claim_expired(**self._claim_args())
            except StoreUnavailableError as exc:
                log.warning("worker %s cannot reach the store: %s; retrying", agent.worker_id, exc)
                await self._sleep()
                continue
            if not claimed:
                await self._sleep()
                continue
            lease = claimed[0]
            self._claimed(lease)
            try:
                result = await agent._arun(agent._keeper(lease), self.ephemeral)
            except LeaseError as exc:
                log.warning("run %s (branch %s): %s", lease.run_id, lease.branch, exc)
                continue
            except Exception:
                log.exception("run %s (branch %s): the worker could not execute it", lease.run_id, lease.branch)
                continue
            finally:
                self.executed += 1
            self._done(lease, result)

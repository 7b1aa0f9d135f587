"""A long-running worker: takes queued runs and runs whose worker died, until told to stop.

``agent.serve()`` and ``clew worker module:agent`` run one. Each of its ``concurrency``
threads claims one run at a time (``Store.claim_expired``: a run that is ``running``
with no lease, or whose lease expired; on PostgreSQL with ``FOR UPDATE SKIP LOCKED``,
so any number of workers on any number of machines share the work) and executes it
until it completes, pauses or fails.

On SIGTERM or SIGINT (or :meth:`Worker.stop`) the worker drains: no new run is
claimed, a run in progress finishes the step it is in, checkpoints it and gives its
lease up, so another worker continues it at once. A second signal stops the process
the default way. On SIGKILL nothing runs: the lease expires after ``lease_ttl`` and
another worker recovers the run from its last checkpoint.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

from clew.errors import ConfigError, LeaseError, StoreUnavailableError
from clew.store import Store

if TYPE_CHECKING:
    from clew.runtime._agent import Agent

log = logging.getLogger("clew.worker")


class Worker:
    """Runs an agent's queued and orphaned runs on ``concurrency`` threads until stopped.

    Args:
        agent: the agent, on a sync store.
        concurrency: how many runs to execute at once.
        poll: seconds to wait when there is nothing to claim.
        ephemeral: ephemeral field values given to every run it executes.
    """

    def __init__(
        self,
        agent: Agent[Any],
        *,
        concurrency: int = 1,
        poll: float = 1.0,
        ephemeral: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"worker concurrency must be a positive int, not {concurrency!r}")
        if not poll > 0:
            raise ConfigError(f"worker poll must be a positive number of seconds, not {poll!r}")
        if not isinstance(agent.store, Store):
            raise ConfigError(f"agent {agent.name!r} has an async store; a worker needs a sync one (clew.open)")
        self.agent = agent
        self.store: Store = agent.store
        self.concurrency = concurrency
        self.poll = poll
        self.ephemeral = ephemeral
        self.stopping = threading.Event()
        self.executed = 0  # runs this worker took and executed
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Drain: claim nothing more, finish the current steps, release the leases."""
        if not self.stopping.is_set():
            log.info("worker %s stopping: finishing current steps", self.agent.worker_id)
        self.stopping.set()

    def run(self) -> None:
        """Work until :meth:`stop` (or SIGTERM/SIGINT, in the main thread)."""
        agent = self.agent
        agent._stop = self.stopping
        restore = self._install_signals()
        log.info(
            "worker %s serving agent %r on %s (concurrency %d)",
            agent.worker_id,
            agent.name,
            self.store.url,
            self.concurrency,
        )
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
                claimed = self.store.claim_expired(
                    owner=agent.worker_id, ttl=agent.lease_ttl, limit=1, agent=agent.name
                )
            except StoreUnavailableError as exc:
                log.warning("worker %s cannot reach the store: %s; retrying", agent.worker_id, exc)
                self.stopping.wait(self.poll)
                continue
            if not claimed:
                self.stopping.wait(self.poll)
                continue
            lease = claimed[0]
            log.info(
                "run %s (branch %s) claimed by %s (epoch %d)", lease.run_id, lease.branch, agent.worker_id, lease.epoch
            )
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
            if result.status == "running":
                log.info(
                    "run %s (branch %s) checkpointed at %s and released for another worker",
                    lease.run_id,
                    lease.branch,
                    result.checkpoint_id,
                )

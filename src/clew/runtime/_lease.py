"""A worker's hold on the branch it advances: the lease, its heartbeat, and the fence.

Every write the runtime makes while running a branch carries the :class:`Lease`; the
store refuses it once another worker took the branch over (its epoch moved on). The
keeper also renews the lease before a non-idempotent tool call when less than a
safety margin remains, and stops the run loop once the lease is known lost.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from clew.errors import LeaseLostError
from clew.runtime._effects import Program, StoreCall
from clew.store import Lease


@dataclass(slots=True)
class LeaseKeeper:
    """The current lease of one running branch, shared with its heartbeat.

    Attributes:
        lease: the lease as last granted or renewed.
        ttl: seconds each renewal grants.
        margin: a non-idempotent call starts only with at least this many seconds left.
    """

    lease: Lease
    ttl: float
    margin: float
    lost: LeaseLostError | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def epoch(self) -> int:
        return self.lease.epoch

    def renewed(self, lease: Lease) -> None:
        with self._lock:
            if lease.epoch == self.lease.epoch and lease.expires_at > self.lease.expires_at:
                self.lease = lease

    def mark_lost(self, exc: LeaseLostError) -> None:
        with self._lock:
            if self.lost is None:
                self.lost = exc

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if the lease is known to be lost."""
        if self.lost is not None:
            raise LeaseLostError(str(self.lost))

    def renew(self) -> StoreCall:
        return StoreCall(
            "renew_lease",
            {
                "run_id": self.lease.run_id,
                "branch": self.lease.branch,
                "owner": self.lease.owner,
                "ttl": self.ttl,
                "epoch": self.lease.epoch,
            },
        )

    def ensure(self) -> Program:
        """Before a call that must not run twice: renew when less than ``margin`` is left."""
        self.check()
        if self.lease.expires_at - time.time() >= self.margin:
            return
        try:
            lease = yield self.renew()
        except LeaseLostError as exc:
            self.mark_lost(exc)
            raise
        self.renewed(lease)

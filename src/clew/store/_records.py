"""The records a store returns: immutable, typed, free of any backend detail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

RunStatus = Literal["running", "paused", "completed", "failed", "cancelled"]
RUN_STATUSES: tuple[str, ...] = ("running", "paused", "completed", "failed", "cancelled")


BRANCH_STATUSES = RUN_STATUSES
FINISHED: frozenset[str] = frozenset({"completed", "cancelled"})
"""Branch statuses that never change again."""


def lease_entry(
    *, owner: str, epoch: int, previous_owner: str | None, expired_at: float | None, head: str | None
) -> dict[str, Any]:
    """The journal data of a ``lease`` entry: a branch taken by ``owner`` at ``epoch``, and why.

    The reason is ``queued`` (never leased before), ``released`` (its worker gave it up)
    or ``lease expired`` (its worker died or stalled; ``expired_at`` says when).
    """
    reason = "lease expired" if previous_owner is not None else "released" if epoch > 1 else "queued"
    return {
        "owner": owner,
        "previous_owner": previous_owner,
        "epoch": epoch,
        "reason": reason,
        "expired_at": expired_at,
        "head": head,
    }


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One execution of an agent.

    ``status`` is derived from its branches': ``running`` if any branch runs, else
    ``paused`` if any waits for a person, else ``failed`` if any failed, else
    ``completed`` if any completed, else ``cancelled``.
    """

    run_id: str
    agent: str
    status: str
    labels: Mapping[str, str]
    metadata: Mapping[str, Any]
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's hold on a branch. ``epoch`` grows on every takeover: a fencing token.

    Every write made with a lease (``commit``, ``append_journal``,
    ``set_branch_status``) is refused with :class:`~clew.errors.LeaseLostError` once
    another worker has taken the branch over, whatever the clocks say.
    """

    run_id: str
    branch: str
    owner: str
    epoch: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class BranchRecord:
    """A named line of checkpoints in a run, with its own status and lease.

    Attributes:
        head: its newest checkpoint (None before the first).
        base: the checkpoint it was forked from (None for ``main``).
        status: ``running``, ``paused``, ``completed``, ``failed`` or ``cancelled``.
        error: the error record of a failed (or cancelled) branch.
        lease_owner: the worker holding it, if any; ``lease_expires_at`` its expiry.
        epoch: the fencing token of its latest lease.
        priority: workers claim queued branches with a higher priority first.
    """

    run_id: str
    name: str
    head: str | None
    base: str | None
    created_at: float
    status: str = "running"
    error: Mapping[str, Any] | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    epoch: int = 0
    updated_at: float = 0.0
    priority: int = 0


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """An immutable snapshot's metadata (its state is loaded separately)."""

    run_id: str
    checkpoint_id: str
    seq: int
    branch: str
    parent_id: str | None
    kind: str
    metadata: Mapping[str, Any]
    hash: str
    created_at: float


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One record of what happened inside a step (a tool call, an interrupt, ...).

    ``checkpoint_id`` is None while the entry is pending: durable, but not yet sealed
    into a checkpoint's hash.
    """

    run_id: str
    seq: int
    branch: str
    kind: str
    data: Any
    created_at: float
    checkpoint_id: str | None
    hash: str


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_cursor`` back to get the next page."""

    items: Sequence[T]
    next_cursor: str | None

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class Problem:
    """One integrity failure found by ``verify``."""

    kind: Literal["blob", "checkpoint", "journal", "manifest", "branch", "run"]
    ident: str
    message: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify`` checked and the problems found, first failure first."""

    run_id: str
    checkpoints: int
    blobs: int
    journal_entries: int
    problems: Sequence[Problem] = field(default_factory=tuple)
    branches: int = 0
    keyed: int = 0
    """Checkpoints and heads whose keyed seal (MAC) checked out."""
    unkeyed: int = 0
    """Checkpoints and heads without a MAC this store's seal key could check."""
    pruned: int = 0
    """Checkpoints whose content a retention policy removed (their hashes still chain)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise :class:`~clew.errors.IntegrityError` naming the first problem."""
        if self.problems:
            from clew.errors import IntegrityError

            first = self.problems[0]
            raise IntegrityError(
                f"run {self.run_id!r}: {first.kind} {first.ident}: {first.message}"
                + (f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else "")
            )


@dataclass(frozen=True, slots=True)
class DeleteReport:
    """How many rows of each kind a deletion removed."""

    run_id: str
    checkpoints: int
    blobs: int
    journal_entries: int
    branches: int


SUBJECT_LABEL = "clew.subject"
"""The run label that tags a run with its data subject (a customer id...), for erasure."""


@dataclass(frozen=True, slots=True)
class EraseReport:
    """What an erasure removed.

    Attributes:
        run_ids: the runs erased.
        checkpoints, blobs, journal_entries, branches: rows removed, all runs together.
        scrubbed: True when the freed bytes were also overwritten on disk (SQLite with
            ``secure_delete`` and its write-ahead log truncated). False on PostgreSQL,
            where old row versions stay in the table files until ``VACUUM`` (see
            docs/privacy.md), or when another connection kept SQLite from truncating its
            log: erase again, or checkpoint the log, once it is idle.
    """

    run_ids: tuple[str, ...]
    checkpoints: int = 0
    blobs: int = 0
    journal_entries: int = 0
    branches: int = 0
    scrubbed: bool = False


@dataclass(frozen=True, slots=True)
class RekeyReport:
    """What :meth:`Store.rekey` did to one run.

    Attributes:
        run_id: the run.
        rewrapped: its data key was wrapped again under the current keyring key (or made:
            the run had none).
        rows: rows encrypted again under the run's data key (they were in the clear, or
            under a keyring key directly); 0 for a run already wholly under its data key.
        bytes_written: bytes of the rows and wrapped key written.
    """

    run_id: str
    rewrapped: bool
    rows: int
    bytes_written: int


@dataclass(frozen=True, slots=True)
class RewrapReport:
    """What one batch of :meth:`Store.rewrap_keys` did (one transaction).

    Attributes:
        runs: runs looked at.
        rewrapped: data keys wrapped again under the current keyring key.
        bytes_written: bytes of wrapped keys written (no other row is touched).
        unkeyed: runs with no data key yet (written before data keys existed, or in the
            clear): give them one with :meth:`Store.rekey`.
        next_cursor: pass it back as ``after`` for the next batch; None after the last.
    """

    runs: int
    rewrapped: int
    bytes_written: int
    unkeyed: tuple[str, ...]
    next_cursor: str | None

"""The store interface: :class:`Store` and its async twin :class:`AsyncStore`.

Both are thin: each method hands one operation from :mod:`clew.store._ops` to the
backend's runner, which executes its queries in one transaction. A backend supplies
only ``_execute`` (or ``_aexecute``) and ``close``. A test checks that the two
classes keep the same methods with the same signatures.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from clew.codec import Codec
from clew.codec._crypto import SCOPE
from clew.errors import CommitUnknownError, ConfigError, StoreUnavailableError
from clew.store import _erase, _gc, _history, _ops, _rekey
from clew.store._query import StaleTip
from clew.store._records import (
    BranchRecord,
    CheckpointRecord,
    DeleteReport,
    EraseReport,
    JournalEntry,
    Lease,
    Page,
    RekeyReport,
    RewrapReport,
    RunRecord,
    VerifyReport,
)
from clew.store._settle import settle_commit

DEFAULT_BRANCH = "main"
T = TypeVar("T")


class _Common:
    url: str
    _ctx: _ops.Context

    @property
    def codec(self) -> Codec:
        """The codec this store encodes values with."""
        return self._ctx.codec

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgres"``."""
        return self._ctx.d.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class Store(_Common, abc.ABC):
    """Durable storage for runs, branches, checkpoints, blobs, journal and leases.

    Every method is one transaction. Stores are context managers; ``close`` is
    idempotent. Open one with :func:`clew.open`.
    """

    @abc.abstractmethod
    def _execute(self, op: _ops.Op[T], *, write: bool) -> T: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Safe to call more than once."""

    def migrate(self) -> int:
        """Bring the schema up to date (done on open too); returns its version."""
        return self._migrate()

    @abc.abstractmethod
    def _migrate(self) -> int: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------
    def create_run(
        self,
        run_id: str | None = None,
        *,
        agent: str,
        labels: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        status: str = "running",
        lease_owner: str | None = None,
        lease_ttl: float | None = None,
        state: Mapping[str, Any] | None = None,
        checkpoint_metadata: Mapping[str, Any] | None = None,
        priority: int = 0,
    ) -> RunRecord:
        """Create a run and its ``main`` branch; optionally leased to ``lease_owner``.

        With ``state``, the branch's first checkpoint (kind ``start``, with
        ``checkpoint_metadata``) is written in the same transaction, so the run never
        exists without it. Workers claim unleased runs with a higher ``priority`` first.

        Raises:
            ConflictError: a run with this id exists.
        """
        return self._execute(
            _ops.create_run(
                self._ctx,
                run_id,
                agent=agent,
                labels=labels,
                metadata=metadata,
                status=status,
                lease_owner=lease_owner,
                lease_ttl=lease_ttl,
                state=state,
                checkpoint_metadata=checkpoint_metadata,
                priority=priority,
            ),
            write=True,
        )

    def get_run(self, run_id: str) -> RunRecord:
        """A run by id. Raises NotFoundError."""
        return self._execute(_ops.get_run(self._ctx, run_id), write=False)

    def update_run(self, run_id: str, *, metadata: Mapping[str, Any]) -> RunRecord:
        """Replace a run's metadata. (Its status is its branches': see :meth:`set_branch_status`.)"""
        return self._execute(_ops.update_run(self._ctx, run_id, metadata=metadata), write=True)

    def set_branch_status(
        self,
        run_id: str,
        *,
        branch: str = DEFAULT_BRANCH,
        status: str,
        error: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
        journal: Sequence[tuple[str, Any]] = (),
        revoke: bool = False,
    ) -> BranchRecord:
        """Set a branch's status (and error record); the run's status follows, in one transaction.

        Args:
            status: ``running``, ``paused``, ``completed``, ``failed`` or ``cancelled``
                (final: a cancelled branch never changes again).
            error: the error record of a failed branch; None clears it.
            lease: if given, the write happens only while this lease holds the branch.
            journal: entries recorded with the change (pending until the next commit).
            revoke: also end the branch's lease and bump its epoch, so the worker
                holding it is fenced out (``cancel`` does this).

        Raises:
            LeaseLostError: ``lease`` no longer holds the branch.
            ConflictError: the branch is cancelled.
        """
        return self._execute(
            _ops.set_branch_status(
                self._ctx,
                run_id,
                branch=branch,
                status=status,
                error=error,
                lease=lease,
                journal=journal,
                revoke=revoke,
            ),
            write=True,
        )

    def list_runs(
        self,
        *,
        status: str | None = None,
        branch_status: str | None = None,
        agent: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        prefix: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
    ) -> Page[RunRecord]:
        """Runs, newest first, filtered by status, agent and labels (all must match).

        ``status`` is the run's derived status; ``branch_status`` matches runs with any
        branch in that status (``branch_status="paused"``: every run waiting for a person).

        Args:
            prefix: only runs whose id starts with it.
            created_after: only runs created at or after this time (epoch seconds).
            created_before: only runs created before this time (epoch seconds).

        Raises:
            ConfigError: a limit below 1, an unknown status or a bad cursor.
        """
        return self._execute(
            _ops.list_runs(
                self._ctx,
                status=status,
                branch_status=branch_status,
                agent=agent,
                labels=labels,
                limit=limit,
                cursor=cursor,
                prefix=prefix,
                created_after=created_after,
                created_before=created_before,
            ),
            write=False,
        )

    def delete_run(self, run_id: str) -> DeleteReport:
        """Delete a run with its branches, checkpoints, journal and blobs."""
        return self._execute(_ops.delete_run(self._ctx, run_id), write=True)

    def erase(self, run_id: str | None = None, *, subject: str | None = None) -> EraseReport:
        """Remove a run, or every run tagged with data subject ``subject``, for good.

        Every checkpoint, branch, journal entry, label and blob of those runs goes, in one
        transaction; then the freed bytes are overwritten where the backend allows it
        (SQLite: ``secure_delete`` and a truncated write-ahead log; see ``scrubbed``).

        Raises:
            NotFoundError: no run ``run_id`` (a subject with no runs erases nothing).
            ConfigError: neither or both of ``run_id`` and ``subject`` given.
        """
        report = self._execute(_erase.erase(self._ctx, run_id, subject), write=True)
        if subject is not None:  # with subject keys: crypto-shredding, backups and WAL included
            self.codec.destroy_subject_key(subject)
        return dataclasses.replace(report, scrubbed=self._scrub())

    def _scrub(self) -> bool:
        """Overwrite what a deletion freed, where the backend can; True if it did."""
        return False

    def gc(self, policies: Sequence[_gc.Retention], *, dry_run: bool = False, batch: int = 20) -> _gc.GCReport:
        """Apply retention policies: delete old finished runs, prune old checkpoints' content.

        Runs are processed ``batch`` at a time, each batch one transaction, so a run is
        never half processed. With ``dry_run`` nothing is written and the report says
        what would be. See :class:`~clew.store.Retention` for what is never removed.
        """
        results: list[tuple[str, _gc.RunGC | None]] = []
        for policy in policies:
            ids: list[str] = []
            cursor = None
            while True:
                page, cursor = self._execute(_gc.candidates(self._ctx, policy, 500, cursor), write=False)
                ids.extend(r.run_id for r in page)
                if cursor is None:
                    break
            for i in range(0, len(ids), batch):
                part = ids[i : i + batch]
                done = self._execute(_gc.gc_batch(self._ctx, part, policy, dry_run=dry_run), write=not dry_run)
                results.extend(zip(part, done, strict=True))
        return _gc.report(dry_run, results)

    def rewrap_keys(self, *, after: str | None = None, limit: int = 500) -> RewrapReport:
        """Re-wrap the data keys of the next ``limit`` runs under the keyring's current key.

        One transaction per call, and no row but the runs' wrapped keys is rewritten.
        Pass the report's ``next_cursor`` back as ``after`` until it is None; keys already
        under the current key are skipped, so an interrupted rotation is finished by
        running it again. Runs listed in ``unkeyed`` have no data key yet: :meth:`rekey`.

        Raises:
            ConfigError: the store has no keyring.
            MissingKeyError: a data key is wrapped by a key the keyring lacks (nothing is written).
            DecryptError: the key under that id does not unwrap it (nothing is written).
        """
        return self._execute(_rekey.rewrap_batch(self._ctx, _cursor(after), limit), write=True)

    def rekey(self, run_id: str) -> RekeyReport:
        """Put every row of a run under its data key, and that key under the current key.

        A run written before data keys existed (or in the clear) is given one; every row
        of the run in the clear or under a keyring key directly, label values included,
        is encrypted under it. One transaction: the run is wholly done or untouched;
        running it again finds nothing left to do.

        Raises:
            ConfigError: the store has no keyring.
            MissingKeyError: a row's key is not in the keyring (nothing is written).
        """
        return self._execute(_rekey.rekey(self._ctx, run_id), write=True)

    def scrub(self) -> bool:
        """Overwrite on disk what earlier writes freed, where the backend can (SQLite:
        fold the write-ahead log into the file and truncate it); True if it did."""
        return self._scrub()

    # -- checkpoints ---------------------------------------------------------
    def commit(
        self,
        run_id: str,
        *,
        state: Mapping[str, Any],
        parent: str | None,
        branch: str = DEFAULT_BRANCH,
        kind: str = "step",
        metadata: Mapping[str, Any] | None = None,
        status: str | None = None,
        journal: Sequence[tuple[str, Any]] = (),
        checkpoint_id: str | None = None,
        lease: Lease | None = None,
    ) -> CheckpointRecord:
        """Write a checkpoint and move the branch head to it, in one transaction.

        The new blobs, the checkpoint row, ``journal`` entries, the sealing of the
        branch's pending journal entries, the head move and the run's ``status``
        commit together or not at all.

        Args:
            run_id: the run.
            state: the state's top-level fields; lists are stored as chunked lists.
            parent: the head the caller expects (None for a branch's first checkpoint).
            branch: the branch to advance.
            kind: what made the checkpoint: ``step``, ``interrupt``, ``fork``, ``edit``...
            metadata: small data about the checkpoint (step name, timings...).
            status: the branch's new status, if it changes (the run's follows).
            journal: extra journal entries as ``(kind, data)``, sealed in this checkpoint.
            checkpoint_id: the id to use; a new time-ordered id by default.
            lease: if given, the commit happens only while this lease holds the branch.

        Raises:
            ConflictError: the branch head is not ``parent`` (another writer won), or
                the branch is cancelled.
            LeaseLostError: ``lease`` no longer holds the branch.
            CommitUnknownError: the connection died during COMMIT and the server stayed out
                of reach, so whether the checkpoint was written is unknown (when the store
                can reconnect it settles this itself: it returns the checkpoint if written,
                else commits again once).
            UnknownTypeError: a value in ``state`` cannot be encoded; names its path.
        """
        checkpoint_id = checkpoint_id or _ops.new_id()
        op = functools.partial(
            _ops.commit,
            self._ctx,
            run_id,
            branch=branch,
            parent=parent,
            state=state,
            metadata=metadata,
            kind=kind,
            status=status,
            journal=journal,
            checkpoint_id=checkpoint_id,
            lease=lease,
        )
        try:
            try:
                return self._execute(op(fast=True), write=True)
            except StaleTip:  # the branch moved since this store last wrote it: nothing was written
                return self._execute(op(), write=True)
        except CommitUnknownError as unknown:
            # Settle it: the checkpoint exists only if the commit happened; if it did
            # not, nothing was written and the commit runs once more.
            try:
                found = self._execute(settle_commit(self._ctx, run_id, checkpoint_id), write=False)
            except StoreUnavailableError:
                raise unknown from None
            return found if found is not None else self._execute(op(), write=True)

    def get_checkpoint(self, run_id: str, checkpoint_id: str) -> CheckpointRecord:
        """One checkpoint's metadata. Raises NotFoundError."""
        return self._execute(_ops.get_checkpoint(self._ctx, run_id, checkpoint_id), write=False)

    def find_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        """A checkpoint by its id alone, whatever its run. Raises NotFoundError."""
        return self._execute(_ops.find_checkpoint(self._ctx, checkpoint_id), write=False)

    def load_state(self, run_id: str, checkpoint_id: str) -> dict[str, Any]:
        """The state stored at a checkpoint, every blob checked against its address.

        Raises:
            NotFoundError: no such run or checkpoint.
            IntegrityError: a blob's bytes were changed or are missing.
        """
        return self._execute(_ops.load_state(self._ctx, run_id, checkpoint_id), write=False)

    def load_states(self, run_id: str, checkpoint_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The states of several checkpoints of one run, by id; each shared blob decoded once.

        For histories: neighbouring checkpoints share almost every blob, so this costs
        about one load of the largest state. The states share the objects of the values
        they share: treat them as read-only. Checked as :meth:`load_state` checks.

        Raises:
            NotFoundError: no such run or checkpoint.
            IntegrityError: a blob's bytes were changed or are missing.
        """
        return self._execute(_history.load_states(self._ctx, run_id, checkpoint_ids), write=False)

    def list_checkpoints(
        self, run_id: str, *, branch: str = DEFAULT_BRANCH, limit: int = 100, cursor: str | None = None
    ) -> Page[CheckpointRecord]:
        """A branch's history, newest first, through the fork point into its ancestors.

        Metadata only: no state is loaded.
        """
        return self._execute(
            _ops.list_checkpoints(self._ctx, run_id, branch=branch, limit=limit, cursor=cursor), write=False
        )

    # -- branches ------------------------------------------------------------
    def get_branch(self, run_id: str, name: str = DEFAULT_BRANCH) -> BranchRecord:
        """A branch and its head. Raises NotFoundError."""
        return self._execute(_ops.get_branch(self._ctx, run_id, name), write=False)

    def list_branches(self, run_id: str) -> list[BranchRecord]:
        """A run's branches, oldest first."""
        return self._execute(_ops.list_branches(self._ctx, run_id), write=False)

    def fork(
        self,
        run_id: str,
        *,
        checkpoint_id: str,
        branch: str,
        state: Mapping[str, Any] | None = None,
        kind: str = "fork",
        metadata: Mapping[str, Any] | None = None,
        journal: Sequence[tuple[str, Any]] = (),
        status: str | None = None,
        lease_owner: str | None = None,
        lease_ttl: float | None = None,
    ) -> BranchRecord:
        """Start a branch at an existing checkpoint.

        With ``state``, the branch's first checkpoint (``kind``, ``metadata``,
        ``journal``) is committed in the same transaction: the branch never exists
        without it. The branch starts in ``status`` (``running`` by default), leased
        to ``lease_owner`` for ``lease_ttl`` seconds if given (epoch 1).

        Raises:
            ConflictError: the branch name is taken.
        """
        return self._execute(
            _ops.fork(
                self._ctx,
                run_id,
                checkpoint_id=checkpoint_id,
                branch=branch,
                state=state,
                kind=kind,
                metadata=metadata,
                journal=journal,
                status=status,
                lease_owner=lease_owner,
                lease_ttl=lease_ttl,
            ),
            write=True,
        )

    # -- journal -------------------------------------------------------------
    def append_journal(
        self,
        run_id: str,
        entries: Sequence[tuple[str, Any]],
        *,
        branch: str = DEFAULT_BRANCH,
        lease: Lease | None = None,
    ) -> list[JournalEntry]:
        """Durably record ``(kind, data)`` entries now; the next commit seals them.

        Raises:
            LeaseLostError: ``lease`` (if given) no longer holds the branch: nothing was written.
        """
        return self._execute(
            _ops.append_journal(self._ctx, run_id, branch=branch, entries=entries, lease=lease), write=True
        )

    def list_journal(
        self, run_id: str, *, checkpoint_id: str | None = None, pending_on: str | None = None
    ) -> list[JournalEntry]:
        """Journal entries of a checkpoint, the pending ones of a branch, or all."""
        return self._execute(
            _ops.list_journal(self._ctx, run_id, checkpoint_id=checkpoint_id, branch=pending_on), write=False
        )

    # -- leases --------------------------------------------------------------
    def acquire_lease(self, run_id: str, *, owner: str, ttl: float, branch: str = DEFAULT_BRANCH) -> Lease:
        """Take a branch's lease (also from an expired holder); its epoch grows by one.

        Raises:
            RunLockedError: another owner holds an unexpired lease.
            LeaseError: the branch is completed or cancelled.
            ConfigError: ``ttl`` is not a positive number of seconds.
        """
        return self._execute(_ops.acquire_lease(self._ctx, run_id, owner=owner, ttl=ttl, branch=branch), write=True)

    def renew_lease(
        self, run_id: str, *, owner: str, ttl: float, branch: str = DEFAULT_BRANCH, epoch: int | None = None
    ) -> Lease:
        """Extend a held lease (a heartbeat); with ``epoch``, only that very lease.

        Raises:
            LeaseLostError: the lease was taken over or released.
        """
        return self._execute(
            _ops.renew_lease(self._ctx, run_id, owner=owner, ttl=ttl, branch=branch, epoch=epoch), write=True
        )

    def release_lease(self, run_id: str, *, owner: str, branch: str = DEFAULT_BRANCH, epoch: int | None = None) -> bool:
        """Give a lease up; False if ``owner`` (at ``epoch``, if given) did not hold it."""
        return self._execute(_ops.release_lease(self._ctx, run_id, owner=owner, branch=branch, epoch=epoch), write=True)

    def claim_expired(
        self,
        *,
        owner: str,
        ttl: float,
        limit: int = 10,
        statuses: Sequence[str] = ("running",),
        agent: str | None = None,
        max_running: int | None = None,
    ) -> list[Lease]:
        """Lease to ``owner`` up to ``limit`` branches whose lease expired (their worker died).

        Only branches in ``statuses`` (of runs of ``agent``, if given) are claimed; a
        branch that never had a lease counts as expired. The highest ``priority`` is
        claimed first, then the oldest branch. Each claim bumps the branch's epoch,
        fencing out the worker that lost it, and journals a ``lease`` entry on the branch
        (new and previous owner, epoch, reason: ``queued``, ``released`` or ``lease
        expired``). Safe with many workers at once: each branch is claimed by one of them.

        With ``max_running`` (and ``agent``), no more than that many running branches of
        the agent's runs hold a live lease once this claim is made, across every worker
        sharing the store (on PostgreSQL such claims take an advisory lock per agent).
        """
        return self._execute(
            _ops.claim_expired(
                self._ctx,
                owner=owner,
                ttl=ttl,
                limit=limit,
                statuses=statuses,
                agent=agent,
                max_running=max_running,
            ),
            write=True,
        )

    # -- audit ---------------------------------------------------------------
    def verify(self, run_id: str, *, require_keyed: bool = False) -> VerifyReport:
        """Re-check every row of a run: blobs, journal, checkpoints, branches, the run row.

        With the store's seal key, MACs are checked too; ``require_keyed`` makes a
        checkpoint or head without a MAC this key can check a problem.
        """
        return self._execute(_ops.verify(self._ctx, run_id, require_keyed), write=False)


class AsyncStore(_Common, abc.ABC):
    """The async twin of :class:`Store`: the same methods, awaited."""

    @abc.abstractmethod
    async def _aexecute(self, op: _ops.Op[T], *, write: bool) -> T: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Safe to call more than once."""

    async def migrate(self) -> int:
        """Bring the schema up to date (done on open too); returns its version."""
        return await self._amigrate()

    @abc.abstractmethod
    async def _amigrate(self) -> int: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def create_run(
        self,
        run_id: str | None = None,
        *,
        agent: str,
        labels: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        status: str = "running",
        lease_owner: str | None = None,
        lease_ttl: float | None = None,
        state: Mapping[str, Any] | None = None,
        checkpoint_metadata: Mapping[str, Any] | None = None,
        priority: int = 0,
    ) -> RunRecord:
        """See :meth:`Store.create_run`."""
        return await self._aexecute(
            _ops.create_run(
                self._ctx,
                run_id,
                agent=agent,
                labels=labels,
                metadata=metadata,
                status=status,
                lease_owner=lease_owner,
                lease_ttl=lease_ttl,
                state=state,
                checkpoint_metadata=checkpoint_metadata,
                priority=priority,
            ),
            write=True,
        )

    async def get_run(self, run_id: str) -> RunRecord:
        """See :meth:`Store.get_run`."""
        return await self._aexecute(_ops.get_run(self._ctx, run_id), write=False)

    async def update_run(self, run_id: str, *, metadata: Mapping[str, Any]) -> RunRecord:
        """See :meth:`Store.update_run`."""
        return await self._aexecute(_ops.update_run(self._ctx, run_id, metadata=metadata), write=True)

    async def set_branch_status(
        self,
        run_id: str,
        *,
        branch: str = DEFAULT_BRANCH,
        status: str,
        error: Mapping[str, Any] | None = None,
        lease: Lease | None = None,
        journal: Sequence[tuple[str, Any]] = (),
        revoke: bool = False,
    ) -> BranchRecord:
        """See :meth:`Store.set_branch_status`."""
        return await self._aexecute(
            _ops.set_branch_status(
                self._ctx,
                run_id,
                branch=branch,
                status=status,
                error=error,
                lease=lease,
                journal=journal,
                revoke=revoke,
            ),
            write=True,
        )

    async def list_runs(
        self,
        *,
        status: str | None = None,
        branch_status: str | None = None,
        agent: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        prefix: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
    ) -> Page[RunRecord]:
        """See :meth:`Store.list_runs`."""
        return await self._aexecute(
            _ops.list_runs(
                self._ctx,
                status=status,
                branch_status=branch_status,
                agent=agent,
                labels=labels,
                limit=limit,
                cursor=cursor,
                prefix=prefix,
                created_after=created_after,
                created_before=created_before,
            ),
            write=False,
        )

    async def delete_run(self, run_id: str) -> DeleteReport:
        """See :meth:`Store.delete_run`."""
        return await self._aexecute(_ops.delete_run(self._ctx, run_id), write=True)

    async def erase(self, run_id: str | None = None, *, subject: str | None = None) -> EraseReport:
        """See :meth:`Store.erase`."""
        report = await self._aexecute(_erase.erase(self._ctx, run_id, subject), write=True)
        if subject is not None:
            self.codec.destroy_subject_key(subject)
        return dataclasses.replace(report, scrubbed=await self._ascrub())

    async def _ascrub(self) -> bool:
        """See :meth:`Store._scrub`."""
        return False

    async def gc(self, policies: Sequence[_gc.Retention], *, dry_run: bool = False, batch: int = 20) -> _gc.GCReport:
        """See :meth:`Store.gc`."""
        results: list[tuple[str, _gc.RunGC | None]] = []
        for policy in policies:
            ids: list[str] = []
            cursor = None
            while True:
                page, cursor = await self._aexecute(_gc.candidates(self._ctx, policy, 500, cursor), write=False)
                ids.extend(r.run_id for r in page)
                if cursor is None:
                    break
            for i in range(0, len(ids), batch):
                part = ids[i : i + batch]
                done = await self._aexecute(_gc.gc_batch(self._ctx, part, policy, dry_run=dry_run), write=not dry_run)
                results.extend(zip(part, done, strict=True))
        return _gc.report(dry_run, results)

    async def rewrap_keys(self, *, after: str | None = None, limit: int = 500) -> RewrapReport:
        """See :meth:`Store.rewrap_keys`."""
        return await self._aexecute(_rekey.rewrap_batch(self._ctx, _cursor(after), limit), write=True)

    async def rekey(self, run_id: str) -> RekeyReport:
        """See :meth:`Store.rekey`."""
        return await self._aexecute(_rekey.rekey(self._ctx, run_id), write=True)

    async def scrub(self) -> bool:
        """See :meth:`Store.scrub`."""
        return await self._ascrub()

    async def commit(
        self,
        run_id: str,
        *,
        state: Mapping[str, Any],
        parent: str | None,
        branch: str = DEFAULT_BRANCH,
        kind: str = "step",
        metadata: Mapping[str, Any] | None = None,
        status: str | None = None,
        journal: Sequence[tuple[str, Any]] = (),
        checkpoint_id: str | None = None,
        lease: Lease | None = None,
    ) -> CheckpointRecord:
        """See :meth:`Store.commit`."""
        checkpoint_id = checkpoint_id or _ops.new_id()
        op = functools.partial(
            _ops.commit,
            self._ctx,
            run_id,
            branch=branch,
            parent=parent,
            state=state,
            metadata=metadata,
            kind=kind,
            status=status,
            journal=journal,
            checkpoint_id=checkpoint_id,
            lease=lease,
        )
        try:
            try:
                return await self._aexecute(op(fast=True), write=True)
            except StaleTip:  # the branch moved since this store last wrote it: nothing was written
                return await self._aexecute(op(), write=True)
        except CommitUnknownError as unknown:
            try:
                found = await self._aexecute(settle_commit(self._ctx, run_id, checkpoint_id), write=False)
            except StoreUnavailableError:
                raise unknown from None
            return found if found is not None else await self._aexecute(op(), write=True)

    async def get_checkpoint(self, run_id: str, checkpoint_id: str) -> CheckpointRecord:
        """See :meth:`Store.get_checkpoint`."""
        return await self._aexecute(_ops.get_checkpoint(self._ctx, run_id, checkpoint_id), write=False)

    async def find_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        """See :meth:`Store.find_checkpoint`."""
        return await self._aexecute(_ops.find_checkpoint(self._ctx, checkpoint_id), write=False)

    async def load_state(self, run_id: str, checkpoint_id: str) -> dict[str, Any]:
        """See :meth:`Store.load_state`."""
        return await self._aexecute(_ops.load_state(self._ctx, run_id, checkpoint_id), write=False)

    async def load_states(self, run_id: str, checkpoint_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """See :meth:`Store.load_states`."""
        return await self._aexecute(_history.load_states(self._ctx, run_id, checkpoint_ids), write=False)

    async def list_checkpoints(
        self, run_id: str, *, branch: str = DEFAULT_BRANCH, limit: int = 100, cursor: str | None = None
    ) -> Page[CheckpointRecord]:
        """See :meth:`Store.list_checkpoints`."""
        return await self._aexecute(
            _ops.list_checkpoints(self._ctx, run_id, branch=branch, limit=limit, cursor=cursor), write=False
        )

    async def get_branch(self, run_id: str, name: str = DEFAULT_BRANCH) -> BranchRecord:
        """See :meth:`Store.get_branch`."""
        return await self._aexecute(_ops.get_branch(self._ctx, run_id, name), write=False)

    async def list_branches(self, run_id: str) -> list[BranchRecord]:
        """See :meth:`Store.list_branches`."""
        return await self._aexecute(_ops.list_branches(self._ctx, run_id), write=False)

    async def fork(
        self,
        run_id: str,
        *,
        checkpoint_id: str,
        branch: str,
        state: Mapping[str, Any] | None = None,
        kind: str = "fork",
        metadata: Mapping[str, Any] | None = None,
        journal: Sequence[tuple[str, Any]] = (),
        status: str | None = None,
        lease_owner: str | None = None,
        lease_ttl: float | None = None,
    ) -> BranchRecord:
        """See :meth:`Store.fork`."""
        return await self._aexecute(
            _ops.fork(
                self._ctx,
                run_id,
                checkpoint_id=checkpoint_id,
                branch=branch,
                state=state,
                kind=kind,
                metadata=metadata,
                journal=journal,
                status=status,
                lease_owner=lease_owner,
                lease_ttl=lease_ttl,
            ),
            write=True,
        )

    async def append_journal(
        self,
        run_id: str,
        entries: Sequence[tuple[str, Any]],
        *,
        branch: str = DEFAULT_BRANCH,
        lease: Lease | None = None,
    ) -> list[JournalEntry]:
        """See :meth:`Store.append_journal`."""
        return await self._aexecute(
            _ops.append_journal(self._ctx, run_id, branch=branch, entries=entries, lease=lease), write=True
        )

    async def list_journal(
        self, run_id: str, *, checkpoint_id: str | None = None, pending_on: str | None = None
    ) -> list[JournalEntry]:
        """See :meth:`Store.list_journal`."""
        return await self._aexecute(
            _ops.list_journal(self._ctx, run_id, checkpoint_id=checkpoint_id, branch=pending_on), write=False
        )

    async def acquire_lease(self, run_id: str, *, owner: str, ttl: float, branch: str = DEFAULT_BRANCH) -> Lease:
        """See :meth:`Store.acquire_lease`."""
        return await self._aexecute(
            _ops.acquire_lease(self._ctx, run_id, owner=owner, ttl=ttl, branch=branch), write=True
        )

    async def renew_lease(
        self, run_id: str, *, owner: str, ttl: float, branch: str = DEFAULT_BRANCH, epoch: int | None = None
    ) -> Lease:
        """See :meth:`Store.renew_lease`."""
        return await self._aexecute(
            _ops.renew_lease(self._ctx, run_id, owner=owner, ttl=ttl, branch=branch, epoch=epoch), write=True
        )

    async def release_lease(
        self, run_id: str, *, owner: str, branch: str = DEFAULT_BRANCH, epoch: int | None = None
    ) -> bool:
        """See :meth:`Store.release_lease`."""
        return await self._aexecute(
            _ops.release_lease(self._ctx, run_id, owner=owner, branch=branch, epoch=epoch), write=True
        )

    async def claim_expired(
        self,
        *,
        owner: str,
        ttl: float,
        limit: int = 10,
        statuses: Sequence[str] = ("running",),
        agent: str | None = None,
        max_running: int | None = None,
    ) -> list[Lease]:
        """See :meth:`Store.claim_expired`."""
        return await self._aexecute(
            _ops.claim_expired(
                self._ctx,
                owner=owner,
                ttl=ttl,
                limit=limit,
                statuses=statuses,
                agent=agent,
                max_running=max_running,
            ),
            write=True,
        )

    async def verify(self, run_id: str, *, require_keyed: bool = False) -> VerifyReport:
        """See :meth:`Store.verify`."""
        return await self._aexecute(_ops.verify(self._ctx, run_id, require_keyed), write=False)


def drive(op: _ops.Op[T], execute: Any) -> T:
    """Run an operation synchronously, ``execute(q)`` answering each query."""
    scope = SCOPE.set(None)  # the subject key an operation writes under is its own
    try:
        q = next(op)
        while True:
            q = op.send(execute(q))
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        SCOPE.reset(scope)


async def adrive(op: _ops.Op[T], execute: Any) -> T:
    """Run an operation, ``await execute(q)`` answering each query."""
    scope = SCOPE.set(None)
    try:
        q = next(op)
        while True:
            q = op.send(await execute(q))
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        SCOPE.reset(scope)


def _cursor(after: str | None) -> int:
    if after is None:
        return 0
    try:
        return int(after)
    except ValueError:
        raise ConfigError(f"after={after!r} is not a cursor from a RewrapReport") from None

"""Durable storage: one :class:`Store` interface (and its async twin), three backends.

Open a store with :func:`clew.open`. Every backend runs the same operations
(:mod:`clew.store._ops`) and passes the same conformance suite.
"""

from clew.store._base import DEFAULT_BRANCH, AsyncStore, Store
from clew.store._records import (
    RUN_STATUSES,
    BranchRecord,
    CheckpointRecord,
    DeleteReport,
    JournalEntry,
    Lease,
    Page,
    Problem,
    RunRecord,
    RunStatus,
    VerifyReport,
)
from clew.store._seal import SealKey
from clew.store._sqlite import AsyncSQLiteStore, SQLiteStore

__all__ = [
    "DEFAULT_BRANCH",
    "RUN_STATUSES",
    "AsyncSQLiteStore",
    "AsyncStore",
    "BranchRecord",
    "CheckpointRecord",
    "DeleteReport",
    "JournalEntry",
    "Lease",
    "Page",
    "Problem",
    "RunRecord",
    "RunStatus",
    "SQLiteStore",
    "SealKey",
    "Store",
    "VerifyReport",
]

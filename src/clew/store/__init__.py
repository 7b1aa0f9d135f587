"""Durable storage: one :class:`Store` interface (and its async twin), three backends.

Open a store with :func:`clew.open`. Every backend runs the same operations
(:mod:`clew.store._ops`) and passes the same conformance suite.
"""

from clew.store._base import DEFAULT_BRANCH, AsyncStore, Store
from clew.store._gc import HOLD_LABEL, GCReport, Retention, RunGC
from clew.store._records import (
    RUN_STATUSES,
    SUBJECT_LABEL,
    BranchRecord,
    CheckpointRecord,
    DeleteReport,
    EraseReport,
    JournalEntry,
    Lease,
    Page,
    Problem,
    RekeyReport,
    RewrapReport,
    RunRecord,
    RunStatus,
    VerifyReport,
)
from clew.store._seal import SealKey
from clew.store._sqlite import AsyncSQLiteStore, SQLiteStore

__all__ = [
    "DEFAULT_BRANCH",
    "HOLD_LABEL",
    "RUN_STATUSES",
    "SUBJECT_LABEL",
    "AsyncSQLiteStore",
    "AsyncStore",
    "BranchRecord",
    "CheckpointRecord",
    "DeleteReport",
    "EraseReport",
    "GCReport",
    "JournalEntry",
    "Lease",
    "Page",
    "Problem",
    "RekeyReport",
    "Retention",
    "RewrapReport",
    "RunGC",
    "RunRecord",
    "RunStatus",
    "SQLiteStore",
    "SealKey",
    "Store",
    "VerifyReport",
]

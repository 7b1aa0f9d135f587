"""clew: durable storage for AI agent runs.

Checkpoint state at meaningful points, resume after a crash without redoing finished
work, pause for a person, branch from any checkpoint, replay, and audit every step.
"""

from clew import errors
from clew._open import open, open_async
from clew.codec import Codec, register_class, register_type
from clew.runtime import Agent, CallInfo, CallTimeoutError, CodeVersionWarning, Context, Retry, Run
from clew.store import (
    AsyncStore,
    BranchRecord,
    CheckpointRecord,
    JournalEntry,
    Lease,
    Page,
    RunRecord,
    SealKey,
    Store,
    VerifyReport,
)

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AsyncStore",
    "BranchRecord",
    "CallInfo",
    "CallTimeoutError",
    "CheckpointRecord",
    "CodeVersionWarning",
    "Codec",
    "Context",
    "JournalEntry",
    "Lease",
    "Page",
    "Retry",
    "Run",
    "RunRecord",
    "SealKey",
    "Store",
    "VerifyReport",
    "__version__",
    "errors",
    "open",
    "open_async",
    "register_class",
    "register_type",
]

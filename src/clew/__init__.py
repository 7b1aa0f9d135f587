"""clew: durable storage for AI agent runs.

Checkpoint state at meaningful points, resume after a crash without redoing finished
work, pause for a person, branch from any checkpoint, replay, and audit every step.
"""

import logging

from clew import errors
from clew._open import open, open_async
from clew.codec import Codec, register_class, register_type
from clew.runtime import Agent, CallInfo, CallNotStartedError, CallTimeoutError, CodeVersionWarning, Context, Retry, Run
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

# A library logs, the application decides where to: nothing is printed until logging is configured.
logging.getLogger("clew").addHandler(logging.NullHandler())

__all__ = [
    "Agent",
    "AsyncStore",
    "BranchRecord",
    "CallInfo",
    "CallNotStartedError",
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

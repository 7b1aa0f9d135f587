"""The agent runtime: steps, the tool-call ledger, retries, interrupts, fork and recovery."""

from clew.runtime._agent import Agent, Step
from clew.runtime._calls import CallNotStartedError, CallTimeoutError
from clew.runtime._compat import CompatProblem, CompatReport, MigrateReport
from clew.runtime._context import CallInfo, Context
from clew.runtime._engine import CodeVersionWarning, Run
from clew.runtime._policy import Retry

__all__ = [
    "Agent",
    "CallInfo",
    "CallNotStartedError",
    "CallTimeoutError",
    "CodeVersionWarning",
    "CompatProblem",
    "CompatReport",
    "Context",
    "MigrateReport",
    "Retry",
    "Run",
    "Step",
]

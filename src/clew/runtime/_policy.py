"""Retry policy for steps and tool calls."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Retry:
    """How often, how fast and on which errors to try again.

    Args:
        attempts: tries in all (1 means no retry).
        backoff: seconds before the second try; doubles each time after.
        max_backoff: the longest wait between tries.
        jitter: spread each wait uniformly over [wait/2, wait] so workers don't stampede.
        on: exception types worth another try; others fail at once.
    """

    attempts: int = 1
    backoff: float = 0.1
    max_backoff: float = 30.0
    jitter: bool = True
    on: tuple[type[BaseException], ...] = field(default=(Exception,))

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Retry.attempts must be at least 1")

    def retries(self, exc: BaseException, attempt: int) -> bool:
        """Whether ``exc`` raised by try number ``attempt`` (from 1) earns another."""
        return attempt < self.attempts and isinstance(exc, self.on)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after try number ``attempt`` failed."""
        wait: float = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        return random.uniform(wait / 2, wait) if self.jitter else wait  # noqa: S311 - not crypto


NO_RETRY = Retry()

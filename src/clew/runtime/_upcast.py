"""Schema versions of state types, and the upcasters that bring old states up to date.

A checkpoint records the ``schema_version`` of the agent that wrote it. When code with
a newer version loads it, the registered upcasters run in order (``v1 -> v2 -> v3``)
over the stored fields, lazily: the stored checkpoint is never rewritten by a load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from clew.errors import ConfigError, NoUpcasterError

Upcaster = Callable[[dict[str, Any]], Mapping[str, Any]]
"""Takes a state's stored fields at version ``v`` and returns them at ``v + 1``."""


class Upcasters:
    """The upcasters of one state type, keyed by the version they upgrade from."""

    def __init__(self, state_type: str, current: int) -> None:
        if not isinstance(current, int) or isinstance(current, bool) or current < 1:
            raise ConfigError(f"schema_version must be a positive int, not {current!r}")
        self.state_type = state_type
        self.current = current
        self._by_version: dict[int, Upcaster] = {}

    def register(self, from_version: int, fn: Upcaster) -> None:
        if not isinstance(from_version, int) or not 1 <= from_version < self.current:
            raise ConfigError(
                f"an upcaster of {self.state_type} upgrades from a version in 1..{self.current - 1} "
                f"(the current schema_version is {self.current}), not {from_version!r}"
            )
        if from_version in self._by_version:
            raise ConfigError(f"{self.state_type} already has an upcaster from version {from_version}")
        self._by_version[from_version] = fn

    def stored_version(self, metadata: Mapping[str, Any]) -> int:
        """The schema version a checkpoint was written with (the current one if unrecorded)."""
        v = metadata.get("schema_version")
        return v if isinstance(v, int) and not isinstance(v, bool) else self.current

    def check(self, stored: int, where: str) -> None:
        """Raise NoUpcasterError unless a chain of upcasters leads from ``stored`` to current."""
        if stored > self.current:
            raise NoUpcasterError(
                f"{where} was written with schema version {stored} of {self.state_type}; this code has "
                f"version {self.current} and states are never downgraded: deploy the code of version {stored}",
                state_type=self.state_type,
                stored=stored,
                current=self.current,
                missing=None,
            )
        for v in range(stored, self.current):
            if v not in self._by_version:
                raise NoUpcasterError(
                    f"{where} was written with schema version {stored} of {self.state_type}; this code has "
                    f"version {self.current} and no upcaster from version {v} to {v + 1}: register one with "
                    f"@agent.upcaster(from_version={v})",
                    state_type=self.state_type,
                    stored=stored,
                    current=self.current,
                    missing=v,
                )

    def apply(self, fields: Mapping[str, Any], stored: int, where: str) -> dict[str, Any]:
        """``fields`` brought from version ``stored`` to the current one."""
        self.check(stored, where)
        out = dict(fields)
        for v in range(stored, self.current):
            result = self._by_version[v](out)
            if not isinstance(result, Mapping):
                raise ConfigError(
                    f"the upcaster of {self.state_type} from version {v} returned {type(result).__name__}; "
                    "it must return the fields as a dict"
                )
            out = dict(result)
        return out

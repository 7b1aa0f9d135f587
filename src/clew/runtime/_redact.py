"""Keeping sensitive values off disk in the runtime: redacted fields and ephemeral values.

- Fields (or dotted paths into them) declared ``redacted=`` are replaced, in what is
  stored, by a :class:`~clew.codec.Redacted` marker. Steps see what was stored (a step
  always starts from a stored checkpoint), so a redacted value is known only as its
  marker: compare it with ``codec.redacted(candidate)``.
- Ephemeral values never reach a checkpoint, and must not reach the journal either
  through an error message or an interrupt payload that quotes them: every metadata
  and journal value the runtime writes passes through :class:`Scrubbing`, which replaces
  the text of the run's ephemeral values with ``[ephemeral <field>]``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from clew.codec import Redacted
from clew.errors import ConfigError

MIN_SECRET = 4  # shorter text is too common to scrub without mangling messages


class Redactor:
    """Replaces the values at declared paths of a state's fields with redaction markers."""

    def __init__(self, paths: Iterable[str], known: frozenset[str] | None, type_name: str) -> None:
        self.paths = [tuple(p.split(".")) for p in paths]
        for parts in self.paths:
            if not all(parts):
                raise ConfigError(f"redacted path {'.'.join(parts)!r} has an empty part")
            if known is not None and parts[0] not in known:
                raise ConfigError(f"redacted field {parts[0]!r} is not a field of {type_name}")

    def __bool__(self) -> bool:
        return bool(self.paths)

    def apply(self, fields: dict[str, Any], mark: Callable[[Any], Redacted]) -> dict[str, Any]:
        """``fields`` with every declared path masked (copies: the caller's objects are not changed)."""
        out = dict(fields)
        for parts in self.paths:
            if parts[0] in out:
                out[parts[0]] = _masked(out[parts[0]], parts[1:], mark)
        return out


def _masked(value: Any, rest: tuple[str, ...], mark: Callable[[Any], Redacted]) -> Any:
    if not rest:
        return value if value is None or type(value) is Redacted else mark(value)
    head, tail = rest[0], rest[1:]
    if isinstance(value, dict):
        if head not in value:
            return value
        return {**value, head: _masked(value[head], tail, mark)}
    if isinstance(value, list):
        return [_masked(v, rest, mark) for v in value]  # a path goes through every item of a list
    if not hasattr(value, head):
        return value
    new = _masked(getattr(value, head), tail, mark)
    if dataclasses.is_dataclass(value) or hasattr(type(value), "model_fields"):
        clone = copy.copy(value)
        object.__setattr__(clone, head, new)
        return clone
    return value


def secrets_of(ephemeral: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(text, field) pairs to scrub: ephemeral str/bytes values, and the str attributes of
    ephemeral objects (a client's API key), longest first."""
    found: dict[str, str] = {}
    for name, value in (ephemeral or {}).items():
        for text in _texts(value):
            if len(text) >= MIN_SECRET:
                found.setdefault(text, name)
    return sorted(found.items(), key=lambda kv: -len(kv[0]))


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, bytes):
        return [value.decode("utf-8", "replace")]
    get = getattr(value, "get_secret_value", None)  # pydantic SecretStr
    if callable(get):
        try:
            return _texts(get())
        except Exception:
            return []
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict):
        return [v for v in attrs.values() if isinstance(v, str)]
    return []


def scrub(value: Any, secrets: list[tuple[str, str]]) -> Any:
    """``value`` with every secret's text replaced, in str values, keys and nested containers."""
    if not secrets:
        return value
    if isinstance(value, str):
        for text, name in secrets:
            if text in value:
                value = value.replace(text, f"[ephemeral {name}]")
        return value
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(v, secrets) for v in value)
    return value


_SCRUBBED = {
    "append_journal": ("entries",),
    "update_run": ("metadata",),
    "set_branch_status": ("error", "journal"),
    "commit": ("metadata", "journal"),
    "fork": ("metadata", "journal"),
    "create_run": ("metadata", "checkpoint_metadata"),
}


class Scrubbing:
    """A store seen through a run: what the runtime writes is scrubbed of ephemeral text.

    Works for :class:`~clew.store.Store` and :class:`~clew.store.AsyncStore` alike: the
    arguments are scrubbed before the call, whose result (or awaitable) is returned.
    """

    def __init__(self, store: Any, ephemeral: Mapping[str, Any] | None) -> None:
        self._store = store
        self._secrets = secrets_of(ephemeral)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        fields = _SCRUBBED.get(name)
        if fields is None or not self._secrets:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            for f in fields:
                if kwargs.get(f) is not None:
                    kwargs[f] = scrub(kwargs[f], self._secrets)
            return attr(*args, **kwargs)

        return call

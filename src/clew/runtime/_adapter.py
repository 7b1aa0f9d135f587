"""State types: Pydantic models, dataclasses and dicts, to top-level fields and back."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import pydantic

from clew.codec import Redacted
from clew.errors import ConfigError, InvalidStateError

S = TypeVar("S")


class StateAdapter(Generic[S]):
    """Splits a state into fields (minus ephemeral ones) and builds it back."""

    def __init__(self, state_type: type[S], ephemeral: tuple[str, ...] = ()) -> None:
        self.type = state_type
        if isinstance(ephemeral, str) or not all(isinstance(e, str) for e in ephemeral):
            raise ConfigError(f"ephemeral={ephemeral!r}: give a tuple of field names, e.g. ('client',)")
        self.ephemeral = frozenset(ephemeral)
        self.mask: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # redacted fields, as stored
        self.kind = (
            "pydantic"
            if isinstance(state_type, type) and issubclass(state_type, pydantic.BaseModel)
            else "dataclass"
            if dataclasses.is_dataclass(state_type)
            else "dict"
            if state_type is dict
            else ""
        )
        if not self.kind:
            raise ConfigError(
                f"state={state_type!r}: the state type must be a Pydantic model class, a dataclass or dict"
            )
        self._validator = pydantic.TypeAdapter(state_type) if self.kind != "dict" else None
        known = self.field_names()
        unknown = self.ephemeral - known if known is not None else frozenset()
        if unknown:
            raise ConfigError(
                f"ephemeral={tuple(ephemeral)!r}: {sorted(unknown)} are not fields of {state_type.__name__} "
                f"(its fields: {sorted(known or ())})"
            )

    @property
    def type_name(self) -> str:
        return f"{self.type.__module__}:{self.type.__qualname__}"

    def field_names(self) -> frozenset[str] | None:
        if self.kind == "pydantic":
            return frozenset(self.type.model_fields)  # type: ignore[attr-defined]  # kind checked
        if self.kind == "dataclass":
            return frozenset(f.name for f in dataclasses.fields(self.type))  # type: ignore[arg-type]  # kind checked
        return None

    def check(self, state: object) -> S:
        if not isinstance(state, self.type):
            raise InvalidStateError(f"state must be a {self.type.__name__}, got {type(state).__name__}")
        if self.kind == "dict" and not all(isinstance(k, str) for k in state):  # type: ignore[attr-defined]
            raise InvalidStateError("a dict state needs str keys (its top-level fields)")
        return state

    def to_fields(self, state: S) -> dict[str, Any]:
        """The fields to store: every field but the ephemeral ones."""
        if self.kind == "dict":
            items: dict[str, Any] = dict(state)  # type: ignore[call-overload]  # a dict
        elif self.kind == "pydantic":
            items = {name: getattr(state, name) for name in self.type.model_fields}  # type: ignore[attr-defined]
        else:
            items = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}  # type: ignore[arg-type]
        for name in self.ephemeral:
            items.pop(name, None)
        return self.mask(items) if self.mask is not None else items

    def from_fields(self, fields: Mapping[str, Any], ephemeral: Mapping[str, Any] | None = None) -> S:
        """Build the state from stored fields plus the ephemeral values supplied again."""
        values = {**fields, **(ephemeral or {})}
        if self.kind == "dict":
            return values  # type: ignore[return-value]
        if self.kind == "pydantic":
            return self.type.model_construct(**values)  # type: ignore[attr-defined, no-any-return]
        obj = object.__new__(self.type)
        for f in dataclasses.fields(self.type):  # type: ignore[arg-type]
            if f.name in values:
                object.__setattr__(obj, f.name, values[f.name])
            elif f.default is not dataclasses.MISSING:
                object.__setattr__(obj, f.name, f.default)
            elif f.default_factory is not dataclasses.MISSING:
                object.__setattr__(obj, f.name, f.default_factory())
            else:
                object.__setattr__(obj, f.name, None)
        return obj

    def validate_stored(self, fields: Mapping[str, Any], where: str) -> None:
        """Check loaded (and upcast) fields against the state type; ephemeral fields may be absent.

        Raises:
            InvalidStateError: a field the type no longer has, a missing required field,
                or a value of the wrong type.
        """
        if self._validator is None:
            return
        known = self.field_names() or frozenset()
        unknown = set(fields) - known
        if unknown:
            raise InvalidStateError(
                f"{where} holds fields {sorted(unknown)} that {self.type.__name__} no longer has; "
                "drop or rename them in an upcaster (and raise schema_version)"
            )
        try:
            self._validator.validate_python(dict(fields))
        except pydantic.ValidationError as exc:
            bad = [
                e
                for e in exc.errors()
                if not (e["loc"] and e["loc"][0] in self.ephemeral) and type(e.get("input")) is not Redacted
            ]
            if bad:
                detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in bad[:5])
                raise InvalidStateError(
                    f"{where} does not fit {self.type.__name__} ({detail}); convert it in an upcaster "
                    "(and raise schema_version)"
                ) from None

    def apply_update(self, state: S, update: Mapping[str, Any]) -> S:
        """A new state with ``update`` applied, validated against the state type.

        Raises:
            InvalidStateError: an unknown field or a value of the wrong type.
        """
        if not all(isinstance(k, str) for k in update):
            raise InvalidStateError("an update names fields by str keys")
        known = self.field_names()
        if known is not None:
            unknown = set(update) - known
            if unknown:
                raise InvalidStateError(
                    f"update names fields {sorted(unknown)} that {self.type.__name__} does not have"
                )
        values = {**self.to_fields(state), **{k: getattr(state, k, None) for k in self.ephemeral}, **update}
        if self._validator is None:
            return values  # type: ignore[return-value]
        try:
            if self.kind == "pydantic":
                return self.type.model_validate(values)  # type: ignore[attr-defined, no-any-return]
            validated = self._validator.validate_python(values)
        except pydantic.ValidationError as exc:
            if any(type(e.get("input")) is not Redacted for e in exc.errors()):
                raise InvalidStateError(f"update does not fit {self.type.__name__}: {exc}") from exc
            # only redaction markers failed: they stand for values that were valid when written
            return self.from_fields(values)
        return validated

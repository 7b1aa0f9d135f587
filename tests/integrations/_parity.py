"""Run one scenario on LangGraph's InMemorySaver and on ClewSaver, and compare what users see.

A scenario drives a compiled graph (sync or async) and records everything a user
can observe: returned values, configs, snapshots, histories, streamed events.
:func:`normalize` turns that record into plain data with every generated id
(checkpoint ids, task ids, message ids, interrupt ids) renamed in order of first
appearance and every timestamp masked, so two savers that behave alike produce
equal records, whatever ids they were handed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX32 = re.compile(r"\b[0-9a-f]{32}\b")
_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


class _Names:
    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def __call__(self, match: re.Match[str]) -> str:
        return self.names.setdefault(match.group(0), f"<id{len(self.names)}>")


def normalize(value: Any) -> Any:
    """Plain data, ids renamed by first appearance, timestamps masked."""
    return _plain(value, _Names())


def _plain(value: Any, names: _Names) -> Any:
    if isinstance(value, str):
        if _TS.match(value):
            return "<ts>"
        return _HEX32.sub(names, _UUID.sub(names, value))
    if value is None or isinstance(value, (bool, int, float, bytes)):
        return value
    if isinstance(value, BaseCheckpointSaver):  # subgraph configs carry the checkpointer itself
        return "<checkpointer>"
    if hasattr(value, "_asdict"):  # NamedTuples: StateSnapshot, PregelTask, CheckpointTuple
        fields = value._asdict()
        if type(value).__name__ == "PregelTask" and fields.get("result") is not None:
            # A task's result is its writes. LangGraph's reducers give those messages ids in place
            # while the writes are being saved, so whether the stock saver saw the id is a race.
            fields["result"] = no_message_ids(fields["result"])
        return {"<type>": type(value).__name__, **{k: _plain(v, names) for k, v in fields.items()}}
    if hasattr(value, "model_dump"):  # LangChain messages
        return {"<type>": type(value).__name__, **_plain(value.model_dump(), names)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # Interrupt, Send...
        return {"<type>": type(value).__name__, **_plain(dataclasses.asdict(value), names)}
    if isinstance(value, Mapping):
        return {_key(k, names): _plain(value[k], names) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_plain(v, names) for v in value]
    if hasattr(value, "__dict__"):  # Command, Overwrite...
        return {"<type>": type(value).__name__, **_plain(vars(value), names)}
    return repr(value)


def no_message_ids(value: Any) -> Any:
    """Messages with their ids masked (see the PregelTask case above)."""
    if hasattr(value, "model_copy") and hasattr(value, "id"):
        return value.model_copy(update={"id": "<message id>"})
    if isinstance(value, Mapping):
        return {k: no_message_ids(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [no_message_ids(v) for v in value]
    return value


def _key(key: Any, names: _Names) -> Any:
    plain = _plain(key, names)
    return repr(plain) if isinstance(plain, (list, dict)) else plain


def difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two normalized records first differ (for assertion messages)."""
    if type(a) is not type(b):
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{path}.{k}: only in {'second' if k not in a else 'first'}"
            if (d := difference(a[k], b[k], f"{path}.{k}")) is not None:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)} items: {a!r} != {b!r}"[:3000]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if (d := difference(x, y, f"{path}[{i}]")) is not None:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"

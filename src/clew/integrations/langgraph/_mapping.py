"""How LangGraph's checkpoints, writes and configs map onto clew runs. Pure: no I/O.

=========================  ==========================================================
LangGraph                  clew
=========================  ==========================================================
thread_id                  one run: id ``thread_id``; agent ``"langgraph"``; labels
                           ``thread_id`` and ``checkpoint_ns`` (empty)
checkpoint_ns              branches of the thread's run: ``<ns>/main``, ``<ns>/fork-<id>``
                           (older stores: a run ``thread_id#checkpoint_ns`` of its own)
checkpoint id              checkpoint id (the same string)
parent checkpoint          parent checkpoint; ``__langgraph__.parent`` when they differ
``channel_values``         the checkpoint's state, one field per channel (lists are
                           chunked, every value content-addressed)
checkpoint metadata        metadata, key for key (``source``, ``step``, ``run_id``...)
rest of the checkpoint     metadata ``__langgraph__`` (``v``, ``ts``, versions, ...)
``source``                 kind: input -> ``input``, loop -> ``step``,
                           update -> ``edit``, fork -> ``fork``
``put_writes`` call        one journal entry: data ``checkpoint``, ``task``, ``path``,
                           ``writes`` = ``[[idx, channel, value], ...]`` (a large
                           value kept in a blob the next state shares, see
                           ``clew.store._splice``)
=========================  ==========================================================
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT, RESUME

from clew.codec import register_class
from clew.integrations import langchain_types  # noqa: F401 - registers the classes threads hold
from clew.store import CheckpointRecord, JournalEntry

AGENT = "langgraph"
LATE = "late-writes"
"""The branch holding writes that arrived after their checkpoint had a child; no checkpoints."""
LG = "__langgraph__"
"""Checkpoint metadata key holding the LangGraph checkpoint's own fields (versions, ``ts``...)."""
PARENT = "parent"
ANCHOR = "__thread__"
"""Id of the empty checkpoint a thread's run starts with when a subgraph namespace writes
before the root namespace: the base its branches fork from. LangGraph never sees it."""

_TRIGGER = "branch:to:"
START = "__start__"
TASKS = "__pregel_tasks"
_KINDS = {"input": "input", "loop": "step", "update": "edit", "fork": "fork"}
_WRITE_KINDS = {INTERRUPT: "interrupt", RESUME: "resume", ERROR: "error"}
WRITE_KINDS = frozenset({"writes", *_WRITE_KINDS.values()})


@dataclasses.dataclass(frozen=True, slots=True)
class Serialized:
    """A value clew's codec cannot encode, kept in LangGraph's serde format instead."""

    type: str
    data: bytes


register_class(Serialized)


# -- configs -------------------------------------------------------------------


def parse_config(config: RunnableConfig) -> tuple[str, str, str | None]:
    """``(thread_id, checkpoint_ns, checkpoint_id)`` of a config."""
    conf = config.get("configurable") or {}
    if conf.get("thread_id") is None:
        raise ValueError("the config has no configurable.thread_id: pass {'configurable': {'thread_id': ...}}")
    return str(conf["thread_id"]), str(conf.get("checkpoint_ns") or ""), conf.get("checkpoint_id") or None


def run_id_for(thread_id: str, checkpoint_ns: str = "") -> str:
    """The clew run that holds a thread: all its namespaces (subgraphs) are branches of it.

    Stores written before namespaces were grouped keep a subgraph namespace in a run
    of its own, ``thread_id#checkpoint_ns`` (:func:`legacy_run_id`), read and written
    there as before.
    """
    return thread_id


def legacy_run_id(thread_id: str, checkpoint_ns: str) -> str:
    """The run a namespace had to itself before namespaces became branches of the thread's run."""
    return thread_id if not checkpoint_ns else f"{thread_id}#{checkpoint_ns}"


def labels_for(thread_id: str, checkpoint_ns: str) -> dict[str, str]:
    return {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}


def prefix_for(checkpoint_ns: str) -> str:
    """What a namespace's branch names start with: ``<ns>/`` (``child:1/main``), nothing for the root."""
    return f"{checkpoint_ns}/" if checkpoint_ns else ""


def prefix_of(branch: str) -> str:
    """The namespace prefix of a branch name (branch names of their own hold no ``/``)."""
    return branch[: branch.rfind("/") + 1]


def ns_of(branch: str) -> str:
    """The LangGraph namespace a branch of a thread's run belongs to."""
    return prefix_of(branch)[:-1]


def make_config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    """A checkpoint's config, with exactly the keys LangGraph's own savers return."""
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


# -- checkpoints ---------------------------------------------------------------


def kind_of(metadata: Mapping[str, Any]) -> str:
    return _KINDS.get(str(metadata.get("source")), "step")


def checkpoint_meta(checkpoint: Checkpoint, metadata: CheckpointMetadata, lg_parent: Any = ...) -> dict[str, Any]:
    """The clew metadata of a LangGraph checkpoint: LangGraph's metadata, plus ``__langgraph__``.

    LangGraph's metadata (``source``, ``step``, ...) sits at the top, where generic
    clew tools look; the rest of the checkpoint (everything but its channel values)
    and, when it differs from clew's, LangGraph's parent id go under ``__langgraph__``.
    """
    rest = {k: v for k, v in checkpoint.items() if k not in ("channel_values", "id")}
    if lg_parent is not ...:
        rest[PARENT] = lg_parent
    return {**metadata, LG: rest}


def with_parent(meta: Mapping[str, Any], lg_parent: str | None, clew_parent: str | None) -> dict[str, Any]:
    """``meta`` recording LangGraph's parent only where it differs from clew's."""
    rest = {k: v for k, v in (meta.get(LG) or {}).items() if k != PARENT}
    if lg_parent != clew_parent:
        rest[PARENT] = lg_parent
    return {**meta, LG: rest}


def lg_parent_of(record: CheckpointRecord) -> str | None:
    """LangGraph's parent of a stored checkpoint (clew's, unless metadata overrides it)."""
    rest = record.metadata.get(LG) or {}
    if PARENT in rest:
        return None if rest[PARENT] is None else str(rest[PARENT])
    return record.parent_id


def lg_metadata(record: CheckpointRecord) -> dict[str, Any]:
    return {k: v for k, v in record.metadata.items() if k != LG}


def to_tuple(
    serde: SerializerProtocol,
    thread_id: str,
    ns: str,
    record: CheckpointRecord,
    state: Mapping[str, Any],
    writes: list[PendingWrite],
    config: RunnableConfig | None = None,
) -> CheckpointTuple:
    """A stored checkpoint as LangGraph's :class:`CheckpointTuple`.

    ``config`` is the caller's, when it named this checkpoint: returned as given, as
    LangGraph's in-memory and SQLite savers do.
    """
    rest = {k: v for k, v in (record.metadata.get(LG) or {}).items() if k != PARENT}
    checkpoint: Any = {
        **rest,
        "id": record.checkpoint_id,
        "channel_values": {k: unwrap(serde, v) for k, v in state.items()},
    }
    checkpoint.setdefault("v", 1)
    checkpoint.setdefault("channel_versions", {})
    checkpoint.setdefault("versions_seen", {})
    parent = lg_parent_of(record)
    parent_config = make_config(thread_id, ns, parent) if parent else None
    return CheckpointTuple(
        config if config is not None else make_config(thread_id, ns, record.checkpoint_id),
        checkpoint,
        lg_metadata(record),  # type: ignore[arg-type]  # a plain dict with the TypedDict's keys
        parent_config,
        writes,
    )


def matches(metadata: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:  # noqa: A002 - LangGraph's name
    return not filter or all(k in metadata and metadata[k] == v for k, v in filter.items())


# -- values clew cannot encode -------------------------------------------------


def wrap(serde: SerializerProtocol, value: Any) -> Serialized:
    type_, data = serde.dumps_typed(value)
    return Serialized(type_, data)


def unwrap(serde: SerializerProtocol, value: Any) -> Any:
    return serde.loads_typed((value.type, value.data)) if type(value) is Serialized else value


def field_of_path(path: str, fields: Iterable[str]) -> str | None:
    """The top-level state field an UnknownTypeError path points into."""
    if not path.startswith("state."):
        return None
    rest = path[len("state.") :]
    best = None
    for name in fields:
        inside = rest == name or (rest.startswith(name) and rest[len(name)] in ".[{<")
        if inside and (best is None or len(name) > len(best)):
            best = name
    return best


# -- pending writes ------------------------------------------------------------


def writes_entry(
    checkpoint_id: str, task_id: str, task_path: str, writes: Sequence[tuple[str, Any]]
) -> tuple[str, Any]:
    """One ``put_writes`` call as a journal entry ``(kind, data)``."""
    rows = [[WRITES_IDX_MAP.get(channel, idx), channel, value] for idx, (channel, value) in enumerate(writes)]
    kinds = {_WRITE_KINDS.get(channel, "writes") for channel, _ in writes}
    kind = kinds.pop() if len(kinds) == 1 else "writes"
    return kind, {"checkpoint": checkpoint_id, "task": task_id, "path": task_path, "writes": rows}


def copy_writes(writes: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The writes as they are now, before LangGraph goes on.

    ``put_writes`` is called from a background thread while LangGraph applies the
    same writes, and its reducers may change the written objects in place
    (``add_messages`` gives messages their ids). The stock savers serialize on entry;
    this copies on entry, so what is stored is what was written.
    """
    try:
        return copy.deepcopy(list(writes))
    except Exception:  # an uncopyable value: keep the objects themselves
        return list(writes)


def entry_values(data: Mapping[str, Any]) -> list[Any]:
    return [row[2] for row in data["writes"]]


def with_values(data: Mapping[str, Any], values: Sequence[Any]) -> dict[str, Any]:
    rows = [[row[0], row[1], v] for row, v in zip(data["writes"], values, strict=True)]
    return {**data, "writes": rows}


def has_interrupt(writes: Sequence[tuple[str, Any]]) -> bool:
    return any(channel == INTERRUPT for channel, _ in writes)


def has_error(writes: Sequence[tuple[str, Any]]) -> bool:
    return any(channel == ERROR for channel, _ in writes)


def next_nodes(checkpoint: Checkpoint) -> set[str]:
    """The nodes LangGraph will run from this checkpoint (its ``StateSnapshot.next``).

    A node runs when one of its trigger channels (``branch:to:<node>``, or ``__start__``
    for the input) holds a value at a newer version than the node has seen; a ``Send``
    waits in ``__pregel_tasks``.
    """
    values = checkpoint.get("channel_values") or {}
    seen = checkpoint.get("versions_seen") or {}
    out: set[str] = set()
    for channel, version in (checkpoint.get("channel_versions") or {}).items():
        if channel.startswith(_TRIGGER):
            node = channel[len(_TRIGGER) :]
        elif channel == START:
            node = START
        else:
            continue
        before = (seen.get(node) or {}).get(channel)
        if channel in values and (before is None or _newer(version, before)):
            out.add(node)
    if values.get(TASKS):
        out.add(TASKS)
    return out


def _newer(version: Any, before: Any) -> bool:
    return bool(version > before) if type(version) is type(before) else True


def status_after(checkpoint: Checkpoint, entries: Sequence[tuple[str, Any]]) -> str:
    """A thread's status once this checkpoint (with writes that came before it) is stored.

    ``paused`` on an interrupt, ``failed`` when a node raised, ``running`` while
    LangGraph has nodes left to run from it, ``completed`` when it has none: the
    graph reached its end.
    """
    channels = {row[1] for _, data in entries for row in data["writes"]}
    if INTERRUPT in channels:
        return "paused"
    if ERROR in channels:
        return "failed"
    return "running" if next_nodes(checkpoint) else "completed"


def by_checkpoint(entries: Iterable[JournalEntry]) -> dict[str, list[JournalEntry]]:
    """A run's write entries grouped by the checkpoint they belong to."""
    out: dict[str, list[JournalEntry]] = {}
    for entry in entries:
        if entry.kind in WRITE_KINDS and isinstance(entry.data, dict) and "checkpoint" in entry.data:
            out.setdefault(str(entry.data["checkpoint"]), []).append(entry)
    return out


def pending_writes(
    serde: SerializerProtocol, checkpoint_id: str, entries: Iterable[JournalEntry]
) -> list[PendingWrite]:
    """The writes of one checkpoint, as LangGraph's savers return them.

    A regular write (index >= 0) keeps its first value, a special one (error,
    interrupt...) its last, as in LangGraph's own savers; ordered by task path, task
    id and index (``writes_sort_key``).
    """
    found: dict[tuple[str, int], tuple[str, str, Any]] = {}
    for entry in sorted(entries, key=lambda e: e.seq):
        data = entry.data
        if entry.kind not in WRITE_KINDS or not isinstance(data, dict) or data.get("checkpoint") != checkpoint_id:
            continue
        for idx, channel, value in data["writes"]:
            key = (str(data["task"]), int(idx))
            if idx >= 0 and key in found:
                continue
            found[key] = (str(data.get("path") or ""), channel, value)
    ordered = sorted(found.items(), key=lambda kv: (kv[1][0], kv[0][0], kv[0][1]))
    return [(task, channel, unwrap(serde, value)) for (task, _), (_, channel, value) in ordered]

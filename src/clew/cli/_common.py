"""What every command shares: options, opening the store, output, id prefixes, loading an agent.

Output never goes through Rich markup: stored text (``[/INST]`` in a tool result, a run
id like ``user[admin]``) is printed as it is. Tables show ids whole; piped, they are
as wide as their content.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import inspect
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

import clew
from clew import errors
from clew.audit import to_jsonable

out = Console(markup=False, highlight=False, emoji=False)
err = Console(stderr=True, markup=False, highlight=False, emoji=False)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", "-s", envvar=["CLEW_URL", "CLEW_STORE"], help="Store URL (default sqlite:///clew.db)."),
]
DbOpt = Annotated[str | None, typer.Option("--db", help="A SQLite file (shortcut for --store sqlite:///PATH).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
WideOpt = Annotated[bool, typer.Option("--wide", "-w", help="Never shorten a column to fit the terminal.")]
AgentArg = Annotated[
    str,
    typer.Argument(
        metavar="MODULE:AGENT",
        help="Where the agent is defined, e.g. myapp.agents:support (its steps run here; its store is used).",
    ),
]


def open_store(store: str | None, db: str | None, *, must_exist: bool = True, read_only: bool = False) -> clew.Store:
    """The store named by ``--db`` or ``--store``; a read must not create a SQLite file.

    ``read_only`` opens it read-only (``mode=ro``): it is never created nor migrated.
    """
    url = f"sqlite:///{db}" if db else store or "sqlite:///clew.db"
    if must_exist and url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :].split("?", 1)[0]
        if path and not Path(path).exists():
            raise errors.NotFoundError(f"no database at {path}: check the path (or --store / $CLEW_URL)")
    from clew.cli._privacy import keyring_codec  # CLEW_KEYS / CLEW_KEY_FILE: encrypted stores

    if read_only and not url.startswith("memory:"):
        return clew.open(url, mode="ro", codec=keyring_codec())
    return clew.open(url, codec=keyring_codec())


def load_agent(ref: str) -> clew.Agent[Any]:
    """The agent at ``module:attr`` (an :class:`~clew.Agent`, or a function that returns one)."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise errors.ConfigError(f"{ref!r}: name the agent as MODULE:AGENT, e.g. myapp.agents:support")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, "")  # as python -m does: modules in the working directory
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise errors.ConfigError(f"{ref!r}: cannot import {module!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise errors.ConfigError(f"{ref!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if inspect.isfunction(obj):  # a factory
        obj = obj()
    if not isinstance(obj, clew.Agent):
        raise errors.ConfigError(f"{ref!r} is a {type(obj).__name__}, not a clew.Agent")
    if not isinstance(obj.store, clew.Store):
        raise errors.ConfigError(f"{ref!r} has an async store; the CLI runs agents on a sync store (clew.open)")
    return obj


def parse_json(option: str, text: str | None, *, mapping: bool = False) -> Any:
    """A JSON option's value; a mistake names the option."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.ConfigError(f"{option}: not JSON ({exc.msg} at column {exc.colno}): {text!r}") from None
    if mapping and not isinstance(value, dict):
        raise errors.ConfigError(f"{option} takes a JSON object of field names to values, e.g. '{{\"a\": 1}}'")
    return value


# -- ids -----------------------------------------------------------------------


def resolve_run(store: clew.Store, ref: str) -> str:
    """A run id from the id itself or a unique prefix of it."""
    try:
        return store.get_run(ref).run_id
    except errors.NotFoundError:
        pass
    if ref:
        found = store.list_runs(prefix=ref, limit=6).items
        if len(found) == 1:
            return found[0].run_id
        if found:
            shown = ", ".join(r.run_id for r in found[:5])
            raise errors.ConfigError(f"run id prefix {ref!r} is ambiguous: {shown}{', ...' if len(found) > 5 else ''}")
    raise errors.NotFoundError(f"run {ref!r} not found (no run id is, or starts with, it)")


def run_checkpoints(store: clew.Store, run_id: str) -> list[clew.CheckpointRecord]:
    """Every checkpoint of a run, across its branches, oldest first."""
    seen: dict[str, clew.CheckpointRecord] = {}
    for b in store.list_branches(run_id):
        cursor = None
        while True:
            page = store.list_checkpoints(run_id, branch=b.name, limit=500, cursor=cursor)
            for c in page.items:
                seen.setdefault(c.checkpoint_id, c)
            cursor = page.next_cursor
            if cursor is None:
                break
    return sorted(seen.values(), key=lambda c: c.seq)


def resolve_checkpoint(store: clew.Store, run_id: str, ref: str) -> str:
    """A checkpoint id of ``run_id`` from the id or a unique prefix of it."""
    try:
        return store.get_checkpoint(run_id, ref).checkpoint_id
    except errors.NotFoundError:
        pass
    found = [c.checkpoint_id for c in run_checkpoints(store, run_id) if ref and c.checkpoint_id.startswith(ref)]
    if len(found) == 1:
        return found[0]
    if found:
        raise errors.ConfigError(f"checkpoint id prefix {ref!r} is ambiguous in run {run_id!r}: {', '.join(found[:5])}")
    raise errors.NotFoundError(f"checkpoint {ref!r} not found in run {run_id!r}")


# -- time ----------------------------------------------------------------------

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(option: str, text: str | None) -> float | None:
    """``2026-11-30``, ``2026-11-30T08:00:00+01:00`` (naive: local time) or an age: ``90s``, ``2h``, ``7d``."""
    if text is None:
        return None
    m = _AGO.match(text.strip())
    if m:
        return dt.datetime.now(dt.UTC).timestamp() - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise errors.ConfigError(
            f"{option}: {text!r} is neither an ISO 8601 time (2026-11-30T08:00:00+00:00) nor an age (30m, 2h, 7d)"
        ) from None
    return when.timestamp()


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC, with its offset."""
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def local(ts: float | None) -> str:
    """Epoch seconds as local time for a table."""
    return "" if ts is None else dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


# -- output --------------------------------------------------------------------


def record(rec: Any) -> dict[str, Any]:
    """A store record as JSON-ready data; ``*_at`` times in ISO 8601."""
    data = dataclasses.asdict(rec)
    return {k: iso(v) if k.endswith("_at") and isinstance(v, int | float) else to_jsonable(v) for k, v in data.items()}


def dumps(data: Any, *, indent: int | None = None) -> str:
    """Strict JSON (never a bare NaN)."""
    return json.dumps(to_jsonable(data), indent=indent, ensure_ascii=False, allow_nan=False)


def emit(data: Any) -> None:
    """Print JSON on stdout."""
    write(dumps(data, indent=2))


def write(text: str) -> None:
    """Raw text on stdout: no markup, no wrapping; ASCII escapes if the terminal cannot take it."""
    try:
        sys.stdout.write(text + "\n")
    except UnicodeEncodeError:
        sys.stdout.write(text.encode("ascii", "backslashreplace").decode("ascii") + "\n")
    sys.stdout.flush()


def table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, ids: Iterable[str] = (), title: str | None = None
) -> Table:
    """A table of plain text; the ``ids`` columns are never wrapped or shortened."""
    t = Table(*columns, title=Text(title) if title else None, title_justify="left")
    id_cols = {columns.index(c) for c in ids}
    body = [[Text("" if v is None else str(v)) for v in row] for row in rows]
    for i, col in enumerate(t.columns):
        if i in id_cols:
            col.no_wrap = True
            col.min_width = max([len(c) for c in columns[i : i + 1]] + [len(r[i]) for r in body])
        else:
            col.overflow = "fold"
    for row in body:
        t.add_row(*row)
    return t


def show_table(t: Table, wide: bool = False) -> None:
    """Print a table: as wide as it needs when piped or with ``--wide``."""
    if wide or not out.is_terminal:
        Console(markup=False, highlight=False, emoji=False, width=100_000, color_system=None).print(t)
    else:
        out.print(t)


def text(*parts: str | tuple[str, str]) -> Text:
    """Styled text from plain pieces: ``("error:", "red")``; never parsed as markup."""
    return Text.assemble(*parts)


def say(message: str) -> None:
    """A line of text on stdout."""
    out.print(Text(message), soft_wrap=True)

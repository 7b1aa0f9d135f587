"""Nested differences between two JSON-ready values: paths, and lists as appended or removed items."""

from __future__ import annotations

from typing import Any

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
MAX_CHANGES = 200  # per field; a diff larger than this is summarised


def changes(path: str, before: Any, after: Any) -> list[dict[str, Any]]:
    """The changes from ``before`` to ``after`` under ``path``, deepest paths first found first."""
    out: list[dict[str, Any]] = []
    _walk(path, before, after, out)
    if len(out) > MAX_CHANGES:
        more = len(out) - MAX_CHANGES
        out = [*out[:MAX_CHANGES], {"path": path, "change": f"{more} more changes", "before": None, "after": None}]
    return out


def _add(out: list[dict[str, Any]], path: str, change: str, before: Any = None, after: Any = None) -> None:
    out.append({"path": path, "change": change, "before": before, "after": after})


def _walk(path: str, a: Any, b: Any, out: list[dict[str, Any]]) -> None:
    if a is MISSING:
        _add(out, path, "added", after=b)
    elif b is MISSING:
        _add(out, path, "removed", before=a)
    elif a == b:
        return
    elif isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            _walk(f"{path}.{k}", a.get(k, MISSING), b.get(k, MISSING), out)
    elif isinstance(a, list) and isinstance(b, list):
        _walk_list(path, a, b, out)
    else:
        _add(out, path, "changed", a, b)


def _walk_list(path: str, a: list[Any], b: list[Any], out: list[dict[str, Any]]) -> None:
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    if common == len(a):
        _add(out, path, f"appended {len(b) - common}", after=b[common:])
        return
    if common == len(b):
        _add(out, path, f"removed {len(a) - common} from the end", before=a[common:])
        return
    if len(a) == len(b):
        for i in range(common, len(a)):
            _walk(f"{path}[{i}]", a[i], b[i], out)
        return
    # Different lengths and a change in the middle: the items one side has that the other lacks.
    removed = [x for x in a[common:] if x not in b]
    added = [x for x in b[common:] if x not in a]
    if removed:
        _add(out, path, f"removed {len(removed)}", before=removed)
    if added:
        _add(out, path, f"added {len(added)}", after=added)
    if not removed and not added:
        _add(out, path, "reordered", a[common:], b[common:])

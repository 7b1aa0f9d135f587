"""Addressing inside a state (JSON Pointer paths) for paging long lists and folding long strings."""

from __future__ import annotations

from typing import Any

from clew.errors import NotFoundError


def pointer(parts: list[str | int]) -> str:
    """The JSON Pointer (RFC 6901) of ``parts``: ``["articles", 3]`` -> ``/articles/3``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def child(path: str, key: str | int) -> str:
    return path + pointer([key])


def at(value: Any, path: str) -> Any:
    """The value at JSON Pointer ``path`` inside ``value``. Raises NotFoundError naming the path."""
    if not path:
        return value
    if not path.startswith("/"):
        raise NotFoundError(f"path {path!r}: a JSON Pointer starts with '/' (e.g. /messages/3)")
    cur = value
    for raw in path[1:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, dict) and key in cur:
            cur = cur[key]
        elif isinstance(cur, list) and key.isdigit() and int(key) < len(cur):
            cur = cur[int(key)]
        else:
            raise NotFoundError(f"path {path!r}: nothing at {key!r} in this state")
    return cur

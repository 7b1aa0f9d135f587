"""Loading many checkpoints of one run at once, each shared blob read and decoded once.

Neighbouring checkpoints share almost every blob: the leaves of a growing list, the
values of unchanged fields. A history listing that loads them one by one decodes the
same leaves again for every checkpoint; :func:`load_states` decodes each once and
builds every state from the shared pieces (a list is its leaves' items, concatenated).
The states share the objects of the values they share, so callers treat them as
read-only.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from clew.errors import IntegrityError
from clew.store import _state
from clew.store._query import Context, Op, Q
from clew.store._read import fetch_blobs, load_fields, run_key, sealed_manifest

_SHARED_KINDS = frozenset(("v", "l"))


@dataclass(slots=True)
class _Memo:
    """What one listing has decoded so far, by blob address."""

    values: dict[bytes, Any] = field(default_factory=dict)
    leaves: dict[bytes, list[Any]] = field(default_factory=dict)
    nodes: dict[bytes, list[tuple[bytes, int]]] = field(default_factory=dict)


def load_states(ctx: Context, run_id: str, checkpoint_ids: Sequence[str]) -> Op[dict[str, dict[str, Any]]]:
    """The states of several checkpoints of one run, by checkpoint id."""
    rk = yield from run_key(ctx, run_id)
    memo = _Memo()
    out: dict[str, dict[str, Any]] = {}
    for cid in checkpoint_ids:
        manifest, _, _ = yield from sealed_manifest(ctx, rk, run_id, cid)
        if all(entry[0] in _SHARED_KINDS for entry in manifest.values()):
            out[cid] = yield from _build(ctx, rk, cid, manifest, memo)
        else:  # a field shape this module does not share (yet): loaded on its own
            out[cid] = (yield from load_fields(ctx, rk, run_id, cid))[0]
    return out


def _build(
    ctx: Context, rk: int, cid: str, manifest: dict[str, Any], memo: _Memo
) -> Generator[Q | list[Q], Any, dict[str, Any]]:
    lists = {name: _state.manifest_roots(entry) for name, entry in manifest.items() if entry[0] == "l"}
    while True:  # expand list index nodes level by level down to the leaves
        nodes = [a for roots in lists.values() for a, _, h in roots if h > 0]
        if not nodes:
            break
        need = [a for a in nodes if a not in memo.nodes]
        if need:
            plains = yield from fetch_blobs(ctx, rk, need)
            for a in need:
                memo.nodes[a] = _state.node_children(plains[a])
        for name, roots in lists.items():
            lists[name] = [
                leaf
                for a, c, h in roots
                for leaf in ([(a, c, h)] if h == 0 else [(ca, cc, h - 1) for ca, cc in memo.nodes[a]])
            ]
    values = [bytes(entry[1]) for entry in manifest.values() if entry[0] == "v"]
    leaves = [a for roots in lists.values() for a, _, _ in roots]
    need_values = [a for a in values if a not in memo.values]
    need_leaves = [a for a in leaves if a not in memo.leaves]
    if need_values or need_leaves:
        plains = yield from fetch_blobs(ctx, rk, [*need_values, *need_leaves])
        for a in need_values:
            memo.values[a] = ctx.codec.loads(plains[a])
        for a in need_leaves:
            decoded = ctx.codec.loads(plains[a])
            if type(decoded) is not list:
                raise IntegrityError(f"checkpoint {cid}: blob {a.hex()} is a list leaf that is not a list")
            memo.leaves[a] = decoded
    state: dict[str, Any] = {}
    for name, entry in manifest.items():
        if entry[0] == "v":
            state[name] = memo.values[bytes(entry[1])]
            continue
        items: list[Any] = []
        for a, c, _ in lists[name]:
            leaf = memo.leaves[a]
            if len(leaf) != c:
                raise IntegrityError(f"checkpoint {cid}: list {name!r} has a leaf of {len(leaf)} items, not {c}")
            items.extend(leaf)
        if len(items) != entry[1]:
            raise IntegrityError(f"checkpoint {cid}: list {name!r} holds {len(items)} items, manifest says {entry[1]}")
        state[name] = items
    return state

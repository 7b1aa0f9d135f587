"""Loading many checkpoints of one run at once, each shared blob read and decoded once.

Neighbouring checkpoints share almost every blob: the leaves of a growing list, the
values of unchanged fields. A history listing that loads them one by one decodes the
same leaves again for every checkpoint; :func:`load_states` decodes each once and
builds every state from the shared pieces: a chunked list is its leaves' items,
concatenated; a tree (a large dict, model or nested container) is assembled from its
decoded leaves, each leaf decoded once however many checkpoints reach it.
The states share the objects of the values they share, so callers treat them as
read-only.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from clew.codec._envelope import Plain
from clew.codec._parts import assemble
from clew.errors import IntegrityError
from clew.store import _state, _tree
from clew.store._query import Context, Op, Q
from clew.store._read import fetch_blobs, load_fields, run_key, sealed_manifest

_SHARED_KINDS = frozenset(("v", "l", "m", "t"))


@dataclass(slots=True)
class _Memo:
    """What one listing has decoded so far, by blob address."""

    values: dict[bytes, Any] = field(default_factory=dict)
    leaves: dict[bytes, Any] = field(default_factory=dict)  # list leaves and map-log leaves
    nodes: dict[bytes, list[tuple[bytes, int]]] = field(default_factory=dict)
    tree_nodes: dict[bytes, list[bytes]] = field(default_factory=dict)
    tree_leaves: dict[bytes, tuple[list[str] | None, list[Any], list[tuple[int, _tree.Ref]]]] = field(
        default_factory=dict
    )


_CHUNK = 100
"""Checkpoints whose manifests and new blobs are read in one round trip."""


def load_states(ctx: Context, run_id: str, checkpoint_ids: Sequence[str]) -> Op[dict[str, dict[str, Any]]]:
    """The states of several checkpoints of one run, by checkpoint id."""
    rk = yield from run_key(ctx, run_id)
    memo = _Memo()
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(checkpoint_ids), _CHUNK):
        chunk = list(dict.fromkeys(checkpoint_ids[start : start + _CHUNK]))
        manifests = yield from _manifests(ctx, rk, run_id, chunk)
        shared = {cid: m for cid, m in manifests.items() if all(e[0] in _SHARED_KINDS for e in m.values())}
        yield from _prefetch(ctx, rk, list(shared.values()), memo)
        for cid in chunk:
            if cid in shared:
                out[cid] = yield from _build(ctx, rk, cid, shared[cid], memo)
            else:  # a field shape this module does not share: loaded on its own
                out[cid] = (yield from load_fields(ctx, rk, run_id, cid))[0]
    return out


def _manifests(
    ctx: Context, rk: int, run_id: str, cids: list[str]
) -> Generator[Q | list[Q], Any, dict[str, dict[str, Any]]]:
    """Each checkpoint's manifest, checked against its seal; their reads go out together."""
    # Oldest first (checkpoint ids sort by time): a manifest stored as a change then
    # finds its parent's already read and checked, and needs no read of its own chain.
    readers = {cid: sealed_manifest(ctx, rk, run_id, cid) for cid in sorted(cids)}
    pending = {cid: next(reader) for cid, reader in readers.items()}
    out: dict[str, dict[str, Any]] = {}
    while pending:  # each reader's queries of a round in one batch: one round trip
        flat: list[Q] = []
        spans: dict[str, tuple[int, int, bool]] = {}
        for cid, q in pending.items():
            qs = q if isinstance(q, list) else [q]
            spans[cid] = (len(flat), len(qs), isinstance(q, list))
            flat.extend(qs)
        results = yield flat
        after: dict[str, Q | list[Q]] = {}
        for cid, (at, n, many) in spans.items():
            try:
                after[cid] = readers[cid].send(results[at : at + n] if many else results[at])
            except StopIteration as stop:
                out[cid] = stop.value[0]
        pending = after
    return out


def _prefetch(ctx: Context, rk: int, manifests: list[dict[str, Any]], memo: _Memo) -> Generator[Q | list[Q], Any, None]:
    """Read and decode, level by level for all of them at once, the blobs these states need."""
    try:
        refs = [_tree.parse_ref(*e[1:6]) for m in manifests for e in m.values() if e[0] == "t"]
        level = list(
            dict.fromkeys(
                (a, h)
                for m in manifests
                for e in m.values()
                if e[0] in ("l", "m")
                for a, _, h in _state.manifest_roots(e)
            )
        )
        values = list(dict.fromkeys(bytes(e[1]) for m in manifests for e in m.values() if e[0] == "v"))
    except (TypeError, ValueError, IndexError):
        raise IntegrityError("a checkpoint has a malformed manifest") from None
    yield from _fetch_trees(ctx, rk, refs, memo)
    while any(h > 0 for _, h in level):  # list index nodes, down to the leaves
        need = list(dict.fromkeys(a for a, h in level if h > 0 and a not in memo.nodes))
        if need:
            plains = yield from fetch_blobs(ctx, rk, need)
            for a in need:
                memo.nodes[a] = _state.node_children(plains[a])
        level = list(
            dict.fromkeys(
                leaf for a, h in level for leaf in ([(a, h)] if h == 0 else [(c, h - 1) for c, _ in memo.nodes[a]])
            )
        )
    yield from _decode_into(ctx, rk, memo, values, [a for a, _ in level])


def _decode_into(
    ctx: Context, rk: int, memo: _Memo, values: list[bytes], leaves: list[bytes]
) -> Generator[Q | list[Q], Any, None]:
    """Fetch (in one query) and decode the value and leaf blobs ``memo`` lacks (each
    leaf is checked against what its list or map log expects where it is used)."""
    need_values = [a for a in values if a not in memo.values]
    need_leaves = [a for a in leaves if a not in memo.leaves]
    if need_values or need_leaves:
        plains = yield from fetch_blobs(ctx, rk, [*need_values, *need_leaves])
        for a in need_values:
            memo.values[a] = ctx.codec.loads(plains[a])
        for a in need_leaves:
            memo.leaves[a] = ctx.codec.loads(plains[a])


def _build(
    ctx: Context, rk: int, cid: str, manifest: dict[str, Any], memo: _Memo
) -> Generator[Q | list[Q], Any, dict[str, Any]]:
    lists = {name: _state.manifest_roots(entry) for name, entry in manifest.items() if entry[0] in ("l", "m")}
    try:
        trees = {name: _tree.parse_ref(*entry[1:6]) for name, entry in manifest.items() if entry[0] == "t"}
    except (TypeError, ValueError, IndexError):
        raise IntegrityError(f"checkpoint {cid} has a malformed manifest") from None
    yield from _fetch_trees(ctx, rk, list(trees.values()), memo)
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
    yield from _decode_into(ctx, rk, memo, values, leaves)
    state: dict[str, Any] = {}
    for name, entry in manifest.items():
        if entry[0] == "v":
            state[name] = memo.values[bytes(entry[1])]
            continue
        if entry[0] == "t":
            state[name] = _tree_value(trees[name], memo)
            continue
        if entry[0] == "m":
            leaves = [memo.leaves[a] for a, _, _ in lists[name]]
            counts = [c for _, c, _ in lists[name]]
            state[name] = _state.map_of_log(leaves, counts, entry[1], f"checkpoint {cid}: map {name!r}")
            continue
        items: list[Any] = []
        for a, c, _ in lists[name]:
            leaf = memo.leaves[a]
            if type(leaf) is not list:
                raise IntegrityError(f"checkpoint {cid}: list {name!r} has a leaf that is not a list")
            if len(leaf) != c:
                raise IntegrityError(f"checkpoint {cid}: list {name!r} has a leaf of {len(leaf)} items, not {c}")
            items.extend(leaf)
        if len(items) != entry[1]:
            raise IntegrityError(f"checkpoint {cid}: list {name!r} holds {len(items)} items, manifest says {entry[1]}")
        state[name] = items
    return state


def _fetch_trees(ctx: Context, rk: int, refs: list[_tree.Ref], memo: _Memo) -> Generator[Q | list[Q], Any, None]:
    """Read and decode the tree blobs ``refs`` reach that this listing has not seen yet."""
    todo = [(ref[1], ref[2]) for ref in refs]
    while todo:
        need = [a for a, _ in todo if a not in memo.tree_nodes and a not in memo.tree_leaves]
        if need:
            plains = yield from fetch_blobs(ctx, rk, need)
            for a, height in todo:
                if a in plains and a not in memo.tree_nodes and a not in memo.tree_leaves:
                    if height > 0:
                        memo.tree_nodes[a] = [c for c, _, _ in _tree._children_of(plains[a])]
                    else:
                        memo.tree_leaves[a] = _tree_leaf(ctx, a, plains[a])
        below: list[tuple[bytes, int]] = []
        for a, height in todo:
            if height > 0:
                below.extend((c, height - 1) for c in memo.tree_nodes[a])
            else:
                below.extend((ref[1], ref[2]) for _, ref in memo.tree_leaves[a][2])
        todo = below


def _tree_leaf(
    ctx: Context, addr: bytes, plain: Plain
) -> tuple[list[str] | None, list[Any], list[tuple[int, _tree.Ref]]]:
    try:
        keys, values, refs = ctx.codec.loads(plain)
        subtrees = [(int(r[0]), _tree.parse_ref(*r[1:6])) for r in refs]
    except (ValueError, TypeError, IndexError):
        raise IntegrityError(f"tree leaf {addr.hex()} is malformed") from None
    if not isinstance(values, list) or (keys is not None and (not isinstance(keys, list) or len(keys) != len(values))):
        raise IntegrityError(f"tree leaf {addr.hex()} has keys that do not match its values")
    return keys, values, subtrees


def _tree_value(ref: _tree.Ref, memo: _Memo) -> Any:
    """The value a tree holds, built from the leaves this listing decoded."""
    shape, addr, height, count, _ = ref
    level = [addr]
    for _ in range(height):
        level = [c for node in level for c in memo.tree_nodes[node]]
    keyed = shape[0] != "l"
    keys: list[str] = []
    values: list[Any] = []
    for leaf in level:
        lkeys, lvalues, subtrees = memo.tree_leaves[leaf]
        if subtrees:
            lvalues = list(lvalues)
            for i, sub in subtrees:
                lvalues[i] = _tree_value(sub, memo)
        if keyed:
            keys.extend(lkeys or ())
        values.extend(lvalues)
    if len(values) != count:
        raise IntegrityError(f"tree {addr.hex()} holds {len(values)} entries, its reference says {count}")
    return assemble(shape, keys if keyed else None, values)

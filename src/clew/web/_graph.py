"""The checkpoint tree of a run laid out for an inline SVG: one lane per branch, one row per checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LANE = 22  # px between branch lanes
ROW = 26  # px between checkpoints
PAD = 14
TEXT_GAP = 16


@dataclass(frozen=True, slots=True)
class Node:
    checkpoint_id: str
    x: int
    y: int
    kind: str
    branch: str
    label: str
    title: str
    heads: tuple[tuple[str, str], ...]  # (branch, status) of the branches whose head this is


@dataclass(frozen=True, slots=True)
class Edge:
    path: str  # SVG path data
    fork: bool


@dataclass(frozen=True, slots=True)
class Layout:
    width: int
    height: int
    text_x: int
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)


def _label(c: Mapping[str, Any]) -> str:
    kind = c["kind"]
    what = c.get("step") or ("→ " + str(c["next"]) if c.get("next") else "")
    text = f"#{c['seq']} {kind} {what}".rstrip()
    if c.get("actor"):
        text += f" · {c['actor']}"
    if c.get("reason"):
        reason = str(c["reason"])
        text += f": {reason[:40]}{'…' if len(reason) > 40 else ''}"
    return text


def layout(checkpoints: Sequence[Mapping[str, Any]], branches: Sequence[Mapping[str, Any]]) -> Layout:
    """Positions for ``checkpoints`` (oldest first) on lanes in ``branches``' order (oldest first)."""
    lanes = {b["name"]: i for i, b in enumerate(branches)}
    for c in checkpoints:
        lanes.setdefault(c["branch"], len(lanes))
    heads: dict[str, list[tuple[str, str]]] = {}
    for b in branches:
        if b.get("head"):
            heads.setdefault(b["head"], []).append((b["name"], b["status"]))
    pos: dict[str, tuple[int, int]] = {}
    nodes: list[Node] = []
    edges: list[Edge] = []
    for row, c in enumerate(checkpoints):
        x, y = PAD + lanes[c["branch"]] * LANE, PAD + row * ROW
        pos[c["checkpoint_id"]] = (x, y)
        title = f"{c['kind']} checkpoint {c['checkpoint_id']} on {c['branch']}"
        nodes.append(
            Node(
                c["checkpoint_id"],
                x,
                y,
                c["kind"],
                c["branch"],
                _label(c),
                title,
                tuple(heads.get(c["checkpoint_id"], ())),
            )
        )
        parent = c.get("parent_id")
        if parent in pos:
            px, py = pos[parent]
            if px == x:
                edges.append(Edge(f"M{px},{py} L{x},{y}", fork=False))
            else:  # a fork: bend from the parent into the branch's lane at once, then run down it
                mid = py + ROW // 2
                edges.append(Edge(f"M{px},{py} C{px},{mid} {x},{mid} {x},{py + ROW} L{x},{y}", fork=True))
    text_x = PAD + max(len(lanes), 1) * LANE + TEXT_GAP
    return Layout(
        width=text_x + 460, height=PAD * 2 + max(len(checkpoints) - 1, 0) * ROW, text_x=text_x, nodes=nodes, edges=edges
    )

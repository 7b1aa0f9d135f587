"""``verify``: re-check every row of a run against the hashes and rules that bind it.

What it checks: each blob against its address; each journal entry against its hash
(which binds its run, from schema 4 on) and its checkpoint; each checkpoint against
its parent's hash, its manifest, metadata and sealed journal, and every blob its
manifest reaches; each branch: its head exists, lies on the branch's own line and is
its newest checkpoint, its base exists, its row matches its seal; the run row: labels,
metadata, its derived status and its sequence counters. With a seal key, every MAC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clew.errors import IntegrityError
from clew.store import _manifests, _splice, _state, _tree
from clew.store._query import Context, Op
from clew.store._read import manifest_from_store, run_key, sealed_meta
from clew.store._records import Problem, VerifyReport
from clew.store._seal import checkpoint_hash, head_seal, journal_hash

_RANK = {"running": 5, "paused": 4, "failed": 3, "completed": 2, "cancelled": 1}


def derived_status(statuses: list[str]) -> str | None:
    """A run's status from its branches' (see :class:`~clew.store.RunRecord`)."""
    ranked = [s for s in statuses if s in _RANK]
    return max(ranked, key=_RANK.__getitem__) if ranked else None


def verify(ctx: Context, run_id: str, require_keyed: bool = False) -> Op[VerifyReport]:
    rk = yield from run_key(ctx, run_id)
    run_row, blob_rows, journal_rows, ckpt_rows, branch_rows = yield [
        ctx.q("verify_run", (rk,)),
        ctx.q("all_blobs", (rk,), "all"),
        ctx.q("all_journal", (rk,), "all"),
        ctx.q("all_checkpoints", (rk,), "all"),
        ctx.q("list_branches", (rk,), "all"),
    ]
    problems: list[Problem] = []
    macs = _Macs(ctx, problems, require_keyed)
    plains = _blobs(ctx, blob_rows, problems)
    ckpts = {r[0]: r for r in ckpt_rows}
    stored = {bytes(addr) for addr, _ in blob_rows}
    by_ckpt = _journal(ctx, run_id, journal_rows, ckpts, {r[0] for r in branch_rows}, plains, stored, problems)
    hashes: dict[str, bytes] = {r[0]: bytes(r[7]) for r in ckpt_rows}
    whole = _manifests.resolve_all(lambda data: manifest_from_store(ctx, data), {r[0]: (r[3], r[5]) for r in ckpt_rows})
    pruned = 0
    for cid, _seq, branch, parent, kind, manifest, meta, h, created, mac in ckpt_rows:
        if not bytes(manifest):  # pruned by retention: its hash stands for it, its children chain to it
            pruned += 1
            macs.check("checkpoint", cid, bytes(h), mac)
            continue
        try:
            parent_hash = hashes[parent] if parent is not None else b""
            manifest_plain = manifest_from_store(ctx, bytes(manifest))
            decoded: Mapping[str, Any] | None = None
            if _manifests.is_delta(manifest_plain):  # stored as a change: the seal covers the whole one
                known = whole[cid]
                if isinstance(known, IntegrityError):
                    problems.append(Problem("checkpoint", cid, str(known)))
                    continue
                decoded = known.manifest
                manifest_plain = ctx.codec.dumps(decoded, "manifest")[0]
            expect = checkpoint_hash(
                parent_hash,
                cid,
                branch,
                kind,
                manifest_plain,
                sealed_meta(ctx, bytes(meta)),
                created,
                by_ckpt.get(cid, []),
            )
            if expect != bytes(h):
                problems.append(Problem("checkpoint", cid, "hash does not match its content, parent or journal"))
                continue
            macs.check("checkpoint", cid, bytes(h), mac)
            for addr in manifest_addrs(decoded if decoded is not None else ctx.codec.loads(manifest_plain), plains):
                if addr not in stored:  # a stored but damaged blob is reported above
                    problems.append(Problem("manifest", cid, f"references missing blob {addr.hex()}"))
        except KeyError:
            problems.append(Problem("checkpoint", cid, f"parent {parent!r} is missing"))
        except Exception as exc:
            problems.append(Problem("checkpoint", cid, f"cannot be read: {exc}"))
    _branches(run_id, branch_rows, ckpts, macs, problems)
    _run(ctx, run_id, run_row, [r[4] for r in branch_rows], ckpt_rows, journal_rows, problems)
    return VerifyReport(
        run_id,
        len(ckpt_rows),
        len(blob_rows),
        len(journal_rows),
        tuple(problems),
        branches=len(branch_rows),
        keyed=macs.keyed,
        pruned=pruned,
        unkeyed=macs.unkeyed,
    )


class _Macs:
    """Checks keyed seals and counts what could and could not be checked."""

    def __init__(self, ctx: Context, problems: list[Problem], require: bool) -> None:
        self.key = ctx.seal_key
        self.problems = problems
        self.require = require
        self.keyed = 0
        self.unkeyed = 0

    def check(self, kind: Any, ident: str, sealed: bytes, mac: Any) -> None:
        ok = self.key.check(sealed, bytes(mac)) if self.key is not None and mac is not None else None
        if ok is None:
            self.unkeyed += 1
            if self.require:
                why = "has no keyed seal" if mac is None else "has a keyed seal whose key is not available here"
                self.problems.append(Problem(kind, ident, why))
        elif ok:
            self.keyed += 1
        else:
            self.problems.append(Problem(kind, ident, "keyed seal does not match: the row was changed without the key"))


def _blobs(ctx: Context, rows: list[Any], problems: list[Problem]) -> dict[bytes, bytes]:
    plains: dict[bytes, bytes] = {}
    for addr, data in rows:
        addr = bytes(addr)
        try:
            plains[addr] = ctx.codec.unwrap(bytes(data))
            ok = ctx.codec.addressed(plains[addr], addr, bytes(data))
        except Exception as exc:  # undecodable bytes are as bad as wrong ones
            problems.append(Problem("blob", addr.hex(), f"cannot be read: {exc}"))
            continue
        if not ok:
            problems.append(Problem("blob", addr.hex(), "content does not match its address"))
    return plains


def _journal(
    ctx: Context,
    run_id: str,
    rows: list[Any],
    ckpts: Mapping[str, Any],
    branches: set[str],
    plains: Mapping[bytes, bytes],
    stored: set[bytes],
    problems: list[Problem],
) -> dict[str | None, list[bytes]]:
    by_ckpt: dict[str | None, list[bytes]] = {}
    for seq, branch, ckpt, kind, data, h, created, hv in rows:
        try:
            bound = run_id if int(hv) >= 2 else None
            raw = bytes(data)
            plain = ctx.codec.unwrap(raw)
            lost: list[bytes] = []
            if ctx.codec.spliced(bytes(data)):
                lost = [a for a in _splice.refs(plain) if a not in stored]
                if lost:
                    problems.append(Problem("journal", str(seq), f"references missing blob {lost[0].hex()}"))
                elif all(a in plains for a in _splice.refs(plain)):  # a damaged blob is reported above
                    plain = _splice.join(plain, plains)
                else:
                    lost = [b""]
            sealed = ctx.codec.sealable(plain, encrypted=ctx.codec.keyed(raw))
            good = bool(lost) or journal_hash(seq, branch, kind, sealed, created, bound) == bytes(h)
        except Exception as exc:
            problems.append(Problem("journal", str(seq), f"cannot be read: {exc}"))
            good = True
        if not good:
            problems.append(
                Problem("journal", str(seq), "content does not match its hash (or it belongs to another run)")
            )
        if ckpt is not None and ckpt not in ckpts:
            problems.append(Problem("journal", str(seq), f"is sealed into checkpoint {ckpt!r}, which is missing"))
        if ckpt is None and branch not in branches:
            problems.append(Problem("journal", str(seq), f"is pending on branch {branch!r}, which does not exist"))
        by_ckpt.setdefault(ckpt, []).append(bytes(h))
    return by_ckpt


def _branches(run_id: str, rows: list[Any], ckpts: Mapping[str, Any], macs: _Macs, problems: list[Problem]) -> None:
    newest: dict[str, tuple[int, str]] = {}
    for cid, seq, branch, *_ in ckpts.values():
        if branch not in newest or seq > newest[branch][0]:
            newest[branch] = (int(seq), cid)
    names = {r[0] for r in rows}
    for name, head, base, _created, _status, _error, _owner, _expires, _epoch, seal, _updated, mac, *_ in rows:
        if base is not None and base not in ckpts:
            problems.append(Problem("branch", name, f"its base checkpoint {base!r} is missing"))
        head_hash = None
        if head is not None:
            row = ckpts.get(head)
            if row is None:
                problems.append(Problem("branch", name, f"its head {head!r} is missing"))
                continue
            head_hash = bytes(row[7])
            own = newest.get(name)
            if row[2] != name and not (head == base and own is None):
                problems.append(Problem("branch", name, f"its head {head!r} lies on branch {row[2]!r}, not on it"))
            elif own is not None and own[1] != head:
                problems.append(
                    Problem(
                        "branch", name, f"its head is {head!r} but its newest checkpoint is {own[1]!r}: it was moved"
                    )
                )
        elif name in newest:
            problems.append(Problem("branch", name, "has checkpoints but no head"))
        if seal is not None:
            expect = head_seal(run_id, name, head, head_hash)
            if expect != bytes(seal):
                problems.append(Problem("branch", name, "does not match its seal: its head was changed"))
            else:
                macs.check("branch", name, expect, mac)
        elif head is not None:
            problems.append(Problem("branch", name, "has no seal"))
    for branch in newest:
        if branch not in names:
            problems.append(Problem("branch", branch, "has checkpoints but its branch row is missing"))


def _run(
    ctx: Context,
    run_id: str,
    row: Any,
    statuses: list[str],
    ckpt_rows: list[Any],
    journal_rows: list[Any],
    problems: list[Problem],
) -> None:
    if row is None:
        problems.append(Problem("run", run_id, "its row is missing"))
        return
    labels, meta, status, ckpt_seq, journal_seq = row
    try:
        parsed = json.loads(labels) if isinstance(labels, str | bytes) else labels
        if not isinstance(parsed, dict):
            problems.append(Problem("run", run_id, "its labels are not a JSON object"))
    except ValueError:
        problems.append(Problem("run", run_id, "its labels are not valid JSON"))
    try:
        if not isinstance(ctx.codec.decode(bytes(meta)), dict):
            problems.append(Problem("run", run_id, "its metadata is not a map"))
    except Exception as exc:
        problems.append(Problem("run", run_id, f"its metadata cannot be read: {exc}"))
    if not statuses:
        problems.append(Problem("run", run_id, "has no branches"))
    elif status != derived_status(statuses):
        problems.append(
            Problem("run", run_id, f"its status is {status!r} but its branches say {derived_status(statuses)!r}")
        )
    top = max((int(r[1]) for r in ckpt_rows), default=0)
    if top > int(ckpt_seq) or (int(ckpt_seq) > 0 and not ckpt_rows):
        problems.append(Problem("run", run_id, f"its checkpoint counter is {ckpt_seq} but checkpoints reach seq {top}"))
    elif top < int(ckpt_seq):  # a checkpoint row is never deleted from a live run (retention keeps its row)
        problems.append(
            Problem(
                "run",
                run_id,
                f"its checkpoint counter is {ckpt_seq} but checkpoints reach only seq {top}: a newer one was removed",
            )
        )
    seqs = [int(r[1]) for r in ckpt_rows]
    if len(set(seqs)) != len(seqs):
        problems.append(Problem("run", run_id, "two checkpoints share a sequence number"))
    jtop = max((int(r[0]) for r in journal_rows), default=0)
    if jtop > int(journal_seq):
        problems.append(Problem("run", run_id, f"its journal counter is {journal_seq} but entries reach seq {jtop}"))


def manifest_addrs(manifest: Mapping[str, Any], plains: Mapping[bytes, bytes]) -> list[bytes]:
    """Every blob a manifest reaches, index nodes expanded where they are readable."""
    out: list[bytes] = []
    todo: list[tuple[bytes, int]] = []
    for entry in manifest.values():
        if entry[0] == "v":
            out.append(bytes(entry[1]))
        elif entry[0] == "t":
            found, missing = _tree.reachable([_tree.parse_ref(*entry[1:6])], plains)
            out.extend(found)
            out.extend(missing)
        else:
            todo.extend((a, h) for a, _, h in _state.manifest_roots(entry))
    while todo:
        addr, height = todo.pop()
        out.append(addr)
        if height > 0 and addr in plains:
            todo.extend((a, height - 1) for a, _ in _state.node_children(plains[addr]))
    return out

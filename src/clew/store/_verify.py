"""``verify``: re-hash every blob, journal entry and checkpoint of a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clew.store import _state
from clew.store._query import Context, Op
from clew.store._read import manifest_from_store, run_key, sealed_meta
from clew.store._records import (
    Problem,
    VerifyReport,
)
from clew.store._seal import checkpoint_hash, journal_hash


def verify(ctx: Context, run_id: str) -> Op[VerifyReport]:
    rk = yield from run_key(ctx, run_id)
    problems: list[Problem] = []
    blob_rows = yield ctx.q("all_blobs", (rk,), "all")
    plains: dict[bytes, bytes] = {}
    for addr, data in blob_rows:
        addr = bytes(addr)
        try:
            plains[addr] = ctx.codec.unwrap(bytes(data))
            ok = ctx.codec.addressed(plains[addr], addr, bytes(data))
        except Exception as exc:  # undecodable bytes are as bad as wrong ones
            problems.append(Problem("blob", addr.hex(), f"cannot be read: {exc}"))
            continue
        if not ok:
            problems.append(Problem("blob", addr.hex(), "content does not match its address"))
    journal_rows = yield ctx.q("all_journal", (rk,), "all")
    by_ckpt: dict[str | None, list[bytes]] = {}
    for seq, branch, ckpt, kind, data, h, created in journal_rows:
        try:
            raw = bytes(data)
            sealed = ctx.codec.sealable(ctx.codec.unwrap(raw), encrypted=ctx.codec.key_id(raw) is not None)
            good = journal_hash(seq, branch, kind, sealed, created) == bytes(h)
        except Exception as exc:
            problems.append(Problem("journal", str(seq), f"cannot be read: {exc}"))
            good = True
        if not good:
            problems.append(Problem("journal", str(seq), "content does not match its hash"))
        by_ckpt.setdefault(ckpt, []).append(bytes(h))
    ckpt_rows = yield ctx.q("all_checkpoints", (rk,), "all")
    hashes: dict[str, bytes] = {r[0]: bytes(r[7]) for r in ckpt_rows}
    pruned = 0
    for cid, _seq, branch, parent, kind, manifest, meta, h, created in ckpt_rows:
        if not bytes(manifest):  # pruned by retention: its hash stands for it, its children chain to it
            pruned += 1
            continue
        try:
            parent_hash = hashes[parent] if parent is not None else b""
            manifest_plain = manifest_from_store(ctx, bytes(manifest))
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
            for addr in manifest_addrs(ctx.codec.loads(manifest_plain), plains):
                if addr not in plains:
                    problems.append(Problem("manifest", cid, f"references missing blob {addr.hex()}"))
        except KeyError:
            problems.append(Problem("checkpoint", cid, f"parent {parent!r} is missing"))
        except Exception as exc:
            problems.append(Problem("checkpoint", cid, f"cannot be read: {exc}"))
    return VerifyReport(run_id, len(ckpt_rows), len(blob_rows), len(journal_rows), tuple(problems), pruned)


def manifest_addrs(manifest: Mapping[str, Any], plains: Mapping[bytes, bytes]) -> list[bytes]:
    """Every blob a manifest reaches, index nodes expanded where they are readable."""
    out: list[bytes] = []
    todo: list[tuple[bytes, int]] = []
    for entry in manifest.values():
        if entry[0] == "v":
            out.append(bytes(entry[1]))
        else:
            todo.extend((a, h) for a, _, h in _state.manifest_roots(entry))
    while todo:
        addr, height = todo.pop()
        out.append(addr)
        if height > 0 and addr in plains:
            todo.extend((a, height - 1) for a, _ in _state.node_children(plains[addr]))
    return out

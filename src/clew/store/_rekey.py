"""Key rotation and encryption in place.

Each run's rows are encrypted under the run's own data key, stored in its row wrapped
by a keyring key (see :mod:`clew.store._subjects`). So rotating the keyring re-wraps
data keys: :func:`rewrap_batch` re-wraps the keys of up to ``limit`` runs in one
transaction and rewrites no other row. Interrupted, every batch is wholly done or
untouched, and running it again skips keys already under the current key.

:func:`rekey` does the heavier job for one run, in one transaction: it gives a run
written before data keys (or in the clear) a data key, and encrypts under it every row
that is not yet: rows under a keyring key directly (the way clew encrypted before data
keys) and rows stored in the clear, label values included. A row that was in the
clear keeps the address and seal that cover its plaintext; its envelope says so (flag
``0x10``), so ``verify`` still holds.
"""

from __future__ import annotations

import json
from typing import Any

from clew.codec._crypto import LABEL_PREFIX, SUBJECT_PREFIX
from clew.errors import ConfigError, NotFoundError
from clew.store._query import Context, Op, Q
from clew.store._records import SUBJECT_LABEL, RekeyReport, RewrapReport

# Table names here follow the store's schema (see _sql.py).
_SQL = {
    "run": "SELECT rk, labels, meta, dek FROM clew_runs WHERE run_id = ?",
    "blob": "UPDATE clew_blobs SET data = ? WHERE rk = ? AND addr = ?",
    "journal": "UPDATE clew_journal SET data = ? WHERE rk = ? AND seq = ?",
    "checkpoint": "UPDATE clew_checkpoints SET manifest = ?, meta = ? WHERE rk = ? AND checkpoint_id = ?",
    "branches": "SELECT name, error FROM clew_branches WHERE rk = ? AND error IS NOT NULL",
    "branch": "UPDATE clew_branches SET error = ? WHERE rk = ? AND name = ?",
    "run_row": "UPDATE clew_runs SET meta = ?, labels = ?, dek = ? WHERE rk = ?",
    "run_row_pg": "UPDATE clew_runs SET meta = ?, labels = CAST(? AS jsonb), dek = ? WHERE rk = ?",
    "page": "SELECT rk, run_id, dek FROM clew_runs WHERE rk > ? ORDER BY rk LIMIT ?",
    "dek": "UPDATE clew_runs SET dek = ? WHERE rk = ?",
}


def _q(ctx: Context, name: str, params: Any, mode: Any = "many") -> Q:
    sql = _SQL[name]
    if ctx.d.name == "postgres":
        sql = _SQL.get(name + "_pg", sql).replace("?", "%s")
    return Q(sql, params, mode)


def _need_keyring(ctx: Context) -> None:
    if ctx.codec.keyring is None:
        raise ConfigError("rotating or encrypting keys needs a store opened with codec=Codec(keyring=...)")


def rewrap_batch(ctx: Context, after: int, limit: int) -> Op[RewrapReport]:
    """Re-wrap under the current keyring key the data keys of the next ``limit`` runs
    (by internal key, after ``after``), in one transaction."""
    _need_keyring(ctx)
    keyring = ctx.codec.keyring
    assert keyring is not None
    rows = yield _q(ctx, "page", (after, limit), "all")
    updates: list[tuple[bytes, int]] = []
    unkeyed: list[str] = []
    for rk, run_id, dek in rows:
        if dek is None:
            unkeyed.append(run_id)  # written before data keys, or in the clear: needs rekey()
        elif len(dek):  # empty: a data subject's run, under the subject's own key
            again = keyring.rewrap(bytes(dek))
            if again is not None:
                updates.append((again, int(rk)))
    if updates:
        yield _q(ctx, "dek", updates)
    return RewrapReport(
        runs=len(rows),
        rewrapped=len(updates),
        bytes_written=sum(len(u[0]) for u in updates),
        unkeyed=tuple(unkeyed),
        next_cursor=str(rows[-1][0]) if len(rows) == limit else None,
    )


def rekey(ctx: Context, run_id: str) -> Op[RekeyReport]:
    """Give a run a data key if it has none, wrap it under the current key, and encrypt
    under it every row of the run that is not yet (in the clear, or under a keyring key)."""
    _need_keyring(ctx)
    codec = ctx.codec
    keyring = codec.keyring
    assert keyring is not None
    row = yield _q(ctx, "run", (run_id,), "one")
    if row is None:
        raise NotFoundError(f"run {run_id!r} not found")
    rk, stored_labels, run_meta, dek = row
    labels = json.loads(stored_labels) if isinstance(stored_labels, str | bytes) else dict(stored_labels)
    sealed = labels.get(SUBJECT_LABEL)
    subject_kid = codec.subject_key_id(codec.open_label(sealed)) if isinstance(sealed, str) else None
    rewrapped = False
    if subject_kid is not None:  # a subject's run: its data key is the subject's, kept outside the database
        target, new_dek = subject_kid, b""
    elif dek is not None and len(dek):
        target = keyring.add_data_key(bytes(dek))
        again = keyring.rewrap(bytes(dek))
        rewrapped = again is not None
        new_dek = again if again is not None else bytes(dek)
    elif dek is not None:  # a subject's run, and no subject key store here: leave it to one that has it
        return RekeyReport(run_id, rewrapped=False, rows=0, bytes_written=0)
    else:
        target, new_dek = keyring.new_data_key()
        rewrapped = True
    key = codec.data_key(target)

    def stale(blob: bytes) -> bool:
        kid = codec.key_id(blob)
        # a data subject's own key is left alone: erasing the subject destroys it
        return kid != target and not (kid is not None and kid.startswith(SUBJECT_PREFIX))

    def again_(blob: bytes) -> bytes:
        # a manifest stored in the clear is bare msgpack, which never starts with the magic byte
        return codec.rewrap(codec.unwrap(blob) if blob[:1] == b"\xc7" else blob, blob, key)

    blobs, journal, ckpts, branches = yield [
        ctx.q("all_blobs", (rk,), "all"),
        ctx.q("all_journal", (rk,), "all"),
        ctx.q("all_checkpoints", (rk,), "all"),
        _q(ctx, "branches", (rk,), "all"),
    ]
    writes: list[Q] = []
    n = 0
    size = 0

    def add(name: str, rows: list[tuple[Any, ...]], cells: int = 1) -> None:
        nonlocal n, size
        if rows:
            writes.append(_q(ctx, name, rows))
            n += len(rows)
            size += sum(len(c) for r in rows for c in r[:cells])

    add("blob", [(again_(bytes(d)), rk, bytes(a)) for a, d in blobs if stale(bytes(d))])
    add("journal", [(again_(bytes(r[4])), rk, r[0]) for r in journal if stale(bytes(r[4]))])
    crows = []
    for cid, _seq, _branch, _parent, _kind, manifest, meta, *_ in ckpts:
        m, t = bytes(manifest), bytes(meta)
        if stale(m) or stale(t):
            crows.append((again_(m) if stale(m) else m, again_(t) if stale(t) else t, rk, cid))
    add("checkpoint", crows, 2)
    add("branch", [(again_(bytes(e)), rk, name) for name, e in branches if stale(bytes(e))])
    meta = bytes(run_meta)
    sealed_labels = {k: v if v.startswith(LABEL_PREFIX) else codec.seal_label(v) for k, v in labels.items()}
    if stale(meta) or sealed_labels != labels or rewrapped or new_dek != (bytes(dek) if dek is not None else None):
        new_meta = again_(meta) if stale(meta) else meta
        text = json.dumps(sealed_labels, sort_keys=True)
        writes.append(_q(ctx, "run_row", (new_meta, text, new_dek, rk), "rowcount"))
        n += stale(meta)
        size += len(new_dek) + (len(new_meta) if stale(meta) else 0)
    if writes:
        yield writes
    ctx.forget(run_id)  # the writer cache holds no ciphertext, but a clean start costs little
    ctx.subject_kids.pop(run_id, None)
    return RekeyReport(run_id, rewrapped=rewrapped, rows=n, bytes_written=size)

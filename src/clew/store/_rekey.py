"""Key rotation: re-encrypt a run's rows that a retired key protects under the current key.

One run per transaction, so a rotation interrupted anywhere leaves every run either
wholly done or untouched, and running it again finishes the job (rows already under
the current key are skipped). Rows stored in the clear stay so: their seals and
addresses cover their plaintext, unkeyed.
"""

from __future__ import annotations

from typing import Any

from clew.codec._crypto import SUBJECT_PREFIX
from clew.store._query import Context, Op, Q
from clew.store._read import run_key

FLAG_PICKLE = 0x02

# Table names here follow the store's schema (see _sql.py).
_UPDATES = {
    "blob": "UPDATE clew_blobs SET data = ? WHERE rk = ? AND addr = ?",
    "journal": "UPDATE clew_journal SET data = ? WHERE rk = ? AND seq = ?",
    "checkpoint": "UPDATE clew_checkpoints SET manifest = ?, meta = ? WHERE rk = ? AND checkpoint_id = ?",
    "run": "UPDATE clew_runs SET meta = ? WHERE rk = ?",
}


def _q(ctx: Context, name: str, params: list[tuple[Any, ...]]) -> Q:
    sql = _UPDATES[name]
    if ctx.d.name == "postgres":
        sql = sql.replace("?", "%s")
    return Q(sql, params, "many")


def rekey(ctx: Context, run_id: str) -> Op[int]:
    """Re-encrypt a run's encrypted rows not under the keyring's current key; returns how many."""
    codec = ctx.codec
    keyring = codec.keyring
    if keyring is None:
        from clew.errors import ConfigError

        raise ConfigError("rotating keys needs a store opened with codec=Codec(keyring=...)")
    current = keyring.current

    def stale(blob: bytes) -> bool:
        kid = codec.key_id(blob)  # a data subject's own key is left alone: erasing the subject destroys it
        return kid is not None and kid != current and not kid.startswith(SUBJECT_PREFIX)

    def again(blob: bytes) -> bytes:
        return codec.wrap(codec.unwrap(blob), pickled=bool(blob[1] & FLAG_PICKLE))

    rk = yield from run_key(ctx, run_id)
    blobs, journal, ckpts, run = yield [
        ctx.q("all_blobs", (rk,), "all"),
        ctx.q("all_journal", (rk,), "all"),
        ctx.q("all_checkpoints", (rk,), "all"),
        Q("SELECT meta FROM clew_runs WHERE rk = " + ("%s" if ctx.d.name == "postgres" else "?"), (rk,), "one"),
    ]
    writes: list[Q] = []
    rows = [(again(bytes(d)), rk, bytes(a)) for a, d in blobs if stale(bytes(d))]
    if rows:
        writes.append(_q(ctx, "blob", rows))
    jrows = [(again(bytes(r[4])), rk, r[0]) for r in journal if stale(bytes(r[4]))]
    if jrows:
        writes.append(_q(ctx, "journal", jrows))
    crows = []
    for cid, _seq, _branch, _parent, _kind, manifest, meta, *_ in ckpts:
        m, t = bytes(manifest), bytes(meta)
        if stale(m) or stale(t):
            crows.append((again(m) if stale(m) else m, again(t) if stale(t) else t, rk, cid))
    if crows:
        writes.append(_q(ctx, "checkpoint", crows))
    n = len(rows) + len(jrows) + len(crows)
    if run is not None and stale(bytes(run[0])):
        writes.append(_q(ctx, "run", [(again(bytes(run[0])), rk)]))
        n += 1
    if writes:
        yield writes
    ctx.forget(run_id)  # the writer cache holds no ciphertext, but a clean start costs little
    return n

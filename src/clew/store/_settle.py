"""Settling a commit whose outcome was lost with its connection.

When the connection dies while COMMIT is on its way, the transaction may or may not
have committed. After reconnecting, the checkpoint row tells: it exists only if the
commit happened. On PostgreSQL the read first takes a share lock on the run's row,
which every commit of the run holds exclusively until it ends, so a commit still in
flight on the old connection is waited for rather than missed.
"""

from __future__ import annotations

from clew.errors import NotFoundError
from clew.store._query import Context, Op, Q
from clew.store._read import sealed_checkpoint
from clew.store._records import CheckpointRecord


def settle_commit(ctx: Context, run_id: str, checkpoint_id: str) -> Op[CheckpointRecord | None]:
    """The checkpoint if its commit happened, else None (nothing of it was written)."""
    key = ctx.q("run_key", (run_id,))
    lock = " FOR SHARE" if ctx.d.name == "postgres" else ""
    row = yield Q(key.sql + lock, key.params, "one")
    if row is None:
        return None
    try:
        return (yield from sealed_checkpoint(ctx, int(row[0]), run_id, checkpoint_id))
    except NotFoundError:
        return None

"""Which key a store operation writes under: the run's data key, or its data subject's.

With a keyring, each run gets a data key of its own when it is made, stored in its
row wrapped by a keyring key (``clew_runs.dek``): everything the run stores is
encrypted under the data key, so rotating the keyring re-wraps one small key per run
and rewrites no row. With a ``subjects`` key store too, a run tagged with a data
subject (label ``clew.subject``) is encrypted under the subject's key instead, kept
outside the database, so that destroying it shreds every copy (its ``dek`` is empty).
A run written before data keys existed has none (``dek`` NULL) and is written under
the keyring's current key until ``clew keys rotate`` gives it one.

An operation learns the run's key where it first looks the run up (``run_key``, or
``create_run``) and sets it as the operation's scope; the codec encrypts under it. A
process remembers each run's write key id beside its run key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clew.codec._crypto import DATA_PREFIX, SCOPE
from clew.errors import ConflictError
from clew.store._query import Context, Q
from clew.store._records import SUBJECT_LABEL


def run_key_query(ctx: Context, run_id: str) -> Q:
    """The run key lookup, with the labels that name the run's subject and its data key."""
    ph = "%s" if ctx.d.name == "postgres" else "?"
    return Q(f"SELECT rk, labels, dek FROM clew_runs WHERE run_id = {ph}", (run_id,), "one")


def remember(ctx: Context, run_id: str, stored_labels: Any, dek: Any) -> None:
    """Note the write key id of a run from its stored labels and data key, and enter it."""
    kid: str | None = None
    if ctx.codec.subject_keys:
        labels = json.loads(stored_labels) if isinstance(stored_labels, str | bytes) else stored_labels
        sealed = labels.get(SUBJECT_LABEL) if isinstance(labels, dict) else None
        kid = ctx.codec.subject_key_id(ctx.codec.open_label(sealed) if isinstance(sealed, str) else None)
    if kid is None and dek:
        kid = ctx.codec.add_data_key(bytes(dek))
    ctx.subject_kids[run_id] = kid
    enter(ctx, run_id)


def remember_new(ctx: Context, run_id: str, labels: Mapping[str, str] | None) -> bytes | None:
    """Choose the write key of a run being created and enter it; returns what its row's
    ``dek`` holds: a new wrapped data key, empty for a subject's run, None in the clear."""
    kid = ctx.codec.subject_key_id((labels or {}).get(SUBJECT_LABEL))
    stored: bytes | None = b"" if kid is not None else None
    if kid is None:
        made = ctx.codec.new_data_key()
        if made is not None:
            kid, stored = made
    ctx.subject_kids[run_id] = kid
    enter(ctx, run_id)
    return stored


def ready(ctx: Context, run_id: str) -> bool:
    """Whether this process knows the run's key and the key a write to it goes under."""
    return not ctx.codec.encrypts or (run_id in ctx.subject_kids and run_id in ctx.run_keys)


def enter(ctx: Context, run_id: str) -> None:
    """Make the run's data or subject key the one this operation writes under."""
    if ctx.codec.encrypts:
        SCOPE.set(ctx.subject_kids.get(run_id))


def same_run(ctx: Context, run_id: str, dek: Any) -> bool:
    """Whether the data key this operation encrypted under is still the run's (``dek``: the
    run row's column, as returned by the statement that locked the row)."""
    kid = ctx.subject_kids.get(run_id)
    if not ctx.codec.encrypts or kid is None or not kid.startswith(DATA_PREFIX):
        return True
    stored = bytes(dek).partition(b"\0")[0].decode("ascii", "replace") if dek else None
    return stored == kid


def check_same_run(ctx: Context, run_id: str, dek: Any) -> None:
    """After locking a run's row (``bump_*_seq`` returns its ``dek``): check that the data
    key this operation encrypted under is still the run's. It is not when the run was
    erased and made again under the same internal key by another process since this one
    looked it up; the transaction must then write nothing, or rows would be left under a
    key that went with the old run.

    Raises:
        ConflictError: the run was made again; forget it and retry.
    """
    if not same_run(ctx, run_id, dek):
        ctx.run_keys.pop(run_id, None)
        ctx.subject_kids.pop(run_id, None)
        ctx.forget(run_id)
        raise ConflictError(
            f"run {run_id!r} was erased and made again by another process while this one was writing to it; "
            "nothing was written: retry"
        )

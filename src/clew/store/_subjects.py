"""Which key a store operation writes under, when data subjects have keys of their own.

With a keyring whose ``subjects`` key store is set, everything a run tagged with a
data subject (label ``clew.subject``) stores is encrypted under that subject's key.
An operation learns the run's subject where it first looks the run up (``run_key``, or
``create_run``) and sets it as the operation's scope; the codec encrypts under it. A
process remembers each run's subject key id beside its run key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clew.codec._crypto import SCOPE
from clew.store._query import Context, Q
from clew.store._records import SUBJECT_LABEL


def run_key_query(ctx: Context, run_id: str) -> Q:
    """The run key lookup, with the labels that name the run's subject."""
    ph = "%s" if ctx.d.name == "postgres" else "?"
    return Q(f"SELECT rk, labels FROM clew_runs WHERE run_id = {ph}", (run_id,), "one")


def remember(ctx: Context, run_id: str, stored_labels: Any) -> None:
    """Note the subject key id of a run from its stored labels, and enter it."""
    labels = json.loads(stored_labels) if isinstance(stored_labels, str | bytes) else stored_labels
    sealed = labels.get(SUBJECT_LABEL) if isinstance(labels, dict) else None
    subject = ctx.codec.open_label(sealed) if isinstance(sealed, str) else None
    ctx.subject_kids[run_id] = ctx.codec.subject_key_id(subject)
    enter(ctx, run_id)


def remember_new(ctx: Context, run_id: str, labels: Mapping[str, str] | None) -> None:
    """Note the subject key id of a run being created, and enter it."""
    ctx.subject_kids[run_id] = ctx.codec.subject_key_id((labels or {}).get(SUBJECT_LABEL))
    enter(ctx, run_id)


def ready(ctx: Context, run_id: str) -> bool:
    """Whether this process knows the key a write to ``run_id`` goes under."""
    return not ctx.codec.subject_keys or run_id in ctx.subject_kids


def enter(ctx: Context, run_id: str) -> None:
    """Make the run's subject key (if any) the one this operation writes under."""
    if ctx.codec.subject_keys:
        SCOPE.set(ctx.subject_kids.get(run_id))

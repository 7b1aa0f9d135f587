"""Erasure: remove a run, or every run of a data subject, with all they reference.

Blobs, journal entries, checkpoints and branches are keyed by run, so a run's rows
are referenced by that run alone: removing them leaves every other run whole. All the
runs of one erasure go in one transaction. Overwriting the freed bytes on disk is the
backend's part (:meth:`Store.erase` calls it after the commit).
"""

from __future__ import annotations

from clew.errors import ConfigError
from clew.store._ops import delete_run, list_runs
from clew.store._query import Context, Op
from clew.store._records import SUBJECT_LABEL, EraseReport


def erase(ctx: Context, run_id: str | None, subject: str | None) -> Op[EraseReport]:
    if (run_id is None) == (subject is None):
        raise ConfigError("erase needs a run id or subject=..., not both and not neither")
    if run_id is not None:
        ids = [run_id]
    else:
        assert subject is not None
        ids = []
        cursor = None
        while True:
            page = yield from list_runs(
                ctx,
                status=None,
                branch_status=None,
                agent=None,
                labels={SUBJECT_LABEL: subject},
                limit=500,
                cursor=cursor,
            )
            ids.extend(r.run_id for r in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    totals = [0, 0, 0, 0]
    for rid in ids:
        d = yield from delete_run(ctx, rid)
        for i, n in enumerate((d.checkpoints, d.blobs, d.journal_entries, d.branches)):
            totals[i] += n
    return EraseReport(
        tuple(ids), checkpoints=totals[0], blobs=totals[1], journal_entries=totals[2], branches=totals[3]
    )

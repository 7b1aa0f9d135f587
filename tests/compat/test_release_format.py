"""Checkpoints written by the previous release (dicts stored whole, one blob each) still load and verify.

``release-0.1.db`` was written by clew 0.1 from :mod:`tests.compat._history`; see there.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import clew
from tests.compat import _history
from tests.helpers.raw import whole_manifest

FIXTURE = Path(__file__).with_name("release-0.1.db")


def _open_copy(tmp_path: Path) -> clew.Store:
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)  # opening migrates the file: never touch the checked-in one
    return clew.open(f"sqlite:///{path}")


def _ids(store: clew.Store) -> list[str]:
    main = [c.checkpoint_id for c in store.list_checkpoints(_history.RUN_ID, limit=1000).items]
    alt = store.list_checkpoints(_history.RUN_ID, branch="alt", limit=1).items
    return [*reversed(main), alt[0].checkpoint_id]


def test_every_old_checkpoint_loads_as_written_and_verifies(tmp_path: Path) -> None:
    with _open_copy(tmp_path) as store:
        expected = _history.states()
        ids = _ids(store)
        assert len(ids) == len(expected)
        for cid, (_, _, state, _) in zip(ids, expected, strict=True):
            assert store.load_state(_history.RUN_ID, cid) == state
        journal = store.list_journal(_history.RUN_ID, checkpoint_id=ids[5])
        assert [(e.kind, e.data) for e in journal] == expected[5][3]
        report = store.verify(_history.RUN_ID)
        assert report.problems == () and report.checkpoints == len(expected)


def test_an_old_run_continues_in_the_new_format_and_stays_verifiable(tmp_path: Path) -> None:
    with _open_copy(tmp_path) as store:
        head = _ids(store)[-2]
        state = store.load_state(_history.RUN_ID, head)
        state["results"]["call-new"] = {"output": "more", "step": 99}
        state["messages"].append({"role": "user", "content": "again"})
        new = store.commit(_history.RUN_ID, state=state, parent=head)
    with _open_copy_again(tmp_path) as fresh:
        assert fresh.load_state(_history.RUN_ID, new.checkpoint_id) == state
        assert fresh.get_checkpoint(_history.RUN_ID, new.checkpoint_id).parent_id == head
        assert fresh.verify(_history.RUN_ID).problems == ()
    # The grown dict (flat: small values) is now a map log; the old checkpoints keep their whole-value blobs.
    assert _manifest(tmp_path, new.checkpoint_id)["results"][0] == "m"
    assert _manifest(tmp_path, head)["results"][0] == "v"


def _manifest(tmp_path: Path, checkpoint_id: str) -> dict[str, list[object]]:
    with sqlite3.connect(tmp_path / "old.db") as db:
        table = "clew_checkpoints" if _has_table(db, "clew_checkpoints") else "checkpoints"
        rows = db.execute(f"SELECT checkpoint_id, parent_id, manifest FROM {table}").fetchall()
    return whole_manifest({cid: (parent, m) for cid, parent, m in rows}, checkpoint_id)


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def _open_copy_again(tmp_path: Path) -> clew.Store:
    return clew.open(f"sqlite:///{tmp_path / 'old.db'}")

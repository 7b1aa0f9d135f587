"""Stores written at schema 7, when a large flat dict was a tree, read and continue as map logs.

``tests/fixtures/store_v7_dict_tree.db`` was written by that version; see
``tests/fixtures/make_store_v7_dict_tree.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import clew
from clew.store._schema import SCHEMA_VERSION
from tests.fixtures.make_store_v7_dict_tree import states
from tests.helpers.raw import whole_manifest

FIXTURE = Path(__file__).parents[1] / "fixtures" / "store_v7_dict_tree.db"


def _manifest(path: Path, checkpoint_id: str) -> dict[str, object]:
    import sqlite3

    con = sqlite3.connect(path)
    sql = "SELECT checkpoint_id, parent_id, manifest FROM clew_checkpoints"
    rows = {cid: (parent, m) for cid, parent, m in con.execute(sql)}
    con.close()
    return whole_manifest(rows, checkpoint_id)


def test_dict_trees_load_and_the_run_goes_on_as_a_map_log(tmp_path: Path) -> None:
    path = tmp_path / "v7.db"
    shutil.copy(FIXTURE, path)  # opening migrates the file: never touch the checked-in one
    expected = states()
    with clew.open(f"sqlite:///{path}") as store:
        assert store.migrate() == SCHEMA_VERSION
        ids = [c.checkpoint_id for c in reversed(store.list_checkpoints("dict-tree", limit=100).items)]
        assert len(ids) == len(expected)
        assert _manifest(path, ids[-1])["results"][0] == "t"  # type: ignore[index]
        for cid, want in zip(ids, expected, strict=True):
            assert store.load_state("dict-tree", cid) == want
        assert store.load_states("dict-tree", ids) == dict(zip(ids, expected, strict=True))
        nxt = {"results": {**expected[-1]["results"], "call_new": "a new result " * 30}, "step": 12}  # type: ignore[dict-item]
        c = store.commit("dict-tree", state=nxt, parent=ids[-1])
        assert store.verify("dict-tree").ok
    assert _manifest(path, c.checkpoint_id)["results"][0] == "m"  # type: ignore[index]
    with clew.open(f"sqlite:///{path}") as store:
        assert store.load_state("dict-tree", c.checkpoint_id) == nxt
        assert store.load_state("dict-tree", ids[-1]) == expected[-1]

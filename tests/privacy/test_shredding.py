"""Crypto-shredding: a data subject's runs are encrypted under the subject's own key, and
erasing the subject destroys it, so copies elsewhere (backups, WAL) can no longer be read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import clew
from clew.codec import Codec, FileSubjectKeys, Keyring
from clew.errors import MissingKeyError
from tests.helpers.raw import Raw
from tests.privacy.conftest import spread


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    keys = tmp_path / "subject-keys"
    keys.mkdir()
    return Keyring({"k1": Keyring.generate()}, subjects=FileSubjectKeys(keys))


def cells(raw: Raw, run_id: str) -> list[bytes]:
    rk = raw.rk(run_id)
    out = [r[0] for r in raw.rows("SELECT data FROM blobs WHERE rk = ?", rk)]
    out += [r[0] for r in raw.rows("SELECT data FROM journal WHERE rk = ?", rk)]
    out += [c for r in raw.rows("SELECT manifest, meta FROM checkpoints WHERE rk = ?", rk) for c in r]
    out += [r[0] for r in raw.rows("SELECT meta FROM runs WHERE rk = ?", rk)]
    return [bytes(c) for c in out]


def test_erasing_a_subject_destroys_its_key(stores: Any, keyring: Keyring, tmp_path: Path) -> None:
    store = stores.open(codec=Codec(keyring=keyring))
    spread(store, "MARKER-shred-a", "a", subject="cust-1")
    spread(store, "MARKER-shred-b", "b", subject="cust-2")
    spread(store, "MARKER-shred-c", "c", subject="cust-1")
    kid = keyring.subject_key_id("cust-1")
    assert kid.startswith("s.") and "cust" not in kid  # the key store never sees the subject
    raw = Raw(stores, store)
    try:
        backup = {run_id: cells(raw, run_id) for run_id in ("a", "b", "c")}  # what a backup holds
    finally:
        raw.close()
    codec = store.codec
    assert {codec.key_id(c) for c in backup["a"] + backup["c"]} == {kid}
    assert {codec.key_id(c) for c in backup["b"]} == {keyring.subject_key_id("cust-2")}
    assert (tmp_path / "subject-keys" / kid).exists()

    report = store.erase(subject="cust-1")
    assert sorted(report.run_ids) == ["a", "c"]
    assert not (tmp_path / "subject-keys" / kid).exists()
    # the backup's copies of the subject's rows no longer decrypt, in any process
    fresh = Codec(keyring=Keyring({"k1": keyring.key("k1")}, subjects=keyring.subjects))
    for blob in backup["a"] + backup["c"]:
        with pytest.raises(MissingKeyError, match="crypto-shredding") as info:
            fresh.unwrap(blob)
        assert info.value.key_id == kid
    # the other subject's data is untouched and still read and written
    head = store.get_branch("b").head
    assert head is not None and store.load_state("b", head)["note"] == "MARKER-shred-b"
    assert all(fresh.unwrap(c) is not None for c in backup["b"])
    assert store.verify("b").ok


def test_a_new_process_writes_under_the_subject_key(shared_stores: Any, keyring: Keyring) -> None:
    first = shared_stores.open(codec=Codec(keyring=keyring))
    first.create_run("r", agent="a", labels={clew.store.SUBJECT_LABEL: "cust-7"})
    c1 = first.commit("r", state={"v": 1}, parent=None)
    second = shared_stores.open(codec=Codec(keyring=keyring))  # knows nothing of "r" yet
    c2 = second.commit("r", state={"v": 2}, parent=c1.checkpoint_id)
    second.append_journal("r", [("note", {"text": "hello"})])
    raw = Raw(shared_stores, second)
    try:
        kids = {second.codec.key_id(c) for c in cells(raw, "r")}
    finally:
        raw.close()
    assert kids == {keyring.subject_key_id("cust-7")}
    assert second.load_state("r", c2.checkpoint_id) == {"v": 2}


def test_runs_without_a_subject_use_the_keyring_key(store: clew.Store, keyring: Keyring) -> None:
    del store
    codec = Codec(keyring=keyring)
    enc = clew.open("memory://", codec=codec)
    enc.create_run("r", agent="a")
    c = enc.commit("r", state={"v": 1}, parent=None)
    assert enc.load_state("r", c.checkpoint_id) == {"v": 1}
    assert enc.erase(subject="nobody").run_ids == ()
    # rotation leaves subject keys alone: only erasure ends them
    enc.create_run("s", agent="a", labels={clew.store.SUBJECT_LABEL: "cust-9"})
    enc.commit("s", state={"v": 1}, parent=None)
    assert enc.rekey("s").rows == 0


def test_two_makers_of_one_subject_key_agree(tmp_path: Path) -> None:
    import threading

    keys = FileSubjectKeys(tmp_path)
    made: list[bytes | None] = []
    threads = [threading.Thread(target=lambda: made.append(keys.get("s.0123", create=True))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 1 and len(made[0] or b"") == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.0123"]
    keys.destroy("s.0123")
    keys.destroy("s.0123")  # already gone: no error
    assert keys.get("s.0123", create=False) is None


def test_a_claim_journals_under_the_subject_key(shared_stores: Any, keyring: Keyring) -> None:
    maker = shared_stores.open(codec=Codec(keyring=keyring))
    maker.create_run("q", agent="a", labels={clew.store.SUBJECT_LABEL: "cust-8"}, state={"v": 1})
    worker = shared_stores.open(codec=Codec(keyring=keyring))  # another process: knows nothing of "q"
    (lease,) = worker.claim_expired(owner="w", ttl=30, agent="a")
    raw = Raw(shared_stores, worker)
    try:
        kids = {worker.codec.key_id(c) for c in cells(raw, "q")}
    finally:
        raw.close()
    assert kids == {keyring.subject_key_id("cust-8")}  # the claim's entry too
    (entry,) = worker.list_journal("q")
    assert entry.kind == "lease" and entry.data["owner"] == "w" and entry.data["epoch"] == lease.epoch
    assert worker.verify("q").ok

"""Encryption at rest: nothing a user supplied is on disk in the clear, on every backend."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

import clew
from clew.codec import Codec, Keyring
from clew.errors import DecryptError, IntegrityError, MissingKeyError
from tests.helpers.raw import Raw
from tests.helpers.scan import pg_wal_kept, total_copies
from tests.privacy.conftest import spread


def test_the_scan_finds_the_marker_without_encryption(stores: Any, marker: str) -> None:
    """The control: the same run without a keyring leaves the marker all over the disk."""
    store = stores.open()
    with contextlib.ExitStack() as stack:
        wal = stack.enter_context(pg_wal_kept(stores)) if stores.backend == "postgres" else None
        spread(store, marker)
        found = total_copies(stores, store, marker)
        assert sum(c["plain"] + c["zstd"] for c in found.values()) > 5, found
        if wal is not None:
            assert sum(wal(marker).values()) > 0  # the log holds it too


def test_no_plaintext_anywhere_with_encryption(stores: Any, marker: str, keyring: Keyring) -> None:
    store = stores.open(codec=Codec(keyring=keyring))
    with contextlib.ExitStack() as stack:
        wal = stack.enter_context(pg_wal_kept(stores)) if stores.backend == "postgres" else None
        spread(store, marker)
        assert total_copies(stores, store, marker) == {}  # SQLite: the file and its WAL
        if wal is not None:
            assert wal(marker) == {"plain": 0, "zstd": 0, "pglz": 0}  # PostgreSQL's log
    # and it all reads back
    run = store.get_run("r")
    assert run.labels["ticket"] == marker and run.metadata["note"] == marker
    head = store.get_branch("r").head
    assert head is not None
    state = store.load_state("r", head)
    assert state["note"] == marker and state["answer"] == f"yes, {marker}"
    assert store.list_runs(labels={"ticket": marker}).items[0].run_id == "r"
    assert store.verify("r").ok
    kinds = {e.kind for e in store.list_journal("r")}
    assert {"call.intent", "call.outcome", "answer", "step.error"} <= kinds


def test_addresses_are_keyed(keyring: Keyring) -> None:
    plain, _ = Codec().dumps("the same value")
    keyed = Codec(keyring=keyring)
    other = Codec(keyring=Keyring({"k1": Keyring.generate()}))
    assert keyed.address(plain) != Codec().address(plain)
    assert keyed.address(plain) != other.address(plain)
    assert keyed.address(plain) == Codec(keyring=keyring).address(plain)  # still deduplicates


def test_equal_values_deduplicate_under_encryption(stores: Any, keyring: Keyring) -> None:
    store = stores.open(codec=Codec(keyring=keyring))
    store.create_run("r", agent="a")
    c1 = store.commit("r", state={"a": "same" * 100, "b": 1}, parent=None)
    store.commit("r", state={"a": "same" * 100, "b": 2}, parent=c1.checkpoint_id)
    raw = Raw(stores, store)
    try:
        assert raw.counts("r")["blobs"] == 3  # "a" once, b=1, b=2
    finally:
        raw.close()


def test_a_missing_key_names_its_id_and_writes_nothing(shared_stores: Any, keyring: Keyring) -> None:
    store = shared_stores.open(codec=Codec(keyring=keyring))
    store.create_run("r", agent="a")
    c1 = store.commit("r", state={"secret": "x"}, parent=None)
    other = shared_stores.open(codec=Codec(keyring=Keyring({"k2": Keyring.generate()})))
    with pytest.raises(MissingKeyError, match="'k1'") as info:
        other.load_state("r", c1.checkpoint_id)
    assert info.value.key_id == "k1"
    with pytest.raises(MissingKeyError):
        other.commit("r", state={"secret": "y"}, parent=c1.checkpoint_id)
    plain = shared_stores.open()
    with pytest.raises(MissingKeyError, match="no keyring"):
        plain.get_run("r")
    # nothing was written; the right key still reads the last good checkpoint
    assert store.get_branch("r").head == c1.checkpoint_id
    assert store.load_state("r", c1.checkpoint_id) == {"secret": "x"}


def test_a_wrong_key_under_the_same_id_is_a_decrypt_error(shared_stores: Any, keyring: Keyring) -> None:
    store = shared_stores.open(codec=Codec(keyring=keyring))
    store.create_run("r", agent="a")
    c1 = store.commit("r", state={"secret": "x" * 500}, parent=None)
    wrong = shared_stores.open(codec=Codec(keyring=Keyring({"k1": Keyring.generate()})))
    with pytest.raises(DecryptError, match="'k1'"):
        wrong.get_checkpoint("r", c1.checkpoint_id)
    assert store.load_state("r", c1.checkpoint_id) == {"secret": "x" * 500}


def test_changed_ciphertext_is_refused(stores: Any, keyring: Keyring) -> None:
    store = stores.open(codec=Codec(keyring=keyring))
    store.create_run("r", agent="a")
    c1 = store.commit("r", state={"v": "first"}, parent=None)
    raw = Raw(stores, store)
    before = {r[0] for r in raw.rows("SELECT addr FROM blobs")}
    c2 = store.commit("r", state={"v": "second"}, parent=c1.checkpoint_id)
    try:
        [(addr, data)] = [r for r in raw.rows("SELECT addr, data FROM blobs") if r[0] not in before]
        flipped = data[:-1] + bytes((data[-1] ^ 1,))
        raw.execute("UPDATE blobs SET data = ? WHERE addr = ?", flipped, addr)
    finally:
        raw.close()
    store._ctx.forget("r")
    with pytest.raises((DecryptError, IntegrityError)):
        store.load_state("r", c2.checkpoint_id)
    assert not store.verify("r").ok
    assert store.load_state("r", c1.checkpoint_id) == {"v": "first"}


def test_rotation_keeps_old_data_readable(shared_stores: Any) -> None:
    k1, k2 = Keyring.generate(), Keyring.generate()
    old = shared_stores.open(codec=Codec(keyring=Keyring({"k1": k1})))
    old.create_run("r", agent="a")
    c1 = old.commit("r", state={"v": "old"}, parent=None)
    new = shared_stores.open(codec=Codec(keyring=Keyring({"k1": k1, "k2": k2})))  # current: k2, mac: k1
    c2 = new.commit("r", state={"v": "new"}, parent=c1.checkpoint_id)
    assert new.load_state("r", c1.checkpoint_id) == {"v": "old"}
    assert new.load_state("r", c2.checkpoint_id) == {"v": "new"}
    assert new.verify("r").ok
    # the run's data is under its data key, wrapped by k1 until the keys are re-wrapped
    assert old.load_state("r", c2.checkpoint_id) == {"v": "new"}
    assert new.rewrap_keys().rewrapped == 1
    fresh = shared_stores.open(codec=Codec(keyring=Keyring({"k1": k1})))
    with pytest.raises(MissingKeyError, match="'k2'"):
        fresh.load_state("r", c2.checkpoint_id)


def test_turning_encryption_on_keeps_old_plain_data_readable(shared_stores: Any, keyring: Keyring) -> None:
    plain = shared_stores.open()
    plain.create_run("r", agent="a", labels={"team": "blue"})
    c1 = plain.commit("r", state={"v": "old", "w": 1}, parent=None)
    enc = shared_stores.open(codec=Codec(keyring=keyring))
    assert enc.load_state("r", c1.checkpoint_id) == {"v": "old", "w": 1}
    c2 = enc.commit("r", state={"v": "old", "w": 2}, parent=c1.checkpoint_id)
    assert enc.load_state("r", c2.checkpoint_id) == {"v": "old", "w": 2}
    assert enc.get_run("r").labels == {"team": "blue"}
    assert enc.verify("r").ok


def test_the_address_key_must_stay(shared_stores: Any) -> None:
    k1, k2 = Keyring.generate(), Keyring.generate()
    store = shared_stores.open(codec=Codec(keyring=Keyring({"k1": k1})))
    store.create_run("r", agent="a")
    c1 = store.commit("r", state={"v": "x"}, parent=None)
    moved = shared_stores.open(codec=Codec(keyring=Keyring({"k1": k1, "k2": k2}, mac="k2")))
    with pytest.raises(IntegrityError, match=r"mac=<that key id>"):
        moved.load_state("r", c1.checkpoint_id)
    assert store.load_state("r", c1.checkpoint_id) == {"v": "x"}


async def test_async_stores_encrypt_too(stores: Any, keyring: Keyring, marker: str) -> None:
    store = await clew.open_async(stores.url, codec=Codec(keyring=keyring))
    try:
        await store.create_run("r", agent="a", labels={"who": marker})
        c1 = await store.commit("r", state={"v": marker}, parent=None)
        assert await store.load_state("r", c1.checkpoint_id) == {"v": marker}
        assert (await store.get_run("r")).labels == {"who": marker}
    finally:
        await store.close()
    if stores.backend != "memory":
        sync = stores.open(codec=Codec(keyring=keyring))
        assert total_copies(stores, sync, marker) == {}


def test_a_failed_branch_error_is_encrypted(stores: Any, marker: str, keyring: Keyring) -> None:
    store = stores.open(codec=Codec(keyring=keyring))
    agent = clew.Agent("fails", state=dict, store=store)

    @agent.step(start=True)
    def boom(state: dict[str, Any], ctx: clew.Context) -> None:
        raise ValueError(f"no account for {marker}")

    run = agent.start({}, run_id="r")
    assert run.status == "failed"
    assert marker in str(store.get_branch("r").error)
    assert total_copies(stores, store, marker) == {}

"""Envelope encryption: a data key per run, wrapped by a keyring key.

Rotation re-wraps data keys in batches (one transaction each) and rewrites no data row;
runs written before data keys, or in the clear, are encrypted in place by ``rekey``;
a store written before data keys existed keeps reading.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import clew
from clew.cli import main
from clew.codec import Codec, Keyring
from clew.errors import ConflictError, DecryptError, MissingKeyError
from tests.conftest import StoreFactory
from tests.helpers.procs import SRC
from tests.helpers.raw import Raw
from tests.helpers.scan import copies, total_copies
from tests.privacy.conftest import spread
from tests.privacy.test_erasure import _vacuum_full

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v4_keyed.db"
FIXTURE_K1 = bytes(range(32))  # the key tests/fixtures/make_store_v4_keyed.py wrote with
M, K1, K2 = b"m" * 32, b"1" * 32, b"2" * 32


def ring(*ids: str, current: str | None = None) -> Keyring:
    """A keyring of fixed keys; ``m`` keys addresses, seals and labels, and stays."""
    keys = {"m": M, "k1": K1, "k2": K2}
    return Keyring({i: keys[i] for i in ("m", *ids)}, current=current or ids[-1], mac="m")


def data_cells(raw: Raw) -> list[bytes]:
    """Every stored cell that holds user data, except the runs' wrapped data keys."""
    cells = [r[0] for r in raw.rows("SELECT data FROM blobs ORDER BY rk, addr")]
    cells += [r[0] for r in raw.rows("SELECT data FROM journal ORDER BY rk, seq")]
    cells += [c for r in raw.rows("SELECT manifest, meta FROM checkpoints ORDER BY rk, checkpoint_id") for c in r]
    cells += [r[0] for r in raw.rows("SELECT meta FROM runs ORDER BY rk")]
    return [bytes(c) for c in cells]


def deks(raw: Raw) -> dict[str, bytes | None]:
    return {r[0]: r[1] for r in raw.rows("SELECT run_id, dek FROM runs")}


def table_copies(raw: Raw, marker: str) -> dict[str, dict[str, int]]:
    """Copies of ``marker`` in the tables' contents, every column, as the database returns them."""
    found = {}
    for table in ("runs", "branches", "checkpoints", "blobs", "journal"):
        data = b"".join(
            c if isinstance(c, bytes) else str(c).encode() for row in raw.rows(f"SELECT * FROM {table}") for c in row
        )
        c = copies(data, marker.encode())
        if any(c.values()):
            found[table] = c
    return found


def test_each_run_has_its_own_data_key(shared_stores: Any) -> None:
    store = shared_stores.open(codec=Codec(keyring=ring("k1")))
    store.create_run("a", agent="x")
    store.commit("a", state={"v": "a"}, parent=None)
    store.create_run("b", agent="x")
    store.commit("b", state={"v": "b"}, parent=None)
    raw = Raw(shared_stores, store)
    try:
        keys = deks(raw)
        assert keys["a"] != keys["b"] and all(k is not None and k.startswith(b"d.") for k in keys.values())
        kids = {store.codec.key_id(c) for c in data_cells(raw)}
        assert kids == {
            bytes(keys["a"] or b"").split(b"\0")[0].decode(),
            bytes(keys["b"] or b"").split(b"\0")[0].decode(),
        }
        assert {store.codec.keyring.wrapped_by(bytes(k or b"")) for k in keys.values()} == {"k1"}  # type: ignore[union-attr]
    finally:
        raw.close()


def test_rotation_rewraps_keys_in_batches_and_rewrites_no_row(shared_stores: Any) -> None:
    old = shared_stores.open(codec=Codec(keyring=ring("k1")))
    for i in range(5):
        spread(old, f"MARKER-rewrap-{i}", f"r{i}")
    raw = Raw(shared_stores, old)
    try:
        before = data_cells(raw)
        new = shared_stores.open(codec=Codec(keyring=ring("k1", "k2")))
        reports = []
        cursor = None
        while True:
            report = new.rewrap_keys(after=cursor, limit=2)
            reports.append(report)
            cursor = report.next_cursor
            if cursor is None:
                break
        assert [r.runs for r in reports] == [2, 2, 1]
        assert sum(r.rewrapped for r in reports) == 5 and all(r.unkeyed == () for r in reports)
        assert sum(r.bytes_written for r in reports) < 5 * 200  # a wrapped key each, not the rows
        assert data_cells(raw) == before  # no data row was rewritten
        assert new.rewrap_keys().rewrapped == 0  # done: running it again changes nothing
    finally:
        raw.close()
    without_k1 = shared_stores.open(codec=Codec(keyring=ring("k2")))
    for i in range(5):
        assert without_k1.verify(f"r{i}").ok
        head = without_k1.get_branch(f"r{i}").head
        assert head is not None and without_k1.load_state(f"r{i}", head)["note"] == f"MARKER-rewrap-{i}"
    with pytest.raises(MissingKeyError, match="'k2'") as caught:  # a reader without the new key
        shared_stores.open(codec=Codec(keyring=ring("k1"))).load_state("r4", head)
    assert caught.value.key_id == "k2"


def test_a_missing_or_wrong_wrapping_key_rewraps_nothing(shared_stores: Any) -> None:
    old = shared_stores.open(codec=Codec(keyring=ring("k1")))
    spread(old, "MARKER-wrong-1", "a")
    raw = Raw(shared_stores, old)
    try:
        before = deks(raw), data_cells(raw)
        missing = shared_stores.open(codec=Codec(keyring=ring("k2")))
        with pytest.raises(MissingKeyError, match="'k1'") as caught:
            missing.rewrap_keys()
        assert caught.value.key_id == "k1"
        wrong = Keyring({"m": M, "k1": K2, "k2": K2}, current="k2", mac="m")  # k1 under the wrong bytes
        with pytest.raises(DecryptError, match="'k1'"):
            shared_stores.open(codec=Codec(keyring=wrong)).rewrap_keys()
        with pytest.raises(DecryptError, match="'k1'"):
            shared_stores.open(codec=Codec(keyring=wrong)).rekey("a")
        assert (deks(raw), data_cells(raw)) == before
    finally:
        raw.close()
    head = old.get_branch("a").head
    assert head is not None and old.load_state("a", head)["note"] == "MARKER-wrong-1"


def test_a_data_key_moved_to_another_run_does_not_unwrap(shared_stores: Any) -> None:
    store = shared_stores.open(codec=Codec(keyring=ring("k1")))
    for r in ("a", "b"):
        store.create_run(r, agent="x")
        store.commit(r, state={"v": r}, parent=None)
    raw = Raw(shared_stores, store)
    try:
        keys = deks(raw)
        a_id, _, a_wrapped = bytes(keys["a"] or b"").partition(b"\0")
        b_id = bytes(keys["b"] or b"").partition(b"\0")[0]
        raw.execute("UPDATE runs SET dek = ? WHERE run_id = 'b'", b_id + b"\0" + a_wrapped)
    finally:
        raw.close()
    fresh = shared_stores.open(codec=Codec(keyring=ring("k1")))
    head = fresh.get_branch("b").head
    assert head is not None
    with pytest.raises(DecryptError, match=b_id.decode()):
        fresh.load_state("b", head)
    assert a_id != b_id


def test_a_store_written_before_data_keys_reads_and_rotates(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(FIXTURE, db)
    k1 = Keyring({"k1": FIXTURE_K1})
    with clew.open(f"sqlite:///{db}", codec=Codec(keyring=k1)) as store:  # migrates to schema 5
        for run_id in ("plain", "enc"):
            assert store.verify(run_id).ok
            head = store.get_branch(run_id).head
            assert head is not None
            assert store.load_state(run_id, head)["note"] == f"MARKER-fixture-v4-{run_id}"
        # a run without a data key keeps being written under the keyring key
        store.commit("enc", state={"note": "more"}, parent=store.get_branch("enc").head)
    ring2 = Keyring({"k1": FIXTURE_K1, "k2": K2})  # k1 stays: it keys addresses, seals and labels
    with clew.open(f"sqlite:///{db}", codec=Codec(keyring=ring2)) as store:
        report = store.rewrap_keys()
        assert report.rewrapped == 0 and set(report.unkeyed) == {"plain", "enc"}
        done = {r: store.rekey(r) for r in report.unkeyed}
        assert all(d.rewrapped and d.rows > 10 for d in done.values())
        assert store.rekey("enc").rows == 0  # done
        assert store.rewrap_keys().unkeyed == ()
        assert store.scrub()
    raw = sqlite3.connect(db)
    cells = raw.execute("SELECT data FROM clew_blobs UNION ALL SELECT data FROM clew_journal").fetchall()
    labels = [r[0] for r in raw.execute("SELECT labels FROM clew_runs")]
    raw.close()
    kids = {Codec(keyring=ring2).key_id(bytes(c)) for (c,) in cells}
    assert all(k is not None and k.startswith("d.") for k in kids) and len(kids) == 2
    assert all("MARKER" not in text for text in labels)
    for marker in ("MARKER-fixture-v4-plain", "MARKER-fixture-v4-enc"):
        for suffix in ("", "-wal"):
            path = Path(f"{db}{suffix}")
            data = path.read_bytes() if path.exists() else b""
            assert copies(data, marker.encode()) == {"plain": 0, "zstd": 0, "pglz": 0}, (marker, suffix)
    with clew.open(f"sqlite:///{db}", codec=Codec(keyring=ring2)) as store:
        for run_id in ("plain", "enc"):
            assert store.verify(run_id).ok
            head = store.get_branch(run_id).head
            assert head is not None
        assert store.load_state("plain", store.get_branch("plain").head or "")["note"] == "MARKER-fixture-v4-plain"
        assert store.load_state("enc", store.get_branch("enc").head or "")["note"] == "more"
        assert store.get_run("plain").labels["ticket"] == "MARKER-fixture-v4-plain"
        assert [r.run_id for r in store.list_runs(labels={"ticket": "MARKER-fixture-v4-enc"}).items] == ["enc"]


def test_encrypting_rows_written_in_the_clear_leaves_no_copy(shared_stores: Any, compile_default_off: None) -> None:
    plain = shared_stores.open()
    marker = "MARKER-clear-5c1d9e0f"
    spread(plain, marker, "r")
    spread(plain, "MARKER-clear-other", "s")
    enc = shared_stores.open(codec=Codec(keyring=ring("k1")))
    raw = Raw(shared_stores, enc)
    try:
        assert table_copies(raw, marker)  # the control: in the clear
        assert deks(raw) == {"r": None, "s": None}
        report = enc.rekey("r")
        assert report.rewrapped and report.rows > 10 and report.bytes_written > 1000
        assert enc.rekey("r").rows == 0
        assert table_copies(raw, marker) == {}
        assert table_copies(raw, "MARKER-clear-other")  # another run is its own transaction
        enc.rekey("s")
        if shared_stores.backend == "sqlite":
            assert enc.scrub()
        else:  # what docs/privacy.md tells PostgreSQL operators to run afterwards
            _vacuum_full(shared_stores, enc, marker)
        assert total_copies(shared_stores, enc, marker) == {}  # SQLite: file and WAL; PostgreSQL: relation files
    finally:
        raw.close()
    fresh = shared_stores.open(codec=Codec(keyring=ring("k1")))
    assert fresh.verify("r").ok
    head = fresh.get_branch("r").head
    assert head is not None and fresh.load_state("r", head)["note"] == marker
    assert fresh.get_run("r").labels["ticket"] == marker
    assert [r.run_id for r in fresh.list_runs(labels={"ticket": marker}).items] == ["r"]
    journal = fresh.list_journal("r")
    assert any(marker in json.dumps(e.data, default=str) for e in journal)
    with pytest.raises(MissingKeyError):  # the rows need the key now
        shared_stores.open().load_state("r", head)


_CHILD = """
import os, signal, sys
import clew
from clew.codec import Codec, Keyring
from clew.codec import _crypto

M, K1, K2 = b"m" * 32, b"1" * 32, b"2" * 32
url, what, after = sys.argv[1], sys.argv[2], int(sys.argv[3])
ring = Keyring({"m": M, "k1": K1, "k2": K2}, current="k2", mac="m")
calls = [0]
real = _crypto.Cipher.seal_parts if what == "rekey" else _crypto.Keyring._wrap

def killing(*args, **kwargs):
    calls[0] += 1
    if calls[0] > after:
        os.kill(os.getpid(), signal.SIGKILL)  # mid-transaction, some rows already written
    return real(*args, **kwargs)

if what == "rekey":
    _crypto.Cipher.seal_parts = killing  # every encryption of a value goes through it
else:
    _crypto.Keyring._wrap = killing
store = clew.open(url, codec=Codec(keyring=ring))
if what == "rekey":
    for run_id in ("r0", "r1", "r2"):
        store.rekey(run_id)
else:
    cursor = None
    while True:
        report = store.rewrap_keys(after=cursor, limit=4)
        cursor = report.next_cursor
        if cursor is None:
            break
"""


@pytest.mark.parametrize("what", ["rewrap", "rekey"])
def test_a_rotation_killed_mid_batch_resumes(shared_stores: Any, what: str, tmp_path: Path) -> None:
    n = 10 if what == "rewrap" else 3
    first = shared_stores.open(codec=Codec(keyring=ring("k1")) if what == "rewrap" else None)
    for i in range(n):
        spread(first, f"MARKER-kill-{i}", f"r{i}")
    raw = Raw(shared_stores, first)
    before = data_cells(raw)
    script = tmp_path / "rotate.py"
    script.write_text(textwrap.dedent(_CHILD))
    # rewrap: killed while wrapping the 6th key (the second batch of 4 half done);
    # rekey: killed in the second run, after some of its rows were encrypted
    rk0 = raw.rk("r0")
    cells0 = sum(
        int(raw.scalar(f"SELECT count(*) FROM {t} WHERE rk = ?", rk0)) * k
        for t, k in (("blobs", 1), ("journal", 1), ("checkpoints", 2), ("runs", 1))
    )
    after = 5 if what == "rewrap" else cells0 + 3
    proc = subprocess.run(
        [sys.executable, str(script), shared_stores.url, what, str(after)],
        env={"PYTHONPATH": f"{SRC}:{Path(__file__).resolve().parents[2]}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    try:
        if what == "rewrap":
            wrapped = [ring("k1", "k2").wrapped_by(bytes(d or b"")) for d in deks(raw).values()]
            assert sorted(wrapped).count("k2") == 4  # the first batch whole, nothing of the second
            assert data_cells(raw) == before
        else:
            state = deks(raw)
            assert state["r0"] is not None and state["r1"] is None and state["r2"] is None  # r1 untouched
        store = shared_stores.open(codec=Codec(keyring=ring("k1", "k2")))
        cursor = None
        while True:  # resume, as `clew keys rotate` does
            report = store.rewrap_keys(after=cursor, limit=4)
            for run_id in report.unkeyed:
                store.rekey(run_id)
            cursor = report.next_cursor
            if cursor is None:
                break
        assert {ring("k1", "k2").wrapped_by(bytes(d or b"")) for d in deks(raw).values()} == {"k2"}
    finally:
        raw.close()
    final = shared_stores.open(codec=Codec(keyring=ring("k2")))  # k1 is not needed any more
    for i in range(n):
        assert final.verify(f"r{i}").ok
        head = final.get_branch(f"r{i}").head
        assert head is not None and final.load_state(f"r{i}", head)["note"] == f"MARKER-kill-{i}"


def test_cli_rotate_and_encrypt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64

    db = tmp_path / "c.db"
    with clew.open(f"sqlite:///{db}") as store:
        spread(store, "MARKER-cli-clear", "clear")
    with clew.open(f"sqlite:///{db}", codec=Codec(keyring=ring("k1"))) as store:
        spread(store, "MARKER-cli-keyed", "keyed")
    keys = {i: f"{i}={base64.b64encode(k).decode()}" for i, k in (("m", M), ("k1", K1), ("k2", K2))}
    monkeypatch.setenv("CLEW_KEYS", f"{keys['m']},{keys['k1']}")  # current: k1 (the last), mac: m (the first)
    assert main(["keys", "encrypt", "--db", str(db), "--json"]) == 0
    encrypted = json.loads(capsys.readouterr().out)
    assert encrypted["runs"] == 2 and encrypted["rows"] > 10 and encrypted["scrubbed"] is True
    monkeypatch.setenv("CLEW_KEYS", f"{keys['m']},{keys['k1']},{keys['k2']}")
    assert main(["keys", "rotate", "--db", str(db), "--batch", "1", "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["runs"] == 2 and rotated["rewrapped"] == 2 and rotated["rows"] == 0
    assert rotated["current"] == "k2" and 0 < rotated["bytes_written"] < 400
    monkeypatch.setenv("CLEW_KEYS", f"{keys['m']},{keys['k2']}")  # k1 retired
    for run_id, marker in (("clear", "MARKER-cli-clear"), ("keyed", "MARKER-cli-keyed")):
        assert main(["show", run_id, "--db", str(db), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["state"]["note"] == marker
        assert marker.encode() not in db.read_bytes()


async def test_async_rewrap_and_rekey(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with clew.open(url) as plain:
        plain.create_run("clear", agent="x")
        plain.commit("clear", state={"v": "MARKER-async"}, parent=None)
    async with await clew.open_async(url, codec=Codec(keyring=ring("k1"))) as store:
        await store.create_run("keyed", agent="x")
        await store.commit("keyed", state={"v": 1}, parent=None)
        done = await store.rekey("clear")
        assert done.rewrapped and done.rows >= 3
        assert await store.scrub()
    async with await clew.open_async(url, codec=Codec(keyring=ring("k1", "k2"))) as store:
        report = await store.rewrap_keys()
        assert (report.runs, report.rewrapped, report.unkeyed, report.next_cursor) == (2, 2, (), None)
    with clew.open(url, codec=Codec(keyring=ring("k2"))) as store:
        assert store.load_state("clear", store.get_branch("clear").head or "") == {"v": "MARKER-async"}
    assert b"MARKER-async" not in (tmp_path / "a.db").read_bytes()


def test_a_run_made_again_elsewhere_is_not_written_under_its_old_data_key(shared_stores: Any) -> None:
    """A writer that looked a run up, then another erased the run and made it again (on
    SQLite under the same internal key): the writer's cached data key is the old run's.
    Its next write must not land under that key (gone with the old run's row)."""
    writer = shared_stores.open(codec=Codec(keyring=ring("k1")))
    other = shared_stores.open(codec=Codec(keyring=ring("k1")))
    raw = Raw(shared_stores, writer)

    def remake() -> None:
        rk = raw.rk("r")
        other.erase("r")
        other.create_run("r", agent="x")  # no checkpoint yet: a writer's first commit fits
        assert (raw.rk("r") == rk) is (shared_stores.backend == "sqlite")  # SQLite reuses the largest rowid

    try:
        writer.create_run("r", agent="x")
        writer.append_journal("r", branch="main", entries=[("note", {"n": 0})])
        remake()
        if shared_stores.backend == "sqlite":
            before = raw.rows("SELECT count(*) FROM blobs"), raw.rows("SELECT count(*) FROM checkpoints")
            with pytest.raises(ConflictError, match="made again"):
                writer.commit("r", state={"v": 3}, parent=None)
            assert (raw.rows("SELECT count(*) FROM blobs"), raw.rows("SELECT count(*) FROM checkpoints")) == before
        c3 = writer.commit("r", state={"v": 3}, parent=None)  # looked up afresh
        remake()
        if shared_stores.backend == "sqlite":
            with pytest.raises(ConflictError, match="made again"):
                writer.append_journal("r", branch="main", entries=[("note", {"n": 1})])
        writer.append_journal("r", branch="main", entries=[("note", {"n": 2})])
    finally:
        raw.close()
    fresh = shared_stores.open(codec=Codec(keyring=ring("k1")))
    assert fresh.verify("r").ok
    assert [e.data for e in fresh.list_journal("r") if e.kind == "note"] == [{"n": 2}]
    assert c3.run_id == "r"


def test_a_process_remembers_a_bounded_number_of_runs(stores: StoreFactory) -> None:
    """Run keys and write keys are remembered for the most recently used runs only; a run
    forgotten is looked up again, and every read and write on it still works."""
    store = stores.open(codec=Codec(keyring=ring("k1")))
    ctx = store._ctx  # type: ignore[attr-defined]
    ctx.run_keys.size = ctx.subject_kids.size = 3
    heads: dict[str, str] = {}
    for i in range(10):
        run_id = store.create_run(agent="bounded").run_id
        heads[run_id] = store.commit(run_id, state={"n": i, "text": f"secret {i} " * 50}, parent=None).checkpoint_id
        assert len(ctx.run_keys) <= 3 and len(ctx.subject_kids) <= 3
    for i, (run_id, head) in enumerate(heads.items()):  # the oldest were forgotten long ago
        assert store.load_state(run_id, head)["n"] == i
        heads[run_id] = store.commit(run_id, state={"n": i + 100}, parent=head).checkpoint_id
        store.append_journal(run_id, [("note", {"i": i})])
        assert len(ctx.run_keys) <= 3 and len(ctx.subject_kids) <= 3
    fresh = stores.open(codec=Codec(keyring=ring("k1")))
    for i, (run_id, head) in enumerate(heads.items()):
        assert fresh.load_state(run_id, head) == {"n": i + 100}
        assert fresh.verify(run_id).ok

"""Key rotation: every run re-encrypted under the new key, one run per transaction, resumable."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

import clew
from clew.cli import main
from clew.codec import Codec, Keyring
from clew.errors import ConfigError, MissingKeyError
from tests.helpers.raw import Raw
from tests.privacy.conftest import spread


def key_ids(raw: Raw, codec: Codec) -> set[str | None]:
    cells = [r[0] for r in raw.rows("SELECT data FROM blobs")]
    cells += [r[0] for r in raw.rows("SELECT data FROM journal")]
    cells += [c for r in raw.rows("SELECT manifest, meta FROM checkpoints") for c in r]
    cells += [r[0] for r in raw.rows("SELECT meta FROM runs")]
    return {codec.key_id(bytes(c)) for c in cells}


def test_rekey_moves_rows_under_a_keyring_key_to_the_run_data_key(shared_stores: Any) -> None:
    """Runs written before data keys (here: their data key dropped, rows under k1 directly)."""
    k1, k2 = Keyring.generate(), Keyring.generate()
    old = shared_stores.open(codec=Codec(keyring=Keyring({"k1": k1})))
    spread(old, "MARKER-rot-1", "a")
    spread(old, "MARKER-rot-2", "b")
    raw = Raw(shared_stores, old)
    for run_id in ("a", "b"):  # as clew wrote before data keys: every row under k1 itself
        rk = raw.rk(run_id)
        for table, cols, key in (
            ("blobs", ("data",), "addr"),
            ("journal", ("data",), "seq"),
            ("checkpoints", ("manifest", "meta"), "checkpoint_id"),
            ("runs", ("meta",), "rk"),
        ):
            for row in raw.rows(f"SELECT {key}, {', '.join(cols)} FROM {table} WHERE rk = ?", rk):
                again = [old.codec.rewrap(old.codec.unwrap(bytes(c)), bytes(c), ("k1", k1)) for c in row[1:]]
                sets = ", ".join(f"{c} = ?" for c in cols)
                raw.execute(f"UPDATE {table} SET {sets} WHERE rk = ? AND {key} = ?", *again, rk, row[0])
        raw.execute("UPDATE runs SET dek = NULL WHERE rk = ?", rk)
    new = shared_stores.open(codec=Codec(keyring=Keyring({"k1": k1, "k2": k2})))
    try:
        assert key_ids(raw, new.codec) == {"k1"}
        report = new.rekey("a")
        assert report.rewrapped and report.rows > 10
        assert new.rekey("a").rows == 0  # done: running it again changes nothing
        kids = key_ids(raw, new.codec)
        assert "k1" in kids and len(kids) == 2  # b not yet
        assert new.rekey("b").rows > 10
        assert all(k is not None and k.startswith("d.") for k in key_ids(raw, new.codec))
    finally:
        raw.close()
    with pytest.raises(MissingKeyError, match="'k1'"):  # k1 stays as the mac key (addresses, seals, labels)
        Keyring({"k2": k2}, mac="k1")
    final = shared_stores.open(codec=Codec(keyring=Keyring({"k1": k1, "k2": k2})))
    for run_id in ("a", "b"):
        assert final.verify(run_id).ok
        head = final.get_branch(run_id).head
        assert head is not None and final.load_state(run_id, head)["note"].startswith("MARKER-rot")


def test_a_missing_old_key_writes_nothing(shared_stores: Any) -> None:
    k1, k2, k3 = Keyring.generate(), Keyring.generate(), Keyring.generate()
    old = shared_stores.open(codec=Codec(keyring=Keyring({"k1": k1, "k2": k2}, current="k2", mac="k1")))
    spread(old, "MARKER-rot-3", "a")
    raw = Raw(shared_stores, old)
    before = raw.snapshot("a")
    # k2 is missing: the rotation of "a" fails as a whole
    broken = shared_stores.open(codec=Codec(keyring=Keyring({"k1": k1, "k3": k3})))
    with pytest.raises(MissingKeyError, match="'k2'"):
        broken.rekey("a")
    assert raw.snapshot("a") == before
    raw.close()
    head = old.get_branch("a").head
    assert head is not None and old.load_state("a", head)["note"] == "MARKER-rot-3"


def test_rekey_needs_a_keyring(store: clew.Store) -> None:
    store.create_run("r", agent="a")
    with pytest.raises(ConfigError, match="keyring"):
        store.rekey("r")


def test_cli_keys_generate_rotate_and_erase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "generate", "--id", "k1"]) == 0
    line1 = capsys.readouterr().out.strip()
    kid, _, b64 = line1.partition("=")
    assert kid == "k1" and len(base64.b64decode(b64)) == 32
    assert main(["keys", "generate", "--id", "k2"]) == 0
    line2 = capsys.readouterr().out.strip()
    db = tmp_path / "enc.db"
    monkeypatch.setenv("CLEW_KEYS", line1)
    with clew.open(f"sqlite:///{db}", codec=Codec(keyring=Keyring.from_env())) as store:
        spread(store, "MARKER-cli-1", "r", subject="cust-9")
    assert main(["runs", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["run_id"] == "r"
    keyfile = tmp_path / "keys"
    keyfile.write_text(f"# retired\n{line1}\n# current\n{line2}\n")
    monkeypatch.delenv("CLEW_KEYS")
    monkeypatch.setenv("CLEW_KEY_FILE", str(keyfile))
    assert main(["keys", "rotate", "--db", str(db), "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["runs"] == 1 and rotated["rewrapped"] == 1 and rotated["rows"] == 0 and rotated["current"] == "k2"
    assert main(["show", "r", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"]["note"] == "MARKER-cli-1"
    assert main(["erase", "--subject", "cust-9", "--db", str(db), "--json"]) == 0
    erased = json.loads(capsys.readouterr().out)
    assert erased["run_ids"] == ["r"] and erased["scrubbed"] is True
    monkeypatch.delenv("CLEW_KEY_FILE")
    assert main(["runs", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == []

"""The inspector over an encrypted store: pages decrypt with the keyring, redacted values stay masked."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, SecretStr

import clew
from clew.codec import Keyring
from tests.web.conftest import client_for


class Ticket(BaseModel):
    email: SecretStr
    note: str


def test_pages_of_an_encrypted_store_show_plaintext_and_mask_secrets(tmp_path: Path) -> None:
    path = tmp_path / "enc.db"
    store = clew.open(f"sqlite:///{path}", codec=clew.Codec(keyring=Keyring({"k1": os.urandom(32)})))
    agent = clew.Agent("enc", state=Ticket, store=store)

    @agent.step(start=True)
    def write(state: Ticket, ctx: clew.Context) -> None:
        state.note = "marker-7f3a shipped"

    run = agent.start(Ticket(email=SecretStr("alice@example.com"), note=""), run_id="r1")
    client = client_for(store)
    page = client.get(f"/checkpoints/{run.checkpoint_id}?run=r1")
    assert page.status_code == 200
    assert "marker-7f3a shipped" in page.text  # decrypted for the reader who holds the key
    assert "$redacted" in page.text and "alice@example.com" not in page.text
    store.close()
    assert b"marker-7f3a" not in path.read_bytes()  # and never in the clear on disk

"""Redaction: secrets and declared fields are stored as keyed-hash markers; ephemeral text
never reaches the journal; a redact hook sees every value written."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, SecretBytes, SecretStr

import clew
from clew.codec import Codec, Keyring, Redacted
from clew.errors import ConfigError
from tests.helpers.scan import total_copies


class Customer(BaseModel):
    name: str
    email: str
    api_key: SecretStr
    token: SecretBytes = SecretBytes(b"")


class Ticket(BaseModel):
    customer: Customer
    notes: list[str] = []
    summary: str = ""


def test_pydantic_secrets_are_stored_as_markers(stores: Any, marker: str) -> None:
    store = stores.open()
    store.create_run("r", agent="a")
    value = Customer(name="ann", email="a@x", api_key=SecretStr(marker), token=SecretBytes(marker.encode()))
    c = store.commit("r", state={"c": value}, parent=None)
    loaded = store.load_state("r", c.checkpoint_id)["c"]
    assert isinstance(loaded.api_key, Redacted) and loaded.api_key.kind == "SecretStr"
    assert loaded.token.kind == "SecretBytes"
    assert loaded.api_key == store.codec.redacted(marker, "SecretStr")  # equality still works
    assert loaded.api_key != store.codec.redacted("another", "SecretStr")
    assert marker not in repr(loaded) and marker not in str(loaded.api_key)
    assert total_copies(stores, store, marker) == {}


def test_equal_secrets_give_equal_markers_across_codecs_with_one_key() -> None:
    key = b"k" * 32
    a, b = Codec(redaction_key=key), Codec(redaction_key=key)
    assert a.decode(a.encode(SecretStr("pw"))) == b.decode(b.encode(SecretStr("pw")))
    assert Codec().decode(Codec().encode(SecretStr("pw"))) != Codec().decode(Codec().encode(SecretStr("pw")))
    ring = Keyring({"k1": Keyring.generate()})
    assert Codec(keyring=ring).redacted("x") == Codec(keyring=ring).redacted("x")
    assert Codec(keyring=ring).redacted("x") != Codec(keyring=ring).redacted("y")


def test_declared_fields_and_paths_are_redacted(stores: Any, marker: str) -> None:
    store = stores.open()
    agent = clew.Agent("t", state=Ticket, store=store, redacted=("customer.email", "summary"))
    seen: list[Any] = []

    @agent.step(start=True)
    def read(state: Ticket, ctx: clew.Context) -> str:
        seen.append(state.customer.email)  # steps see the state as stored
        state.summary = f"wrote to {marker}"
        state.notes.append("wrote")
        return "again"

    @agent.step
    def again(state: Ticket, ctx: clew.Context) -> None:
        seen.append(state.summary)  # the same after a commit, as after a resume

    start = Ticket(customer=Customer(name="ann", email=marker, api_key=SecretStr("k")), notes=["first"])
    run = agent.start(start, run_id="r")
    assert run.status == "completed", run.error
    assert start.customer.email == marker  # the caller's object is not changed
    assert seen == [store.codec.redacted(marker), store.codec.redacted(f"wrote to {marker}")]
    stored = store.load_state("r", run.checkpoint_id)
    assert stored["customer"].name == "ann"
    assert stored["customer"].email == store.codec.redacted(marker)
    assert stored["notes"] == ["first", "wrote"] and isinstance(stored["summary"], Redacted)
    assert run.state.customer.email == store.codec.redacted(marker)
    assert total_copies(stores, store, marker) == {}
    # a state holding markers can still be edited and forked
    first = agent.history("r")[-1]
    forked = agent.fork(first.checkpoint_id, branch="b", update={"customer": start.customer}, run=False)
    assert forked == "r"


def test_redacted_paths_must_name_fields(store: clew.Store) -> None:
    with pytest.raises(ConfigError, match="'mail' is not a field of"):
        clew.Agent("t", state=Ticket, store=store, redacted=("mail",))


def test_ephemeral_text_never_reaches_the_journal(stores: Any, marker: str) -> None:
    class Client:
        def __init__(self, key: str) -> None:
            self.api_key = key

    store = stores.open()
    agent = clew.Agent("e", state=dict, store=store, ephemeral=("client", "password"))

    @agent.step(start=True, retry=clew.Retry(attempts=2, backoff=0))
    def login(state: dict[str, Any], ctx: clew.Context) -> None:
        if ctx.attempt == 1:
            raise PermissionError(f"login refused for key {state['client'].api_key} / {state['password']}")
        ctx.call("probe", lambda: (_ for _ in ()).throw(RuntimeError(f"bad {state['password']}")), retry=None)

    run = agent.start({"client": Client(marker), "password": marker + "-pw"}, run_id="r")
    assert run.status == "failed"
    assert total_copies(stores, store, marker) == {}
    messages = [str(e.data) for e in store.list_journal("r")]
    assert any("[ephemeral client]" in m for m in messages)
    assert any("[ephemeral password]" in m for m in messages)
    assert "[ephemeral" in str(store.get_branch("r").error)


def test_the_redact_hook_sees_every_value_written(stores: Any, marker: str) -> None:
    seen: set[str] = set()

    def hook(value: Any, path: str) -> Any:
        seen.add(path.split("[")[0])
        return _mask(value)

    def _mask(value: Any) -> Any:
        if isinstance(value, str) and marker in value:
            return value.replace(marker, "<email>")
        if isinstance(value, dict):
            return {k: _mask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [_mask(v) for v in value]
        return value

    store = stores.open(codec=Codec(redact=hook))
    from tests.privacy.conftest import spread

    spread(store, marker)
    assert total_copies(stores, store, marker) == {}
    assert {"state.note", "state.history", "journal", "metadata", "labels"} <= seen
    head = store.get_branch("r").head
    assert head is not None
    assert store.load_state("r", head)["note"] == "<email>"

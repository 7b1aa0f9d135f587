"""Bad input and the typed errors it must raise; after each, the last good checkpoint loads.

One table, one row per case: what goes wrong, the backends it applies to, the error
(and builtin) it must raise, and what its message must name. Every case runs on a
store holding a run with a good checkpoint; after the error that checkpoint must
still be the head and load whole, read by a writer that remembers nothing.
"""

from __future__ import annotations

import dataclasses
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import clew
from clew.codec import Codec
from clew.errors import (
    ConfigError,
    ConflictError,
    EncodeError,
    IntegrityError,
    InvalidStateError,
    LeaseError,
    NotFoundError,
    PickleRefusedError,
    RunLockedError,
    SchemaVersionError,
    StoreError,
    StoreUnavailableError,
    UnknownTypeError,
)
from tests.helpers.raw import Raw

ALL = ("memory", "sqlite", "postgres")
FILES = ("sqlite", "postgres")  # backends a second store can open again


class Opaque:
    """A type the codec does not know (and pickle does)."""

    def __init__(self, v: int = 1) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.v == self.v

    __hash__ = None  # type: ignore[assignment]


@dataclasses.dataclass
class KBResult:
    query: str
    raw: Any


GOOD_STATE: dict[str, Any] = {
    "messages": [{"role": "user", "content": "where is my order?"}, {"role": "assistant", "content": "checking"}],
    "tool_results": {"kb": KBResult("order", {"hits": 2})},
    "step": "lookup",
}


@dataclasses.dataclass
class Env:
    """A store with a run whose head is a good checkpoint."""

    stores: Any
    store: clew.Store
    raw: Raw
    tmp_path: Path
    run_id: str
    good: str

    def commit_more(self, state: dict[str, Any]) -> str:
        return self.store.commit(self.run_id, state=state, parent=self.good).checkpoint_id

    def blob_of(self, value: Any) -> bytes:
        return self.store.codec.address(self.store.codec.dumps(value)[0])


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    act: Callable[[Env], object]
    error: type[BaseException]
    also: tuple[type[BaseException], ...] = ()
    names: tuple[str, ...] = ()  # substrings the message must contain
    backends: tuple[str, ...] = ALL
    moves_head: bool = False  # the case commits a newer (broken) checkpoint on purpose
    check: Callable[[Env, BaseException], None] | None = None


# -- the cases -------------------------------------------------------------------


def _unknown_in_dict(env: Env) -> object:
    state = {**GOOD_STATE, "tool_results": {"kb": KBResult("order", Opaque())}}
    return env.store.commit(env.run_id, state=state, parent=env.good)


def _unknown_in_list(env: Env) -> object:
    state = {**GOOD_STATE, "messages": [*GOOD_STATE["messages"], {"role": "tool", "content": Opaque()}]}
    return env.store.commit(env.run_id, state=state, parent=env.good)


def _unknown_cold(env: Env) -> object:
    env.store._ctx.forget(env.run_id)
    return _unknown_in_dict(env)


def _unknown_first_commit(env: Env) -> object:
    run = env.store.create_run(agent="other").run_id
    return env.store.commit(run, state={"cfg": {"client": Opaque()}}, parent=None)


def _unknown_in_journal(env: Env) -> object:
    return env.store.commit(env.run_id, state=GOOD_STATE, parent=env.good, journal=[("tool", {"out": Opaque()})])


def _unknown_in_append(env: Env) -> object:
    return env.store.append_journal(env.run_id, [("tool", [1, Opaque()])])


def _path_is(expected: str) -> Callable[[Env, BaseException], None]:
    def check(env: Env, exc: BaseException) -> None:
        assert isinstance(exc, UnknownTypeError)
        assert exc.path == expected
        assert exc.type_name.endswith("Opaque")
        assert env.raw.counts(env.run_id)["checkpoints"] == 1

    return check


def _corrupt(env: Env, pos: int, value: Any) -> object:
    """Commit ``value`` in a newer checkpoint, flip byte ``pos`` of its blob, load that checkpoint."""
    bad = env.commit_more({**GOOD_STATE, "extra": value})
    addr = env.blob_of(value)
    data = env.raw.scalar("SELECT data FROM blobs WHERE addr = ?", addr)
    assert bool(data[1] & 1) == (len(env.store.codec.dumps(value)[0]) > 1000), "compressed only when large"
    size = len(data)
    env.raw.flip("blobs", "data", "rk = ? AND addr = ?", (env.raw.rk(env.run_id), addr), pos % size)
    env.store._ctx.forget(env.run_id)
    return env.store.load_state(env.run_id, bad)


def _missing_blob(env: Env) -> object:
    bad = env.commit_more({**GOOD_STATE, "extra": "only here"})
    env.raw.execute("DELETE FROM blobs WHERE addr = ?", env.blob_of("only here"))
    env.store._ctx.forget(env.run_id)
    return env.store.load_state(env.run_id, bad)


def _bad_url(url: str) -> Callable[[Env], object]:
    return lambda env: clew.open(url)


def _sqlite_dir_missing(env: Env) -> object:
    return clew.open(f"sqlite:///{env.tmp_path / 'no' / 'such' / 'dir' / 'clew.db'}")


def _sqlite_not_a_database(env: Env) -> object:
    path = env.tmp_path / "notes.txt"
    path.write_bytes(b"these are not the bytes of a database\n" * 200)
    return clew.open(f"sqlite:///{path}")


def _pg_database_missing(env: Env) -> object:
    base = env.stores.pg.rsplit("/", 1)[0]
    return clew.open(f"{base}/clew_missing_{uuid.uuid4().hex[:8]}")


def _pg_server_down(env: Env) -> object:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free now, and nobody listens on it
    return clew.open(f"postgresql://postgres@127.0.0.1:{port}/clew", connect_timeout=3)


def _pg_bad_schema_name(env: Env) -> object:
    return clew.open(f"{env.stores.pg}?schema=robert'); drop table runs;--")


def _newer_schema(env: Env) -> object:
    env.raw.execute("INSERT INTO clew_schema (version, applied_at) VALUES (?, ?)", 999, 0.0)
    try:
        return env.stores.open()
    finally:
        env.raw.execute("DELETE FROM clew_schema WHERE version = ?", 999)


def _moved_head(env: Env) -> object:
    return env.store.commit(env.run_id, state={"late": True}, parent=None)


def _stale_parent_after_other_writer(env: Env) -> object:
    other = env.stores.open()
    stale = env.good
    env.good = other.commit(env.run_id, state={**GOOD_STATE, "step": "other"}, parent=stale).checkpoint_id
    return env.store.commit(env.run_id, state={**GOOD_STATE, "step": "mine"}, parent=stale)


def _pickled(env: Env) -> object:
    trusting = env.stores.open(codec=Codec(allow_pickle=True))
    bad = trusting.commit(env.run_id, state={**GOOD_STATE, "obj": Opaque(7)}, parent=env.good).checkpoint_id
    assert trusting.load_state(env.run_id, bad)["obj"] == Opaque(7)  # readable by the one who opted in
    env.store._ctx.forget(env.run_id)
    return env.store.load_state(env.run_id, bad)


def _closed_store(env: Env) -> object:
    # Not through the factory: in memory that would close the test's own store.
    store = clew.open(env.stores.url)
    store.close()
    store.close()  # idempotent
    return store.get_run(env.run_id)


def _lease_held(env: Env) -> object:
    env.store.acquire_lease(env.run_id, owner="A", ttl=60)
    return env.store.acquire_lease(env.run_id, owner="B", ttl=60)


def _lease_lost(env: Env) -> object:
    return env.store.renew_lease(env.run_id, owner="never-held", ttl=60)


def _nested(depth: int, make: Callable[[Any], Any]) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = make(value)
    return value


def _self_list() -> list[Any]:
    loop: list[Any] = ["a"]
    loop.append(loop)
    return loop


def _self_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {"a": 1}
    loop["me"] = {"again": loop}
    return loop


def _local_dataclass() -> Any:
    @dataclasses.dataclass
    class Local:
        x: int = 1

    return Local()


def _commit(state: Any) -> Callable[[Env], object]:
    return lambda env: env.store.commit(env.run_id, state=state, parent=env.good)


def _field(value: Any) -> Callable[[Env], object]:
    return lambda env: env.store.commit(env.run_id, state={**GOOD_STATE, "bad": value}, parent=env.good)


def _encode_path(expected: str) -> Callable[[Env, BaseException], None]:
    def check(env: Env, exc: BaseException) -> None:
        assert isinstance(exc, EncodeError) and exc.path == expected
        assert env.raw.counts(env.run_id)["checkpoints"] == 1

    return check


class Chat(dict):  # type: ignore[type-arg]
    """Not a state type: a dict subclass."""


def _labels_damaged(env: Env) -> object:
    bad = "[1]" if env.raw.backend == "postgres" else "{not json"  # jsonb itself refuses text that is not JSON
    good = env.raw.scalar("SELECT labels FROM runs WHERE run_id = ?", env.run_id)
    env.raw.execute("UPDATE runs SET labels = ? WHERE run_id = ?", bad, env.run_id)
    try:
        return env.store.get_run(env.run_id)
    finally:
        restored = good if isinstance(good, str) else "{}"
        env.raw.execute("UPDATE runs SET labels = ? WHERE run_id = ?", restored, env.run_id)


def _metadata_replaced(env: Env, reseal: bool) -> object:
    """A newer checkpoint whose metadata is replaced by an int blob (and re-sealed, if ``reseal``)."""
    newer = env.store.commit(env.run_id, state={**GOOD_STATE, "step": "newer"}, parent=env.good, metadata={"x": 1})
    codec = env.store.codec
    plain = codec.dumps(5)[0]
    rk = env.raw.rk(env.run_id)
    env.raw.execute(
        "UPDATE checkpoints SET meta = ? WHERE rk = ? AND checkpoint_id = ?", codec.wrap(plain), rk, newer.checkpoint_id
    )
    if reseal:
        from clew.store._seal import checkpoint_hash

        created = env.raw.scalar(
            "SELECT created_at FROM checkpoints WHERE rk = ? AND checkpoint_id = ?", rk, newer.checkpoint_id
        )
        manifest = env.raw.manifest_bytes(env.run_id, newer.checkpoint_id, codec)
        good_hash = env.raw.scalar("SELECT hash FROM checkpoints WHERE rk = ? AND checkpoint_id = ?", rk, env.good)
        h = checkpoint_hash(bytes(good_hash), newer.checkpoint_id, "main", "step", bytes(manifest), plain, created, [])
        where = "rk = ? AND checkpoint_id = ?"
        env.raw.execute(f"UPDATE checkpoints SET hash = ? WHERE {where}", h, rk, newer.checkpoint_id)
    return env.store.get_checkpoint(env.run_id, newer.checkpoint_id)


CASES = [
    # values clew refuses to write because they could not be read back whole
    Case("state-not-a-mapping", _commit([("a", 1)]), InvalidStateError, (ValueError,), ("mapping", "list")),
    Case("state-field-name-not-str", _commit({1: "x"}), InvalidStateError, (ValueError,), ("field names must be str",)),
    Case("state-field-name-surrogate", _commit({"\udc80": 1}), InvalidStateError, (ValueError,), ("UTF-8",)),
    Case(
        "deep-nested-lists",
        _field(_nested(10_000, lambda v: [v])),
        EncodeError,
        (ValueError,),
        ("state.bad[0][0]", "nests deeper than"),
    ),
    Case(
        "deep-nested-dicts",
        _field(_nested(10_000, lambda v: {"k": v})),
        EncodeError,
        (ValueError,),
        ("state.bad['k']", "nests deeper than"),
    ),
    Case(
        "deep-nested-tuples",
        _field(_nested(10_000, lambda v: (v,))),
        EncodeError,
        (ValueError,),
        ("nests",),
    ),
    Case(
        "self-referencing-list",
        _field(_self_list()),
        EncodeError,
        (ValueError,),
        ("contains itself",),
        check=_encode_path("state.bad[1][1]"),  # a list field is chunked: item 1 is walked alone
    ),
    Case(
        "self-referencing-dict",
        _field(_self_dict()),
        EncodeError,
        (ValueError,),
        ("contains itself",),
        check=_encode_path("state.bad['me']['again']"),
    ),
    Case(
        "self-referencing-top-level-list",
        lambda env: env.store.commit(env.run_id, state={"messages": _self_list()}, parent=env.good),
        EncodeError,
        (ValueError,),
        ("contains itself",),
    ),
    Case(
        "lone-surrogate-in-text",
        _field({"note": "caf\udce9"}),
        EncodeError,
        (ValueError,),
        ("surrogate",),
        check=_encode_path("state.bad['note']"),
    ),
    Case(
        "lone-surrogate-in-key",
        _field({"\ud800": 1}),
        EncodeError,
        (ValueError,),
        ("surrogate",),
        check=_encode_path("state.bad<key>"),
    ),
    Case(
        "lone-surrogate-in-journal",
        lambda env: env.store.append_journal(env.run_id, [("tool", {"out": "\udc80"})]),
        EncodeError,
        (ValueError,),
        ("surrogate",),
    ),
    Case(
        "dataclass-defined-in-a-function",
        _field([_local_dataclass()]),
        EncodeError,
        (ValueError,),
        ("state.bad[0]", "inside a function", "module level"),
        check=_encode_path("state.bad[0]"),
    ),
    # bad arguments
    Case("list-runs-negative-limit", lambda env: env.store.list_runs(limit=-1), ConfigError, (ValueError,), ("-1",)),
    Case("list-runs-zero-limit", lambda env: env.store.list_runs(limit=0), ConfigError, (ValueError,), ("limit",)),
    Case(
        "list-runs-status-typo",
        lambda env: env.store.list_runs(status="canceled"),
        ConfigError,
        (ValueError,),
        ("'canceled'", "cancelled"),
    ),
    Case("empty-run-id", lambda env: env.store.create_run("", agent="x"), ConfigError, (ValueError,), ("run_id=''",)),
    Case(
        "agent-empty-run-id",
        lambda env: _agent(env).start({"a": 1}, run_id=""),
        ConfigError,
        (ValueError,),
        ("run_id=''",),
    ),
    Case(
        "agent-state-type-not-a-model",
        lambda env: clew.Agent("x", state=int, store=env.store),
        ConfigError,
        (ValueError,),
        ("int", "Pydantic model"),
    ),
    Case(
        "agent-state-type-dict-subclass",
        lambda env: clew.Agent("x", state=Chat, store=env.store),
        ConfigError,
        (ValueError,),
        ("Chat",),
    ),
    Case(
        "agent-unknown-ephemeral-field",
        lambda env: clew.Agent("x", state=KBResult, store=env.store, ephemeral=("client",)),
        ConfigError,
        (ValueError,),
        ("client", "KBResult", "query"),
    ),
    Case(
        "agent-ephemeral-as-a-str",
        lambda env: clew.Agent("x", state=KBResult, store=env.store, ephemeral="query"),
        ConfigError,
        (ValueError,),
        ("tuple of field names",),
    ),
    # rows damaged behind the store's back: clew errors, never json or attribute errors
    Case("run-labels-damaged", _labels_damaged, IntegrityError, (), ("labels",)),
    Case(
        "checkpoint-metadata-replaced",
        lambda env: _metadata_replaced(env, reseal=False),
        IntegrityError,
        (),
        ("seal",),
        moves_head=True,
    ),
    Case(
        "checkpoint-metadata-replaced-and-resealed",
        lambda env: _metadata_replaced(env, reseal=True),
        IntegrityError,
        (),
        ("metadata", "not a map"),
        moves_head=True,
    ),
    # unknown types: an error at checkpoint time that names the field path
    Case(
        "unknown-type-in-dataclass-field",
        _unknown_in_dict,
        UnknownTypeError,
        (TypeError,),
        ("state.tool_results['kb'].raw", "Opaque", "register_type"),
        check=_path_is("state.tool_results['kb'].raw"),
    ),
    Case(
        "unknown-type-in-list-item",
        _unknown_in_list,
        UnknownTypeError,
        (TypeError,),
        ("state.messages[2]['content']",),
        check=_path_is("state.messages[2]['content']"),
    ),
    Case(
        "unknown-type-cold-writer",
        _unknown_cold,
        UnknownTypeError,
        (TypeError,),
        ("state.tool_results['kb'].raw",),
        check=_path_is("state.tool_results['kb'].raw"),
    ),
    Case(
        "unknown-type-first-commit",
        _unknown_first_commit,
        UnknownTypeError,
        (TypeError,),
        ("state.cfg['client']",),
        check=_path_is("state.cfg['client']"),
    ),
    Case("unknown-type-in-journal", _unknown_in_journal, UnknownTypeError, (TypeError,), ("journal[tool]",)),
    Case("unknown-type-in-append-journal", _unknown_in_append, UnknownTypeError, (TypeError,), ("journal[tool]",)),
    # damaged storage
    Case(
        "corrupt-blob-payload",
        lambda env: _corrupt(env, -1, {"note": "short"}),
        IntegrityError,
        names=("blob",),
        moves_head=True,
    ),
    Case(
        "corrupt-blob-middle",
        lambda env: _corrupt(env, 6, ["a", 1, 2.5, "b"]),
        IntegrityError,
        names=("blob",),
        moves_head=True,
    ),
    Case(
        "corrupt-blob-header",
        lambda env: _corrupt(env, 0, {"note": "short"}),
        IntegrityError,
        names=("blob",),
        moves_head=True,
    ),
    Case(
        "corrupt-compressed-blob",
        lambda env: _corrupt(env, 40, {"note": "a long note that compresses well " * 40}),
        IntegrityError,
        names=("blob",),
        moves_head=True,
    ),
    Case("missing-blob", _missing_blob, IntegrityError, names=("missing",), moves_head=True),
    # bad configuration
    Case("url-without-scheme", _bad_url("nope"), ConfigError, (ValueError,), ("nope", "sqlite:///")),
    Case("url-unknown-scheme", _bad_url("ftp://x"), ConfigError, (ValueError,), ("ftp",)),
    Case("url-sqlite-one-slash", _bad_url("sqlite:/x"), ConfigError, (ValueError,), ("sqlite:/x",)),
    Case("url-sqlite-no-path", _bad_url("sqlite://"), ConfigError, (ValueError,), ("sqlite://",)),
    Case(
        "url-sqlite-bad-option",
        _bad_url("sqlite:///x.db?synchronous=sometimes"),
        ConfigError,
        (ValueError,),
        ("synchronous",),
    ),
    Case("url-not-a-string", _bad_url(42), ConfigError, (ValueError,)),  # type: ignore[arg-type]
    Case("pg-bad-schema-name", _pg_bad_schema_name, ConfigError, (ValueError,), ("schema",), ("postgres",)),
    # the database is not there
    Case(
        "sqlite-directory-missing",
        _sqlite_dir_missing,
        StoreUnavailableError,
        (ConnectionError,),
        ("does not exist",),
        ("sqlite",),
    ),
    Case("sqlite-not-a-database", _sqlite_not_a_database, StoreError, (), ("notes.txt",), ("sqlite",)),
    Case(
        "pg-database-missing",
        _pg_database_missing,
        StoreUnavailableError,
        (ConnectionError,),
        ("clew_missing_", "createdb"),
        ("postgres",),
    ),
    Case("pg-server-down", _pg_server_down, StoreUnavailableError, (ConnectionError,), ("127.0.0.1",), ("postgres",)),
    Case("schema-newer-than-clew", _newer_schema, SchemaVersionError, (), ("999", "upgrade"), FILES),
    Case("store-closed", _closed_store, StoreError, (), ("closed",)),
    # concurrent writers
    Case("moved-head", _moved_head, ConflictError, (), ("main", "retry")),
    Case(
        "stale-parent-after-other-writer",
        _stale_parent_after_other_writer,
        ConflictError,
        (),
        ("retry",),
        moves_head=True,
    ),
    Case("lease-held-by-another", _lease_held, RunLockedError, (LeaseError,), ("'A'",)),
    Case("lease-lost", _lease_lost, LeaseError, (), ("never-held",)),
    # duplicates
    Case(
        "duplicate-run-id",
        lambda env: env.store.create_run(env.run_id, agent="x"),
        ConflictError,
        (),
        ("already exists",),
    ),
    Case(
        "duplicate-branch",
        lambda env: env.store.fork(env.run_id, checkpoint_id=env.good, branch="main"),
        ConflictError,
        (),
        ("main",),
    ),
    Case(
        "duplicate-checkpoint-id",
        lambda env: env.store.commit(env.run_id, state={}, parent=env.good, checkpoint_id=env.good),
        ConflictError,
    ),
    # unknown names
    *[
        Case(f"unknown-run-{name}", act, NotFoundError, (LookupError,), ("ghost",))
        for name, act in [
            ("get_run", lambda env: env.store.get_run("ghost")),
            ("load_state", lambda env: env.store.load_state("ghost", env.good)),
            ("commit", lambda env: env.store.commit("ghost", state={}, parent=None)),
            ("list_checkpoints", lambda env: env.store.list_checkpoints("ghost")),
            ("append_journal", lambda env: env.store.append_journal("ghost", [("t", 1)])),
            ("acquire_lease", lambda env: env.store.acquire_lease("ghost", owner="a", ttl=1)),
            ("update_run", lambda env: env.store.update_run("ghost", metadata={})),
            ("set_branch_status", lambda env: env.store.set_branch_status("ghost", status="paused")),
            ("delete_run", lambda env: env.store.delete_run("ghost")),
            ("verify", lambda env: env.store.verify("ghost")),
        ]
    ],
    *[
        Case(f"unknown-checkpoint-{name}", act, NotFoundError, (LookupError,), ("nope",))
        for name, act in [
            ("load_state", lambda env: env.store.load_state(env.run_id, "nope")),
            ("get_checkpoint", lambda env: env.store.get_checkpoint(env.run_id, "nope")),
            ("find_checkpoint", lambda env: env.store.find_checkpoint("nope")),
            ("fork", lambda env: env.store.fork(env.run_id, checkpoint_id="nope", branch="b")),
        ]
    ],
    *[
        Case(f"unknown-branch-{name}", act, NotFoundError, (LookupError,), ("nope",))
        for name, act in [
            ("get_branch", lambda env: env.store.get_branch(env.run_id, "nope")),
            ("commit", lambda env: env.store.commit(env.run_id, state={}, parent=None, branch="nope")),
            ("list_checkpoints", lambda env: env.store.list_checkpoints(env.run_id, branch="nope")),
            ("append_journal", lambda env: env.store.append_journal(env.run_id, [("t", 1)], branch="nope")),
        ]
    ],
    # pickle: code execution on load, so never without the opt-in
    Case("pickle-without-opt-in", _pickled, PickleRefusedError, (), ("allow_pickle",), FILES, moves_head=True),
]


def _agent(env: Env) -> clew.Agent[Any]:
    agent = clew.Agent("bad", state=dict, store=env.store)
    agent.step(start=True)(lambda state, ctx: None)
    return agent


@pytest.fixture
def env(stores: Any, store: clew.Store, tmp_path: Path) -> Iterator[Env]:
    raw = Raw(stores, store)
    run_id = store.create_run(agent="errors").run_id
    good = store.commit(run_id, state=GOOD_STATE, parent=None, journal=[("tool", {"ok": True})]).checkpoint_id
    yield Env(stores, store, raw, tmp_path, run_id, good)
    raw.close()


@pytest.mark.parametrize(
    ("case", "backend"),
    [pytest.param(case, backend, id=f"{case.id}-{backend}") for case in CASES for backend in case.backends],
)
def test_bad_input_raises_its_typed_error_and_loses_nothing(env: Env, case: Case, backend: str) -> None:
    good_before = env.good
    with pytest.raises(case.error) as info:
        case.act(env)
    exc = info.value
    assert type(exc).__module__ == "clew.errors", f"{type(exc)} escaped instead of a clew error"
    for builtin in case.also:
        assert isinstance(exc, builtin), f"{type(exc).__name__} should also be a {builtin.__name__}"
    for name in case.names:
        assert name in str(exc), f"message {str(exc)!r} does not name {name!r}"
    if case.check is not None:
        case.check(env, exc)

    # Nothing lost: the last good checkpoint is intact and loads, for a writer that remembers nothing.
    store = env.store
    if not case.moves_head:
        assert env.good == good_before
        assert store.get_branch(env.run_id).head == env.good
    reader = env.stores.open()
    reader._ctx.forget(env.run_id)
    assert reader.load_state(env.run_id, env.good) == (
        GOOD_STATE if env.good == good_before else reader.load_state(env.run_id, env.good)
    )
    assert reader.load_state(env.run_id, good_before) == GOOD_STATE
    assert [e.data for e in reader.list_journal(env.run_id, checkpoint_id=good_before)] == [{"ok": True}]
    # And work goes on from it.
    reader.fork(env.run_id, checkpoint_id=good_before, branch="recovered")
    after = reader.commit(env.run_id, state={**GOOD_STATE, "step": "after"}, parent=good_before, branch="recovered")
    assert reader.load_state(env.run_id, after.checkpoint_id)["step"] == "after"
    if not case.moves_head:
        assert reader.verify(env.run_id).ok

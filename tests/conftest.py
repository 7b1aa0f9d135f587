"""Shared fixtures: stores on every backend, each test isolated.

PostgreSQL: see tests/_pg.py. Each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import clew
from tests import _pg

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = ["memory", "sqlite", "postgres"]

_pg_state: dict[str, str] = {}


def pg_url() -> str:
    """The PostgreSQL URL for tests; fails under CI=true, skips otherwise."""
    if "url" not in _pg_state and "error" not in _pg_state:
        try:
            _pg_state["url"] = _pg.find_postgres()
        except Exception as exc:
            _pg_state["error"] = str(exc)
    if "url" in _pg_state:
        return _pg_state["url"]
    if IN_CI:
        pytest.fail(f"PostgreSQL is required under CI=true: {_pg_state['error']}")
    pytest.skip(f"no PostgreSQL: {_pg_state['error']}")


_pgbouncers: dict[str, str] = {}


def pgbouncer_url(mode: str) -> str:
    """pgbouncer in ``mode`` (transaction or session) in front of the test server; fails under CI=true."""
    if mode not in _pgbouncers:
        server = pg_url()
        try:
            _pgbouncers[mode] = _pg.start_pgbouncer(server, mode)
        except Exception as exc:
            _pgbouncers[mode] = f"error: {exc}"
    found = _pgbouncers[mode]
    if not found.startswith("error: "):
        return found
    if IN_CI:
        pytest.fail(f"pgbouncer is required under CI=true: {found}")
    pytest.skip(f"no pgbouncer: {found}")


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class StoreFactory:
    """Opens stores on one backend; every store it opens sees the same database."""

    def __init__(self, backend: str, tmp_path: Path, *, via: str = "direct") -> None:
        self.backend = backend
        self.via = via  # PostgreSQL: "direct", or pgbouncer's mode ("transaction", "session")
        self.schema = f"t_{uuid.uuid4().hex[:12]}"
        self.path = tmp_path / "clew.db"
        self._stores: list[clew.Store] = []
        self._memory: clew.Store | None = None
        if backend == "postgres":
            self.pg = pg_url()
            self.front = self.pg if via == "direct" else pgbouncer_url(via)

    @property
    def url(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.path}"
        if self.backend == "postgres":
            pooler = "" if self.via == "direct" else f"&pooler={self.via}"
            return f"{self.front}?schema={self.schema}{pooler}"
        return "memory://"

    @property
    def shared_across_processes(self) -> bool:
        return self.backend != "memory"

    def open(self, **options: object) -> clew.Store:
        if self.backend == "memory":  # one database per test: reuse the store
            if self._memory is None:
                self._memory = clew.open("memory://", **options)  # type: ignore[arg-type]
                self._stores.append(self._memory)
            return self._memory
        store = clew.open(self.url, **options)  # type: ignore[arg-type]
        self._stores.append(store)
        return store

    def close(self) -> None:
        for store in self._stores:
            store.close()
        if self.backend == "postgres":
            _drop_schema(self.pg, self.schema)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stores(backend: str, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory(backend, tmp_path)
    yield factory
    factory.close()


@pytest.fixture(params=["sqlite", "postgres"])
def shared_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Stores on the backends that several processes (or reopenings) can share."""
    factory = StoreFactory(str(request.param), tmp_path)
    yield factory
    factory.close()


@pytest.fixture
def store(stores: StoreFactory) -> clew.Store:
    return stores.open()


@pytest.fixture
async def astore(stores: StoreFactory) -> AsyncIterator[clew.AsyncStore]:
    s = await clew.open_async(stores.url)
    yield s
    await s.close()

"""The systems the suite compares, behind one small interface, and the storage floor.

A system opens a fresh database, runs the agent workload (``run``), and can then be
asked for its bytes, its latest state, its history and a fork. ``family`` says how a
row is read: ``clew`` rows get ratios to their ``peer`` (the stock LangGraph saver on
the same backend) and to the ``floor`` (a bare INSERT of the same delta bytes).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench import _db
from bench._workload import Step


@dataclass
class Sample:
    """One run: the time each step started (and the end), and the run's wall time."""

    marks: list[float] = field(default_factory=list)
    wall: float = 0.0

    def step_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


@dataclass
class Where:
    """Where a system keeps its data: a scratch directory, and PostgreSQL if it is used."""

    workdir: str
    pg: str | None = None


class System:
    """One way of making an agent run durable. Subclasses fill in the blanks."""

    name = "?"
    backend = "?"  # sqlite | postgres | memory
    family = "peer"  # clew | peer | floor | reference
    peer: str | None = None  # for clew rows: the system it is compared with
    floor: str | None = None

    def __init__(self, where: Where) -> None:
        self.where = where
        self.path = ""
        self.schema = ""

    @property
    def key(self) -> str:
        return f"{self.name} [{self.backend}]"

    # -- lifecycle -------------------------------------------------------------
    def open(self) -> None:
        """A fresh, empty database."""
        if self.backend == "sqlite":
            self.path = os.path.join(self.where.workdir, f"{uuid.uuid4().hex}.db")
        elif self.backend == "postgres":
            assert self.where.pg
            self.schema = _db.new_schema(self.where.pg)

    def close(self) -> None:
        """Close connections and throw the database away."""
        if self.backend == "sqlite" and self.path:
            for p in (self.path, self.path + "-wal", self.path + "-shm"):
                if os.path.exists(p):
                    os.remove(p)
        elif self.backend == "postgres" and self.schema:
            assert self.where.pg
            _db.drop_schema(self.where.pg, self.schema)

    @property
    def pg_url(self) -> str:
        assert self.where.pg
        sep = "&" if "?" in self.where.pg else "?"
        return f"{self.where.pg}{sep}schema={self.schema}"

    def stored_bytes(self) -> int:
        if self.backend == "sqlite":
            return _db.sqlite_bytes(self.path)
        if self.backend == "postgres":
            assert self.where.pg
            return _db.pg_bytes(self.where.pg, self.schema)
        raise NotImplementedError

    # -- the workload ------------------------------------------------------------
    def run(self, data: list[Step]) -> Sample:
        """Run ``len(data)`` steps as one agent run (thread)."""
        raise NotImplementedError

    # -- reading it back (after ``run``) ----------------------------------------
    def reopen(self) -> None:
        """Drop caches: the reads below start from a fresh connection, as a new process would."""

    def load_latest(self) -> Any:
        raise NotImplementedError

    def list_history(self) -> int:
        """List the run's checkpoints; returns how many."""
        raise NotImplementedError

    def can_fork(self) -> bool:
        return True

    def prepare_fork(self, step: int) -> None:
        """Find the checkpoint after ``step`` steps, which ``fork`` branches from."""
        raise NotImplementedError

    def fork(self, k: int) -> None:
        """Branch number ``k`` from the prepared checkpoint, with one message appended."""
        raise NotImplementedError


class Floor(System):
    """The storage floor: a bare INSERT of each step's delta bytes, one transaction per step.

    Bytes are encoded before the clock starts; there is no checkpoint, no state, no
    index but the primary key. Nothing that stores the same content durably can do less.
    """

    name = "floor: bare INSERT"
    family = "floor"

    def __init__(self, where: Where, backend: str) -> None:
        super().__init__(where)
        self.backend = backend
        self.conn: Any = None

    def open(self) -> None:
        super().open()
        self._connect()
        if self.backend == "sqlite":
            self.table = "t"
            self.conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
        else:
            self.table = f'"{self.schema}".t'
            self.conn.execute(f"CREATE TABLE {self.table} (id BIGSERIAL PRIMARY KEY, data BYTEA)")

    def _connect(self) -> None:
        if self.backend == "sqlite":
            self.conn = _db.sqlite_connect(self.path)
        else:
            import psycopg

            self.conn = psycopg.connect(self.where.pg, autocommit=True)

    def reopen(self) -> None:
        self.conn.close()
        self._connect()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        super().close()

    def run(self, data: list[Step]) -> Sample:
        from bench._workload import delta

        deltas = [delta(s) for s in data]
        s = Sample()
        insert = f"INSERT INTO {self.table} (data) VALUES ({'?' if self.backend == 'sqlite' else '%s'})"
        start = time.perf_counter()
        if self.backend == "sqlite":
            for d in deltas:
                s.marks.append(time.perf_counter())
                self.conn.execute("BEGIN")
                self.conn.execute(insert, (d,))
                self.conn.execute("COMMIT")
        else:
            for d in deltas:
                s.marks.append(time.perf_counter())
                with self.conn.transaction():
                    self.conn.execute(insert, (d,))
        s.marks.append(time.perf_counter())
        s.wall = s.marks[-1] - start
        return s

    def load_latest(self) -> Any:
        """Every delta of the run: the least a reader must fetch to rebuild the state."""
        return self.conn.execute(f"SELECT data FROM {self.table} ORDER BY id").fetchall()

    def list_history(self) -> int:
        return len(self.conn.execute(f"SELECT id, length(data) FROM {self.table} ORDER BY id DESC").fetchall())

    def can_fork(self) -> bool:
        return False

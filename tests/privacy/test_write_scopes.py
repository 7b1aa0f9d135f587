"""Every write path encrypts a run's rows under that run's own data key, whatever run the
same store (and thread) wrote to just before: the key an operation writes under is
chosen per run, never carried over from the previous operation or the previous run."""

from __future__ import annotations

from typing import Any

from clew.codec import Codec
from tests.helpers.raw import Raw
from tests.privacy.test_data_keys import ring


def _kid(dek: bytes | None) -> str:
    return bytes(dek or b"").split(b"\0")[0].decode()


def _cells_of(raw: Raw, rk: int) -> list[tuple[str, bytes]]:
    """(where, stored bytes) of every cell of one run that holds user data."""
    cells = [("blob", r[0]) for r in raw.rows("SELECT data FROM blobs WHERE rk = ?", rk)]
    cells += [(f"journal {r[1]}", r[0]) for r in raw.rows("SELECT data, kind FROM journal WHERE rk = ?", rk)]
    for manifest, meta, kind in raw.rows("SELECT manifest, meta, kind FROM checkpoints WHERE rk = ?", rk):
        cells += [(f"{kind} manifest", manifest), (f"{kind} metadata", meta)]
    cells += [("run metadata", r[0]) for r in raw.rows("SELECT meta FROM runs WHERE rk = ?", rk)]
    return [(where, bytes(c)) for where, c in cells if c is not None and len(bytes(c)) > 0]


def test_each_write_path_uses_the_runs_own_key_when_runs_interleave(shared_stores: Any) -> None:
    store = shared_stores.open(codec=Codec(keyring=ring("k1")))
    other = shared_stores.open(codec=Codec(keyring=ring("k1")))  # a second process's view
    heads: dict[str, str] = {}
    for run_id in ("a", "b"):
        store.create_run(run_id, agent="x", state={"v": f"{run_id}0"}, metadata={"who": f"meta-{run_id}"})
        heads[run_id] = store.get_branch(run_id).head  # type: ignore[assignment]
    # Alternate runs at every operation, through both stores: each write follows one to the other run.
    for step in range(3):
        for run_id, writer in (("a", store), ("b", other), ("b", store), ("a", other)):
            c = writer.commit(
                run_id, state={"v": f"{run_id}{step}-{writer is store}"}, parent=heads[run_id],
                journal=[("note", {"n": f"{run_id}{step}"})],
            )  # fmt: skip
            heads[run_id] = c.checkpoint_id
    for run_id in ("b", "a"):
        store.append_journal(run_id, [("call.outcome", {"result": f"result-{run_id}"})])
        store.update_run(run_id, metadata={"who": f"meta2-{run_id}"})
        store.set_branch_status(run_id, status="paused", journal=[("pause", {"why": f"ask-{run_id}"})])
        store.set_branch_status(run_id, status="running", journal=[("answer", {"by": f"alice-{run_id}"})])
    for run_id in ("a", "b"):
        store.fork(
            run_id, checkpoint_id=heads[run_id], branch="alt", state={"v": f"fork-{run_id}"},
            journal=[("edit", {"why": f"edit-{run_id}"})],
        )  # fmt: skip
    store.set_branch_status("a", status="running", journal=[("note", {"n": "a-expire"})])
    claimed = other.claim_expired(owner="w2", ttl=30, limit=10, agent="x")  # journals a lease entry per run
    assert {lease.run_id for lease in claimed} == {"a", "b"}

    raw = Raw(shared_stores, store)
    try:
        kids = {r[0]: _kid(r[1]) for r in raw.rows("SELECT run_id, dek FROM runs")}
        assert kids["a"] != kids["b"]
        for run_id in ("a", "b"):
            cells = _cells_of(raw, raw.rk(run_id))
            assert {where.split()[0] for where in dict(cells)} >= {"blob", "journal", "run"}
            wrong = [(where, store.codec.key_id(c)) for where, c in cells if store.codec.key_id(c) != kids[run_id]]
            assert wrong == [], f"run {run_id}: cells not under its own key {kids[run_id]}: {wrong}"
        for reader in (store, other, shared_stores.open(codec=Codec(keyring=ring("k1")))):
            for run_id in ("a", "b"):
                assert reader.verify(run_id).ok
                assert [e.kind for e in reader.list_journal(run_id)][-1] == "lease"
    finally:
        raw.close()

"""Generated checkpoint and run ids: UUIDv7, unique, in creation order."""

from __future__ import annotations

import uuid

from clew.store._query import new_id


def test_ids_are_uuid7_unique_and_ordered_even_within_a_millisecond() -> None:
    ids = [new_id() for _ in range(20_000)]  # many share a millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids[:100])


def test_checkpoints_of_a_run_list_in_id_order(tmp_path: object) -> None:
    import clew

    with clew.open("memory://") as store:
        run = store.create_run(agent="ids")
        head = None
        made = []
        for i in range(50):
            head = store.commit(run.run_id, state={"i": i}, parent=head).checkpoint_id
            made.append(head)
        listed = [c.checkpoint_id for c in store.list_checkpoints(run.run_id, limit=100)]
        assert listed == sorted(made, reverse=True)

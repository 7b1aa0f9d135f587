"""Schema versions and upcasters: old checkpoints load under new code, lazily; gaps are typed errors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import clew
from clew.errors import ConfigError, InvalidStateError, NoUpcasterError


class TicketV3(BaseModel):
    customer: str = ""
    priority: int = 0
    tags: list[str] = []


def make_v1(store: clew.Store) -> clew.Agent[dict[str, Any]]:
    """The old code: a dict state with ``name`` and ``urgent`` (schema v1)."""
    agent = clew.Agent("tickets", state=dict, store=store, schema_version=1)

    @agent.step(start=True)
    def ask(state: dict[str, Any], ctx: clew.Context) -> str:
        state["answer"] = ctx.interrupt("?")
        return "done"

    @agent.step
    def done(state: dict[str, Any], ctx: clew.Context) -> None:
        return None

    return agent


def make_v3(store: clew.Store, *, with_v2: bool = True) -> clew.Agent[TicketV3]:
    """The new code: v1 -> v2 renamed name to customer; v2 -> v3 made urgent a priority."""
    agent = clew.Agent("tickets", state=TicketV3, store=store, schema_version=3)
    if with_v2:

        @agent.upcaster(from_version=1)
        def rename(fields: dict[str, Any]) -> dict[str, Any]:
            fields["customer"] = fields.pop("name")
            return fields

    @agent.upcaster(from_version=2)
    def prioritise(fields: dict[str, Any]) -> dict[str, Any]:
        fields["priority"] = 2 if fields.pop("urgent") else 0
        fields.pop("answer", None)
        return fields

    @agent.step(start=True)
    def ask(state: TicketV3, ctx: clew.Context) -> str:
        state.tags.append(str(ctx.interrupt("?")))
        return "done"

    @agent.step
    def done(state: TicketV3, ctx: clew.Context) -> None:
        state.tags.append("done")

    return agent


def test_old_checkpoints_load_through_the_chain(store: clew.Store) -> None:
    paused = make_v1(store).start({"name": "ann", "urgent": True}, run_id="r")
    new = make_v3(store)
    state = new.state_at(paused.checkpoint_id)
    assert state == TicketV3(customer="ann", priority=2)
    # lazily: the stored checkpoint is untouched
    assert store.load_state("r", paused.checkpoint_id) == {"name": "ann", "urgent": True}
    run = new.resume("r", answer="billing")
    assert run.status == "completed"
    assert run.state == TicketV3(customer="ann", priority=2, tags=["billing", "done"])
    head = store.get_checkpoint("r", run.checkpoint_id)
    assert head.metadata["schema_version"] == 3
    assert store.load_state("r", run.checkpoint_id) == {"customer": "ann", "priority": 2, "tags": ["billing", "done"]}


def test_a_gap_in_the_chain_names_the_versions_and_loses_nothing(store: clew.Store) -> None:
    paused = make_v1(store).start({"name": "ann", "urgent": False}, run_id="r")
    broken = make_v3(store, with_v2=False)
    with pytest.raises(NoUpcasterError, match=r"version 1 .*no upcaster from version 1 to 2") as info:
        broken.state_at(paused.checkpoint_id)
    assert (info.value.stored, info.value.current, info.value.missing) == (1, 3, 1)
    with pytest.raises(NoUpcasterError):
        broken.resume("r", answer="x")
    assert store.get_run("r").status == "paused"  # refused before anything was recorded
    assert store.list_journal("r", pending_on="main") == []
    assert len(store.list_checkpoints("r").items) == 2  # nothing written
    # the fixed code resumes it from the last good checkpoint
    fixed = make_v3(store).resume("r", answer="x")
    assert fixed.status == "completed" and fixed.state.customer == "ann"


def test_a_running_run_that_cannot_load_fails_instead_of_looping(store: clew.Store) -> None:
    v1 = make_v1(store)
    store.create_run(
        "r",
        agent="tickets",
        state={"name": "x", "urgent": True},
        checkpoint_metadata={"schema_version": 1, "next": "ask"},
    )
    with pytest.raises(NoUpcasterError):
        make_v3(store, with_v2=False).recover()
    assert store.get_run("r").status == "failed"  # recover() leaves it alone from now on
    assert make_v3(store, with_v2=False).recover() == []
    assert v1.state_at(store.get_branch("r").head or "") == {"name": "x", "urgent": True}


def test_a_newer_checkpoint_is_never_downgraded(store: clew.Store) -> None:
    agent = clew.Agent("tickets", state=dict, store=store, schema_version=4)

    @agent.step(start=True)
    def ask(state: dict[str, Any], ctx: clew.Context) -> None:
        ctx.interrupt("?")

    paused = agent.start({}, run_id="r")
    with pytest.raises(NoUpcasterError, match=r"version 4 .* version 3 .* never downgraded") as info:
        make_v3(store).state_at(paused.checkpoint_id)
    assert info.value.missing is None
    assert agent.state_at(paused.checkpoint_id) == {}


def test_bad_registrations_are_config_errors(store: clew.Store) -> None:
    agent = clew.Agent("x", state=dict, store=store, schema_version=2)
    with pytest.raises(ConfigError, match=r"1\.\.1"):
        agent.upcaster(from_version=2)(lambda f: f)
    agent.upcaster(from_version=1)(lambda f: f)
    with pytest.raises(ConfigError, match="already"):
        agent.upcaster(from_version=1)(lambda f: f)
    with pytest.raises(ConfigError, match="positive int"):
        clew.Agent("x", state=dict, store=store, schema_version=0)


def test_check_compat_reports_each_failing_checkpoint(store: clew.Store) -> None:
    v1 = make_v1(store)
    v1.start({"name": "ann", "urgent": True}, run_id="a")
    v1.resume("a", answer=1)
    v1.start({"name": "bob", "urgent": False}, run_id="b")
    report = make_v3(store).check_compat()
    assert report.ok, report.problems
    assert (report.runs, report.checkpoints) == (2, 6)

    gap = make_v3(store, with_v2=False).check_compat()
    assert not gap.ok and gap.checkpoints == 6
    assert {p.error for p in gap.problems} == {"NoUpcasterError"} and len(gap.problems) == 6
    assert {p.schema_version for p in gap.problems} == {1}

    # a v3 agent whose upcaster forgets a field: the type check catches it
    wrong = clew.Agent("tickets", state=TicketV3, store=store, schema_version=2)
    wrong.upcaster(from_version=1)(lambda f: f)
    bad = wrong.check_compat(runs=1)
    assert bad.runs == 1 and {p.error for p in bad.problems} == {"InvalidStateError"}
    assert "no longer has" in bad.problems[0].message


def test_validate_stored_ignores_missing_ephemeral_fields(store: clew.Store) -> None:
    class WithClient(BaseModel):
        n: int
        client: object

    agent = clew.Agent("e", state=WithClient, store=store, ephemeral=("client",))
    agent._adapter.validate_stored({"n": 1}, "here")
    with pytest.raises(InvalidStateError, match="n: "):
        agent._adapter.validate_stored({"n": "many"}, "here")


def test_migrate_rewrites_paused_runs_as_the_current_version(store: clew.Store) -> None:
    v1 = make_v1(store)
    v1.start({"name": "ann", "urgent": True}, run_id="paused")
    v1.start({"name": "bob", "urgent": False}, run_id="done")
    v1.resume("done", answer="x")
    new = make_v3(store)
    report = new.migrate()
    assert [(r, b) for r, b, _ in report.migrated] == [("paused", "main")]
    assert [(r, b) for r, b, _ in report.skipped] == [("done", "main")]
    head = store.get_checkpoint("paused", report.migrated[0][2])
    assert head.kind == "edit" and head.metadata["schema_version"] == 3
    assert head.metadata["actor"] == "clew migrate" and head.metadata["reason"] == "schema version 1 -> 3"
    assert store.load_state("paused", head.checkpoint_id) == {"customer": "ann", "priority": 2, "tags": []}
    assert store.verify("paused").ok
    assert new.migrate().migrated == []  # done: nothing left at an old version but the completed run
    # the migrated run needs no upcaster any more, and resumes where it paused
    bare = clew.Agent("tickets", state=TicketV3, store=store, schema_version=3)
    bare.step(name="ask", start=True)(lambda state, ctx: state.tags.append(str(ctx.interrupt("?"))))
    run = bare.resume("paused", answer="ok")
    assert run.status == "completed" and run.state.tags == ["ok"]


def test_migrate_cli(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import textwrap

    from clew.cli import main

    db = tmp_path / "m.db"
    with clew.open(f"sqlite:///{db}") as store:
        make_v1(store).start({"name": "ann", "urgent": True}, run_id="p")
    (tmp_path / "tickets_v3.py").write_text(
        textwrap.dedent(
            """
            import clew
            from tests.privacy.test_upcast import make_v3
            agent = make_v3(clew.open("memory://"))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["migrate", "tickets_v3:agent", "--db", str(db), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [m["run_id"] for m in report["migrated"]] == ["p"]

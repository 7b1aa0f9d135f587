"""The safety margin before a non-idempotent tool call (``lease_margin``).

A call that must not run twice starts only with at least ``lease_margin`` seconds of
lease left: with less, the worker renews first, and if the renewal fails because
another worker took the branch over, the call never starts and nothing more is
written by this worker. The heartbeat renews every third of ``lease_ttl`` (10 s
here), so within these tests only the margin renews.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import clew
from clew.errors import ConfigError, LeaseLostError
from tests.conftest import StoreFactory

TTL = 30.0


def paying_agent(
    store: clew.Store, seen: dict[str, Any], *, before_call: Any = None, **options: Any
) -> clew.Agent[dict[str, Any]]:
    """One step: note the stored lease, wait a little, then make a non-idempotent call."""
    agent: clew.Agent[dict[str, Any]] = clew.Agent("pay", state=dict, store=store, worker_id="A", **options)

    def charge() -> str:
        seen.setdefault("charges", 0)
        seen["charges"] += 1
        seen["expires_during_call"] = store.get_branch(seen["run_id"]).lease_expires_at
        return "receipt"

    @agent.step(start=True)
    def pay(state: dict[str, Any], ctx: clew.Context) -> None:
        seen["run_id"] = ctx.run_id
        seen["expires_before"] = store.get_branch(ctx.run_id).lease_expires_at
        if before_call is not None:
            before_call(ctx)
        time.sleep(0.15)  # the lease left is now below ttl - 0.15
        state["receipt"] = ctx.call("charge", charge)

    return agent


def test_a_call_with_less_than_the_margin_left_renews_the_lease_first(store: clew.Store) -> None:
    seen: dict[str, Any] = {}
    run = paying_agent(store, seen, lease_ttl=TTL, lease_margin=TTL - 0.1).start({"n": 1}, run_id="r")
    assert run.status == "completed" and run.state["receipt"] == "receipt"
    assert seen["charges"] == 1
    # The renewal happened before the call ran: the call saw a later expiry than the step.
    assert seen["expires_during_call"] > seen["expires_before"]
    assert len([e for e in store.list_journal("r") if e.kind == "call.intent"]) == 1
    assert store.verify("r").ok


def test_a_call_with_enough_lease_left_does_not_renew(store: clew.Store) -> None:
    seen: dict[str, Any] = {}
    run = paying_agent(store, seen, lease_ttl=TTL, lease_margin=1.0).start({"n": 1}, run_id="r")
    assert run.status == "completed"
    assert seen["charges"] == 1
    assert seen["expires_during_call"] == seen["expires_before"]  # no renewal: the control of the test above


def test_a_failed_renewal_before_the_call_never_starts_it(stores: StoreFactory) -> None:
    store = stores.open()
    seen: dict[str, Any] = {}

    def taken_over(ctx: clew.Context) -> None:
        seen["journal"] = store.list_journal(ctx.run_id)
        seen["head"] = store.get_branch(ctx.run_id).head
        # Worker B, through a store of its own, takes the branch over: A's lease lapses
        # (released here, as an expiry would) and B claims it, bumping the epoch.
        b = stores.open()
        assert b.release_lease(ctx.run_id, owner="A")
        [seen["b"]] = b.claim_expired(owner="B", ttl=TTL)

    agent = paying_agent(store, seen, before_call=taken_over, lease_ttl=TTL, lease_margin=TTL - 0.1)
    # The renewal is what fails (the store's fence on the intent would say "was not written").
    with pytest.raises(LeaseLostError, match="expired and taken over"):
        agent.start({"n": 1}, run_id="r")
    assert "charges" not in seen  # the tool function was never invoked
    assert seen["b"].owner == "B" and seen["b"].epoch == 2
    # A wrote nothing after the takeover: the only new entry is B's claim.
    new = [e for e in store.list_journal("r") if e not in seen["journal"]]
    assert [e.kind for e in new] == ["lease"], new
    assert not [e for e in store.list_journal("r") if e.kind == "call.intent"]
    branch = store.get_branch("r")
    assert branch.head == seen["head"] and branch.lease_owner == "B" and branch.epoch == 2
    assert branch.status == "running"  # A could not mark it failed either
    assert store.load_state("r", seen["head"]) == {"n": 1}  # the last good checkpoint, intact
    assert store.verify("r").ok


@pytest.mark.parametrize("margin", [-1, -0.001, float("nan"), TTL, TTL + 1, float("inf"), "5", True])
def test_a_lease_margin_outside_zero_to_the_ttl_is_refused(store: clew.Store, margin: Any) -> None:
    with pytest.raises(ConfigError, match="lease_margin"):
        clew.Agent("a", state=dict, store=store, lease_ttl=TTL, lease_margin=margin)


def test_a_lease_margin_from_zero_up_to_the_ttl_is_taken() -> None:
    store = clew.open("memory://")
    assert clew.Agent("a", state=dict, store=store, lease_ttl=TTL, lease_margin=0).lease_margin == 0
    assert clew.Agent("a", state=dict, store=store, lease_ttl=TTL, lease_margin=TTL - 0.5).lease_margin == TTL - 0.5
    assert clew.Agent("a", state=dict, store=store, lease_ttl=TTL).lease_margin == TTL / 2  # the default
    store.close()

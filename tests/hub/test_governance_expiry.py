"""Governance inside the hub: the sweep expires grants on time and sends their revocations, grant
tasks a stopped hub still owed go out, failed deliveries are sent again on request, and requests
name only collections a node published."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from governance_support import Clock

from oncofed.access.policy import Role
from oncofed.errors import NotFoundError
from oncofed.hub.expiry import sweep, sweeping
from oncofed.hub.governance import Governance
from oncofed.hub.keys import KeyPaths, generate_keypair, public_pem
from oncofed.hub.negotiation import RequestDraft
from oncofed.hub.negotiation_rules import Action, HubActor, State
from oncofed.hub.registry import APPROVED
from oncofed.hub.service import Hub
from oncofed.hub.signing import utc_now

RITA = HubActor("rita", frozenset({Role.RESEARCHER}))
CARL = HubActor("carl", frozenset({Role.ACCESS_COMMITTEE}))
DANA = HubActor("dana", frozenset({Role.DATA_MANAGER}), frozenset({"node-a", "node-b"}))
DRAFT = RequestDraft(
    project="P",
    purpose="test a model",
    cohort={},
    collections={"node-a": ["c1"], "node-b": ["c2"]},
    tier=3,
    duration_days=10,
)


@pytest.fixture
def clock() -> Clock:
    return Clock(utc_now())


@pytest.fixture
def gov(tmp_path: Path, clock: Clock) -> Iterator[Governance]:
    hub, _ = Hub.init(tmp_path / "hub", name="test-hub")
    for node in ("node-a", "node-b"):
        key = generate_keypair(KeyPaths.in_dir(tmp_path / node, "node"))
        hub.registry.register(node, node, public_pem(key.public_key()).decode())
        hub.registry.decide(node, APPROVED, "hub-admin")
    with hub:
        governance = Governance(hub, clock)
        yield governance
        governance.close()


def granted(gov: Governance, *, dispatch: bool = True) -> str:
    act = gov.act if dispatch else gov.negotiations.act
    request_id = gov.create(RITA, DRAFT).request_id
    act(RITA, Action.SUBMIT, request_id)
    act(CARL, Action.START_REVIEW, request_id)
    act(CARL, Action.APPROVE, request_id)
    act(DANA, Action.ACCEPT, request_id, node="node-a")
    act(DANA, Action.ACCEPT, request_id, node="node-b")
    assert gov.negotiations.get(request_id).state is State.GRANTED
    return request_id


def deliveries(gov: Governance, request_id: str) -> list[tuple[str, str, str]]:
    return [(d.node_id, d.kind, d.state) for d in gov.deliveries(request_id)]


def test_a_grant_expires_on_time_and_its_revocations_go_out(gov: Governance, clock: Clock) -> None:
    request_id = granted(gov)
    assert deliveries(gov, request_id) == [
        ("node-a", "grant.apply", "queued"),
        ("node-b", "grant.apply", "queued"),
    ]
    clock.now += timedelta(days=10) - timedelta(seconds=1)
    assert sweep(gov) == 0
    clock.now += timedelta(seconds=1)
    assert sweep(gov) == 1
    assert gov.negotiations.get(request_id).state is State.EXPIRED
    assert [(n, k) for n, k, _ in deliveries(gov, request_id)] == [
        ("node-a", "grant.apply"),
        ("node-a", "grant.revoke"),
        ("node-b", "grant.apply"),
        ("node-b", "grant.revoke"),
    ]
    assert sweep(gov) == 0 and len(gov.deliveries(request_id)) == 4  # nothing sent twice
    audit = [(e.actor, e.action) for e in gov.hub.audit_log.entries() if request_id in e.target]
    assert audit[-3:] == [
        ("system", "request.expire"),
        ("system", "grant.revoke.send"),
        ("system", "grant.revoke.send"),
    ]
    assert gov.hub.audit_log.verify() == []


def test_grant_tasks_owed_by_a_hub_that_stopped_are_sent_by_the_next_sweep(
    gov: Governance,
) -> None:
    request_id = granted(gov, dispatch=False)  # state committed, the hub died before sending
    assert gov.deliveries(request_id) == []
    sweep(gov)
    assert [k for _, k, _ in deliveries(gov, request_id)] == ["grant.apply", "grant.apply"]


def test_failed_deliveries_are_sent_again_on_request_only(gov: Governance) -> None:
    request_id = granted(gov)
    (task,) = gov.hub.broker.lease_for("node-a")
    gov.hub.broker.answer("node-a", task.task_id, None, "invalid_query: no collections ['c1']")
    failed = {d.node_id: d for d in gov.deliveries(request_id)}
    assert (failed["node-a"].state, failed["node-a"].error) == (
        "failed",
        "invalid_query: no collections ['c1']",
    )
    sweep(gov)
    assert gov.deliveries(request_id)[0].job_id == failed["node-a"].job_id
    gov.deliver(request_id, by="carl", resend=True)
    again = {d.node_id: d for d in gov.deliveries(request_id)}
    assert again["node-a"].job_id != failed["node-a"].job_id and again["node-a"].state == "queued"
    assert again["node-b"].job_id == failed["node-b"].job_id  # still on its way: left alone


def test_the_sweep_runs_while_the_hub_serves(gov: Governance, clock: Clock) -> None:
    request_id = granted(gov)
    clock.now += timedelta(days=11)

    async def serve_a_while() -> None:
        async with sweeping(gov, every_s=0.05):
            for _ in range(100):
                if gov.negotiations.get(request_id).state is State.EXPIRED:
                    return
                await asyncio.sleep(0.05)

    asyncio.run(serve_a_while())
    assert gov.negotiations.get(request_id).state is State.EXPIRED


def test_a_request_names_only_collections_a_node_published(gov: Governance) -> None:
    gov.hub.store_catalogue("node-a", [{"collection_id": "c1"}, {"collection_id": "c3"}])
    asked = RequestDraft(**{**DRAFT.__dict__, "collections": {"node-a": ["c1", "c2"]}})
    with pytest.raises(
        NotFoundError, match=r"'node-a' has no collections \['c2'\].*\['c1', 'c3'\]"
    ):
        gov.create(RITA, asked)
    assert gov.negotiations.requests() == []
    granted(gov)  # node-b published nothing yet: its collections are not checked

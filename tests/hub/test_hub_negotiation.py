"""The access-negotiation state machine: every transition, every refusal, roles, expiry, restart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from governance_support import Clock

from oncofed.access.policy import Role
from oncofed.errors import ForbiddenError, QueryError
from oncofed.hub.db import connect
from oncofed.hub.errors import RequestNotFoundError, TransitionError
from oncofed.hub.negotiation import Negotiations, RequestDraft
from oncofed.hub.negotiation_rules import RULES, Action, Decision, HubActor, State

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
RITA = HubActor("rita", frozenset({Role.RESEARCHER}))
OSCAR = HubActor("oscar", frozenset({Role.RESEARCHER}))
CARL = HubActor("carl", frozenset({Role.ACCESS_COMMITTEE}))
DANA = HubActor("dana", frozenset({Role.DATA_MANAGER}), frozenset({"node-a"}))
BERT = HubActor("bert", frozenset({Role.DATA_MANAGER}), frozenset({"node-b", "node-c"}))
ADA = HubActor("ada", frozenset({Role.ADMIN}))
DRAFT = RequestDraft(
    project="PROSTATE-AI",
    purpose="validate an ISUP grading model",
    cohort={"modality": ["sm"], "age": [50, 80]},
    collections={"node-a": ["prostate-wsi"], "node-b": ["prostate-wsi", "prostate-mri"]},
    tier=2,
    duration_days=90,
)

Step = tuple[HubActor, Action, dict[str, Any]]
SUBMIT: Step = (RITA, Action.SUBMIT, {})
REVIEW: Step = (CARL, Action.START_REVIEW, {})
APPROVE: Step = (CARL, Action.APPROVE, {"reason": "sound protocol"})
REJECT: Step = (CARL, Action.REJECT, {"reason": "no ethics approval"})
WITHDRAW: Step = (RITA, Action.WITHDRAW, {})
ACCEPT_A: Step = (DANA, Action.ACCEPT, {"node": "node-a"})
ACCEPT_B: Step = (BERT, Action.ACCEPT, {"node": "node-b"})
DECLINE_A: Step = (DANA, Action.DECLINE, {"node": "node-a", "reason": "busy"})
DECLINE_B: Step = (BERT, Action.DECLINE, {"node": "node-b", "reason": "consent"})
REVOKE: Step = (ADA, Action.REVOKE, {"reason": "protocol breach"})
# How to reach each state from a fresh draft (expired: granted, then the clock runs out).
PATHS: dict[State, list[Step]] = {
    State.DRAFT: [],
    State.SUBMITTED: [SUBMIT],
    State.UNDER_REVIEW: [SUBMIT, REVIEW],
    State.APPROVED: [SUBMIT, REVIEW, APPROVE],
    State.REJECTED: [SUBMIT, REVIEW, REJECT],
    State.WITHDRAWN: [WITHDRAW],
    State.GRANTED: [SUBMIT, REVIEW, APPROVE, ACCEPT_A, ACCEPT_B],
    State.DECLINED: [SUBMIT, REVIEW, APPROVE, DECLINE_A, DECLINE_B],
    State.REVOKED: [SUBMIT, REVIEW, APPROVE, ACCEPT_A, ACCEPT_B, REVOKE],
    State.EXPIRED: [SUBMIT, REVIEW, APPROVE, ACCEPT_A, ACCEPT_B],
}
# The right actor (and arguments) for each action taken through act().
RIGHT: dict[Action, Step] = {
    step[1]: step for step in (SUBMIT, REVIEW, APPROVE, REJECT, WITHDRAW, ACCEPT_A, REVOKE)
} | {Action.DECLINE: DECLINE_A}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def hub(tmp_path: Path, clock: Clock) -> Iterator[Negotiations]:
    con = connect(tmp_path / "hub.duckdb")
    yield Negotiations(con, clock=clock)
    con.close()


def reach(hub: Negotiations, clock: Clock, state: State) -> str:
    request_id = hub.create(RITA, DRAFT).request_id
    for actor, action, kwargs in PATHS[state]:
        hub.act(actor, action, request_id, **kwargs)
    if state is State.EXPIRED:
        clock.now += timedelta(days=DRAFT.duration_days)
        assert [e.request_id for e in hub.expire_due()] == [request_id]
    assert hub.get(request_id).state is state
    return request_id


VALID = [
    (source, action)
    for action, rule in RULES.items()
    if action not in (Action.CREATE, Action.EDIT, Action.EXPIRE)
    for source in sorted(rule.sources)
]
INVALID = [
    (source, action)
    for action, rule in RULES.items()
    if action not in (Action.CREATE, Action.EDIT, Action.EXPIRE)
    for source in State
    if source not in rule.sources
]


def test_tables_cover_every_state_and_action() -> None:
    assert set(PATHS) == set(State)
    assert len(VALID) + len(INVALID) == len(State) * (len(Action) - 3)


@pytest.mark.parametrize(("source", "action"), VALID)
def test_valid_transition(hub: Negotiations, clock: Clock, source: State, action: Action) -> None:
    request_id = reach(hub, clock, source)
    actor, _, kwargs = RIGHT[action]
    event = hub.act(actor, action, request_id, **kwargs)
    expected = RULES[action].target or State.APPROVED  # one of two nodes voted: still approved
    assert (event.from_state, event.to_state, event.action) == (source, expected, action)
    assert (event.actor, event.reason, event.node) == (
        actor.user_id,
        kwargs.get("reason", ""),
        kwargs.get("node"),
    )
    assert hub.get(request_id).state is expected
    assert hub.history(request_id)[-1] == event


@pytest.mark.parametrize(("source", "action"), INVALID)
def test_invalid_transition(hub: Negotiations, clock: Clock, source: State, action: Action) -> None:
    request_id = reach(hub, clock, source)
    before = hub.history(request_id)
    actor, _, kwargs = RIGHT[action]
    with pytest.raises(TransitionError, match=f"cannot {action.value} a request that is"):
        hub.act(actor, action, request_id, **kwargs)
    assert hub.get(request_id).state is source
    assert hub.history(request_id) == before


def test_create_records_a_canonical_draft(hub: Negotiations) -> None:
    event = hub.create(RITA, DRAFT)
    assert (event.seq, event.from_state, event.to_state, event.actor) == (
        1,
        None,
        State.DRAFT,
        "rita",
    )
    request = hub.get(event.request_id)
    assert request.cohort == {"age": [50.0, 80.0], "modality": ["SM"]}
    assert request.collections == {
        "node-a": ("prostate-wsi",),
        "node-b": ("prostate-wsi", "prostate-mri"),
    }
    assert request.decisions == {"node-a": Decision.PENDING, "node-b": Decision.PENDING}
    assert (request.requester, request.tier, request.expires_at) == ("rita", 2, None)
    assert event.target == f"access_request:{event.request_id}"
    assert event.details()["to"] == "draft"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tier": 1}, "tier 1 .catalogue. needs no request"),
        ({"tier": 4}, "tier must be 2"),
        ({"project": " "}, "needs a project"),
        ({"collections": {}}, "at least one collection"),
        ({"collections": {"node-a": []}}, "at least one collection"),
        ({"duration_days": 0}, "duration_days must be"),
        ({"cohort": {"colour": ["red"]}}, "unknown field 'colour'"),
    ],
)
def test_bad_drafts_are_refused(hub: Negotiations, change: dict[str, Any], message: str) -> None:
    draft = RequestDraft(**{**DRAFT.__dict__, **change})
    with pytest.raises(QueryError, match=message):
        hub.create(RITA, draft)
    assert hub.requests() == []


@pytest.mark.parametrize(
    ("source", "actor", "action", "kwargs", "message"),
    [
        (None, CARL, Action.CREATE, {}, "needs the role researcher"),
        (State.DRAFT, OSCAR, Action.SUBMIT, {}, "only the requester 'rita'"),
        (State.DRAFT, CARL, Action.SUBMIT, {}, "needs the role researcher"),
        (State.SUBMITTED, OSCAR, Action.WITHDRAW, {}, "only the requester"),
        (State.SUBMITTED, RITA, Action.START_REVIEW, {}, "access_committee"),
        (State.UNDER_REVIEW, ADA, Action.APPROVE, {}, "access_committee"),
        (State.UNDER_REVIEW, DANA, Action.REJECT, {"reason": "x"}, "access_committee"),
        (State.APPROVED, RITA, Action.ACCEPT, {"node": "node-a"}, "data_manager"),
        (State.APPROVED, DANA, Action.ACCEPT, {"node": "node-b"}, "not a data holder"),
        (State.APPROVED, DANA, Action.ACCEPT, {}, "not a data holder of node None"),
        (State.APPROVED, BERT, Action.DECLINE, {"node": "node-a", "reason": "x"}, "holder"),
        (State.GRANTED, RITA, Action.REVOKE, {"reason": "x"}, "access_committee or admin"),
        (State.GRANTED, DANA, Action.REVOKE, {"reason": "x"}, "access_committee or admin"),
    ],
)
def test_wrong_role_is_forbidden(
    hub: Negotiations,
    clock: Clock,
    source: State | None,
    actor: HubActor,
    action: Action,
    kwargs: dict[str, Any],
    message: str,
) -> None:
    if source is None:
        with pytest.raises(ForbiddenError, match=message):
            hub.create(actor, DRAFT)
        return
    request_id = reach(hub, clock, source)
    with pytest.raises(ForbiddenError, match=message):
        hub.act(actor, action, request_id, **kwargs)
    assert hub.get(request_id).state is source


def test_committee_member_cannot_review_own_request(hub: Negotiations) -> None:
    both = HubActor("rita", frozenset({Role.RESEARCHER, Role.ACCESS_COMMITTEE}))
    request_id = hub.create(both, DRAFT).request_id
    hub.act(both, Action.SUBMIT, request_id)
    with pytest.raises(ForbiddenError, match="their own request"):
        hub.act(both, Action.START_REVIEW, request_id)


@pytest.mark.parametrize("action", [Action.REJECT, Action.DECLINE, Action.REVOKE])
def test_refusals_need_a_reason(hub: Negotiations, clock: Clock, action: Action) -> None:
    source = {Action.REJECT: State.UNDER_REVIEW, Action.REVOKE: State.GRANTED}
    request_id = reach(hub, clock, source.get(action, State.APPROVED))
    actor, _, kwargs = RIGHT[action]
    with pytest.raises(TransitionError, match="needs a reason"):
        hub.act(actor, action, request_id, **{**kwargs, "reason": "  "})


def test_split_vote_grants_only_the_accepting_node(hub: Negotiations, clock: Clock) -> None:
    request_id = reach(hub, clock, State.APPROVED)
    hub.act(*ACCEPT_A[:2], request_id, **ACCEPT_A[2])
    event = hub.act(*DECLINE_B[:2], request_id, **DECLINE_B[2])
    assert (event.from_state, event.to_state, event.node) == (
        State.APPROVED,
        State.GRANTED,
        "node-b",
    )
    request = hub.get(request_id)
    assert request.granted_collections() == {"node-a": ("prostate-wsi",)}
    assert request.expires_at == T0 + timedelta(days=90)


def test_a_node_votes_once_and_only_on_its_requests(hub: Negotiations, clock: Clock) -> None:
    request_id = reach(hub, clock, State.APPROVED)
    hub.act(*ACCEPT_A[:2], request_id, **ACCEPT_A[2])
    with pytest.raises(TransitionError, match="has already accepted"):
        hub.act(DANA, Action.DECLINE, request_id, node="node-a", reason="changed my mind")
    with pytest.raises(TransitionError, match="'node-c' is not part of request"):
        hub.act(BERT, Action.ACCEPT, request_id, node="node-c")


def test_grant_expires_after_its_days(hub: Negotiations, clock: Clock) -> None:
    request_id = reach(hub, clock, State.UNDER_REVIEW)
    hub.act(CARL, Action.APPROVE, request_id, grant_days=30)
    clock.now = T0 + timedelta(days=2)
    hub.act(*ACCEPT_A[:2], request_id, **ACCEPT_A[2])
    hub.act(*ACCEPT_B[:2], request_id, **ACCEPT_B[2])
    granted = hub.get(request_id)
    assert granted.expires_at == T0 + timedelta(days=32)
    assert granted.active(T0 + timedelta(days=31))
    assert not granted.active(T0 + timedelta(days=32))
    clock.now = T0 + timedelta(days=31)
    assert hub.expire_due() == []
    clock.now = T0 + timedelta(days=32)
    (event,) = hub.expire_due()
    assert (event.actor, event.action, event.to_state) == ("system", Action.EXPIRE, State.EXPIRED)
    assert hub.get(request_id).state is State.EXPIRED
    assert hub.expire_due() == []


@pytest.mark.parametrize("days", [0, 91])
def test_grant_days_cannot_exceed_the_request(hub: Negotiations, clock: Clock, days: int) -> None:
    request_id = reach(hub, clock, State.UNDER_REVIEW)
    with pytest.raises(TransitionError, match=r"grant_days must be 1\.\.90"):
        hub.act(CARL, Action.APPROVE, request_id, grant_days=days)
    assert hub.get(request_id).state is State.UNDER_REVIEW  # rolled back
    with pytest.raises(TransitionError, match="only given when approving"):
        hub.act(CARL, Action.REJECT, request_id, reason="x", grant_days=10)


@pytest.mark.parametrize("action", [Action.CREATE, Action.EDIT, Action.EXPIRE])
def test_create_and_expire_are_not_acts(hub: Negotiations, clock: Clock, action: Action) -> None:
    request_id = reach(hub, clock, State.GRANTED)
    with pytest.raises(TransitionError, match="not taken through act"):
        hub.act(ADA, action, request_id)


def test_unknown_request(hub: Negotiations) -> None:
    with pytest.raises(RequestNotFoundError, match="'nope'"):
        hub.act(RITA, Action.SUBMIT, "nope")
    with pytest.raises(RequestNotFoundError):
        hub.history("nope")


def test_restart_loses_nothing(tmp_path: Path, clock: Clock) -> None:
    con = connect(tmp_path / "hub.duckdb")
    first = Negotiations(con, clock=clock)
    granted = reach(first, clock, State.GRANTED)
    draft = reach(first, clock, State.DRAFT)
    before = (first.requests(), first.history(granted))
    con.close()
    con = connect(tmp_path / "hub.duckdb")
    reopened = Negotiations(con, clock=clock)
    assert (reopened.requests(), reopened.history(granted)) == before
    assert [r.request_id for r in reopened.requests(State.DRAFT)] == [draft]
    assert [e.to_state for e in reopened.history(granted)] == [
        State.DRAFT,
        State.SUBMITTED,
        State.UNDER_REVIEW,
        State.APPROVED,
        State.APPROVED,
        State.GRANTED,
    ]
    reopened.act(*REVOKE[:2], granted, **REVOKE[2])
    con.close()

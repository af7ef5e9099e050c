"""The access-negotiation state machine: states, actions, who may act, and where each leads.

A request goes draft (its researcher may edit it) → submitted → under_review → approved |
rejected (access committee); once approved, every data holder named in it accepts or declines
for their node; when the last one has decided it becomes granted (at least one node accepted,
with an expiry) or declined (none did). Granted (or approved) access can be revoked by an admin
or the committee; a grant past its expiry becomes expired. The requester may withdraw until the
committee decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from oncofed.access.policy import Role
from oncofed.errors import ForbiddenError
from oncofed.hub.errors import TransitionError


class State(StrEnum):
    """Where an access request stands."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    GRANTED = "granted"
    DECLINED = "declined"
    REVOKED = "revoked"
    EXPIRED = "expired"


class Decision(StrEnum):
    """A data holder's answer for their node."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"


class Action(StrEnum):
    """What an actor can do to a request."""

    CREATE = "create"
    EDIT = "edit"
    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    START_REVIEW = "start_review"
    APPROVE = "approve"
    REJECT = "reject"
    ACCEPT = "accept"
    DECLINE = "decline"
    REVOKE = "revoke"
    EXPIRE = "expire"


@dataclass(frozen=True)
class HubActor:
    """Who acts at the hub: a user, their roles and (for data managers) the nodes they hold."""

    user_id: str
    roles: frozenset[Role]
    nodes: frozenset[str] = field(default_factory=frozenset)


SYSTEM = HubActor("system", frozenset())  # the hub itself: expiry sweeps


@dataclass(frozen=True)
class Rule:
    """When an action is allowed, by whom, and where it leads (None: decided by the node votes)."""

    sources: frozenset[State]
    target: State | None
    roles: frozenset[Role]
    requester_only: bool = False  # only the request's own researcher
    not_requester: bool = False  # never the request's own researcher (conflict of interest)
    reason_required: bool = False


def _rule(sources: set[State], target: State | None, roles: set[Role], **flags: bool) -> Rule:
    return Rule(frozenset(sources), target, frozenset(roles), **flags)


_COMMITTEE = {Role.ACCESS_COMMITTEE}
RULES: Mapping[Action, Rule] = {
    Action.CREATE: _rule(set(), State.DRAFT, {Role.RESEARCHER}),
    Action.EDIT: _rule({State.DRAFT}, State.DRAFT, {Role.RESEARCHER}, requester_only=True),
    Action.SUBMIT: _rule({State.DRAFT}, State.SUBMITTED, {Role.RESEARCHER}, requester_only=True),
    Action.WITHDRAW: _rule(
        {State.DRAFT, State.SUBMITTED, State.UNDER_REVIEW},
        State.WITHDRAWN,
        {Role.RESEARCHER},
        requester_only=True,
    ),
    Action.START_REVIEW: _rule(
        {State.SUBMITTED}, State.UNDER_REVIEW, _COMMITTEE, not_requester=True
    ),
    Action.APPROVE: _rule({State.UNDER_REVIEW}, State.APPROVED, _COMMITTEE, not_requester=True),
    Action.REJECT: _rule(
        {State.UNDER_REVIEW}, State.REJECTED, _COMMITTEE, not_requester=True, reason_required=True
    ),
    Action.ACCEPT: _rule({State.APPROVED}, None, {Role.DATA_MANAGER}),
    Action.DECLINE: _rule({State.APPROVED}, None, {Role.DATA_MANAGER}, reason_required=True),
    Action.REVOKE: _rule(
        {State.APPROVED, State.GRANTED},
        State.REVOKED,
        {Role.ADMIN, Role.ACCESS_COMMITTEE},
        reason_required=True,
    ),
    Action.EXPIRE: _rule({State.GRANTED}, State.EXPIRED, set()),  # by the hub: expire_due()
}
NODE_ACTIONS = frozenset({Action.ACCEPT, Action.DECLINE})


def check(
    action: Action,
    actor: HubActor,
    state: State | None,
    requester: str,
    reason: str = "",
    node: str | None = None,
) -> Rule:
    """The rule for ``action`` if ``actor`` may take it now; raises otherwise.

    ``ForbiddenError`` when the actor may never do this to this request (role, ownership, node);
    ``TransitionError`` when the request is in the wrong state or the input is incomplete.
    """
    rule = RULES[action]
    if not actor.roles & rule.roles:
        allowed = " or ".join(sorted(r.value for r in rule.roles))
        raise ForbiddenError(
            f"{action.value!r} needs the role {allowed}; {actor.user_id!r} lacks it"
        )
    if rule.requester_only and actor.user_id != requester:
        raise ForbiddenError(
            f"only the requester {requester!r} may {action.value} it, not {actor.user_id!r}"
        )
    if rule.not_requester and actor.user_id == requester:
        raise ForbiddenError(f"{actor.user_id!r} may not {action.value} their own request")
    if action in NODE_ACTIONS and (node is None or node not in actor.nodes):
        raise ForbiddenError(f"{actor.user_id!r} is not a data holder of node {node!r}")
    if state is not None and state not in rule.sources:
        allowed_from = ", ".join(sorted(s.value for s in rule.sources)) or "nowhere"
        raise TransitionError(
            f"cannot {action.value} a request that is {state.value} (allowed from: {allowed_from})"
        )
    if rule.reason_required and not reason.strip():
        raise TransitionError(f"{action.value!r} needs a reason")
    return rule


def after_decisions(decisions: Mapping[str, Decision]) -> State:
    """The request state once the node votes are ``decisions``."""
    if any(d is Decision.PENDING for d in decisions.values()):
        return State.APPROVED
    if any(d is Decision.ACCEPTED for d in decisions.values()):
        return State.GRANTED
    return State.DECLINED

"""The hub's governance API (``/hub/v1``): users and tokens, access requests and node decisions.

People call with bearer tokens; what they may do follows their roles (:mod:`negotiation_rules`):
a wrong role is a 403 problem, a wrong state a 409. Nodes decide through Ed25519-signed
messages (``/node/requests``, ``/node/decision``) on behalf of their data manager. Routes that
may send grant tasks are ``async``: the broker must be called on the hub's event loop. The
router's lifespan runs the expiry sweep while the hub is served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from oncofed.access.policy import Role
from oncofed.errors import AuthError, ForbiddenError, QueryError
from oncofed.hub.expiry import SWEEP_EVERY_S, sweeping
from oncofed.hub.governance import OVERSEERS, Governance
from oncofed.hub.identity import HubIdentities, hub_actor
from oncofed.hub.negotiation import MAX_DAYS, AccessRequest, NegotiationEvent, RequestDraft
from oncofed.hub.negotiation_rules import Action, HubActor, State
from oncofed.hub.service import Hub
from oncofed.hub.signing import MAX_ENVELOPE_BYTES

USER_ID = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
# URL words for the actions people take on a request (accept/decline name a node too).
REQUEST_ACTIONS = {
    "submit": Action.SUBMIT,
    "withdraw": Action.WITHDRAW,
    "review": Action.START_REVIEW,
    "approve": Action.APPROVE,
    "reject": Action.REJECT,
    "revoke": Action.REVOKE,
}
NODE_ACTIONS = {"accept": Action.ACCEPT, "decline": Action.DECLINE}


class NewUser(BaseModel):
    """A hub user to create (admin)."""

    user_id: str = Field(pattern=USER_ID)
    roles: list[Role] = Field(min_length=1)
    name: str = Field(default="", max_length=200)
    nodes: list[str] = Field(default_factory=list, description="nodes a data holder decides for")


class NewToken(BaseModel):
    """How long a new token lives."""

    days: float = Field(default=30, gt=0, le=366)


class Draft(BaseModel):
    """What a researcher asks for."""

    project: str = Field(min_length=1, max_length=200)
    purpose: str = Field(min_length=1, max_length=4000)
    cohort: dict[str, Any] = Field(default_factory=dict, description="cohort filter (DESIGN §5)")
    collections: dict[str, list[str]] = Field(min_length=1, description="node -> collections")
    tier: int = Field(ge=2, le=3, description="2 = federated, 3 = transfer")
    duration_days: int = Field(default=365, ge=1, le=MAX_DAYS)

    def draft(self) -> RequestDraft:
        return RequestDraft(**self.model_dump())


class Reason(BaseModel):
    """Why (needed to reject, decline and revoke)."""

    reason: str = Field(default="", max_length=4000)


class Step(Reason):
    """A transition's reason and, when approving, the days the grant will last (at most those
    requested)."""

    grant_days: int | None = Field(default=None, ge=1, le=MAX_DAYS)


def governance_router(hub: Hub, *, sweep_every_s: float = SWEEP_EVERY_S) -> APIRouter:
    """Users, access requests and node decisions of ``hub``, with its expiry sweep."""
    identities = HubIdentities(hub)
    governance = Governance(hub)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with sweeping(governance, sweep_every_s):
            yield
        governance.close()

    router = APIRouter(lifespan=lifespan)
    router.include_router(_user_routes(identities))
    router.include_router(_request_routes(governance))
    router.include_router(_node_routes(hub, governance))
    return router


def _actor(request: Request, authorization: Annotated[str | None, Header()] = None) -> HubActor:
    """The hub user of the bearer token, as a negotiation actor."""
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthError("use 'Authorization: Bearer <token>'")
    hub: Hub = request.app.state.hub
    return hub_actor(hub, hub.authenticate(authorization.removeprefix("Bearer ").strip()))


Actor = Annotated[HubActor, Depends(_actor)]


def _user_routes(identities: HubIdentities) -> APIRouter:
    router = APIRouter(tags=["users (admin)"])

    def admin(who: HubActor) -> None:
        if Role.ADMIN not in who.roles:
            raise ForbiddenError(f"user {who.user_id!r} is not a hub admin")

    @router.get("/me")
    def me(who: Actor) -> dict[str, Any]:
        """The caller: roles and, for data holders, their nodes."""
        return asdict(identities.user(who.user_id))

    @router.post("/users", status_code=201)
    def add_user(body: NewUser, who: Actor) -> dict[str, Any]:
        """Create a user with roles (data holders name their nodes)."""
        admin(who)
        user = identities.add_user(
            body.user_id, body.roles, by=who.user_id, name=body.name, nodes=body.nodes
        )
        return asdict(user)

    @router.get("/users")
    def users(who: Actor) -> list[dict[str, Any]]:
        """Every user with roles and nodes."""
        admin(who)
        return [asdict(u) for u in identities.users()]

    @router.post("/users/{user_id}/tokens", status_code=201)
    def issue_token(user_id: str, body: NewToken, who: Actor) -> dict[str, Any]:
        """A token for the user: shown in this answer only, stored hashed."""
        admin(who)
        issued = identities.issue_token(user_id, by=who.user_id, days=body.days)
        return {**asdict(issued), "expires_at": issued.expires_at.isoformat()}

    @router.post("/users/{user_id}/disable")
    def disable(user_id: str, who: Actor) -> dict[str, Any]:
        """Disable a user; their tokens stop working at once."""
        admin(who)
        identities.disable_user(user_id, by=who.user_id)
        return asdict(identities.user(user_id))

    return router


def _request_routes(governance: Governance) -> APIRouter:
    router = APIRouter(tags=["access requests"])

    def detail(request: AccessRequest) -> dict[str, Any]:
        history = governance.negotiations.history(request.request_id)
        deliveries = governance.deliveries(request.request_id)
        return {
            **request_json(request),
            "history": [event_json(e) for e in history],
            "deliveries": [asdict(d) for d in deliveries],
        }

    @router.post("/requests", status_code=201)
    def create(body: Draft, who: Actor) -> dict[str, Any]:
        """A new draft request (researchers)."""
        return detail(governance.create(who, body.draft()))

    @router.get("/requests")
    def requests(who: Actor, state: State | None = None) -> list[dict[str, Any]]:
        """The requests the caller may see (optionally in one state), oldest first."""
        found = governance.negotiations.requests(state)
        return [request_json(r) for r in found if governance.visible(who, r)]

    @router.get("/requests/{request_id}")
    def show(request_id: str, who: Actor) -> dict[str, Any]:
        """One request with its history and grant deliveries."""
        return detail(governance.readable(who, request_id))

    @router.put("/requests/{request_id}")
    def edit(request_id: str, body: Draft, who: Actor) -> dict[str, Any]:
        """Replace a draft's content (its researcher, while it is a draft)."""
        governance.readable(who, request_id)
        return detail(governance.edit(who, request_id, body.draft()))

    @router.post("/requests/{request_id}/grant")
    async def resend(request_id: str, who: Actor) -> dict[str, Any]:
        """Send the grant (or revocation) again to nodes whose delivery failed or expired
        (admins and the committee)."""
        if not who.roles & OVERSEERS:
            raise ForbiddenError(f"{who.user_id!r} is not an admin or committee member")
        return detail(governance.deliver(request_id, by=who.user_id, resend=True))

    @router.post("/requests/{request_id}/nodes/{node_id}/{decision}")
    async def decide(
        request_id: str, node_id: str, decision: str, body: Reason, who: Actor
    ) -> dict[str, Any]:
        """A data holder accepts or declines for their node (decline needs a reason)."""
        action = _pick(NODE_ACTIONS, decision)
        governance.readable(who, request_id)
        request = governance.act(who, action, request_id, reason=body.reason, node=node_id)
        return detail(request)

    @router.post("/requests/{request_id}/{verb}")
    async def act(request_id: str, verb: str, body: Step, who: Actor) -> dict[str, Any]:
        """submit, withdraw (researcher); review, approve, reject (committee); revoke (admin or
        committee). Reject and revoke need a reason."""
        action = _pick(REQUEST_ACTIONS, verb)
        governance.readable(who, request_id)
        request = governance.act(
            who, action, request_id, reason=body.reason, grant_days=body.grant_days
        )
        return detail(request)

    return router


def _node_routes(hub: Hub, governance: Governance) -> APIRouter:
    router = APIRouter(tags=["nodes (signed messages)"])

    async def message_body(request: Request, kind: str) -> tuple[str, dict[str, Any]]:
        raw = await request.body()
        if len(raw) > MAX_ENVELOPE_BYTES:
            raise AuthError(f"message of {len(raw)} bytes is over {MAX_ENVELOPE_BYTES}")
        message = hub.verify(raw, kind)
        return message.sender, message.body

    def signed(node: str, kind: str, body: dict[str, Any]) -> JSONResponse:
        return JSONResponse(hub.signer.sign(node, kind, body).to_dict())

    @router.post("/node/requests")
    async def inbox(request: Request) -> JSONResponse:
        """A node's list of the approved-or-later requests that name it, with its decision."""
        node, _ = await message_body(request, "requests")
        found = [
            request_json(r)
            for r in governance.negotiations.requests()
            if node in r.collections and r.state not in (State.DRAFT, State.WITHDRAWN)
        ]
        return signed(node, "requests", {"requests": found})

    @router.post("/node/decision")
    async def decision(request: Request) -> JSONResponse:
        """A node's decision, signed by the node for the data manager named in it."""
        node, body = await message_body(request, "decision")
        person = str(body.get("decided_by") or "")
        if not person or len(person) > 128:
            raise QueryError("a node decision names the data manager who made it (decided_by)")
        action = _pick(NODE_ACTIONS, str(body.get("decision")))
        actor = HubActor(f"{person}@{node}", frozenset({Role.DATA_MANAGER}), frozenset({node}))
        made = governance.act(
            actor, action, str(body.get("request_id")), reason=str(body.get("reason") or ""),
            node=node,
        )  # fmt: skip
        return signed(node, "decided", request_json(made))

    return router


def _pick(actions: dict[str, Action], word: str) -> Action:
    action = actions.get(word)
    if action is None:
        raise QueryError(f"unknown action {word!r}; one of: {', '.join(actions)}")
    return action


def request_json(request: AccessRequest) -> dict[str, Any]:
    """A request as the API shows it."""
    return {
        "request_id": request.request_id,
        "project": request.project,
        "purpose": request.purpose,
        "requester": request.requester,
        "tier": request.tier,
        "cohort": request.cohort,
        "duration_days": request.duration_days,
        "state": request.state.value,
        "created_at": request.created_at.isoformat(),
        "updated_at": request.updated_at.isoformat(),
        "expires_at": request.expires_at.isoformat() if request.expires_at else None,
        "nodes": {
            node: {"collections": list(names), "decision": request.decisions[node].value}
            for node, names in request.collections.items()
        },
    }


def event_json(event: NegotiationEvent) -> dict[str, Any]:
    """One history entry as the API shows it."""
    return {
        "seq": event.seq,
        "time": event.time.isoformat(),
        "actor": event.actor,
        "action": event.action.value,
        "from": event.from_state.value if event.from_state else None,
        "to": event.to_state.value,
        "node": event.node,
        "reason": event.reason,
    }

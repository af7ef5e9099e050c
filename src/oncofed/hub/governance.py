"""Access negotiation at a running hub: each transition audited, grants delivered to nodes.

:class:`Governance` wraps the persisted state machine (:mod:`negotiation`) and adds what the hub
does around it: every event goes to the hub's hash-chained audit log with its actor; once a
request is granted, each accepting node gets a ``grant.apply`` task through the broker, and once
it is revoked or expired a ``grant.revoke`` task. Deliveries are recorded, and
:meth:`Governance.deliver` works out what is owed from the stored state alone, so a hub that
stopped between a transition and its dispatch catches up on its next sweep.

The broker wakes long polls with asyncio events, so methods that dispatch run on the hub's
event loop (async routes, the sweep task).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from oncofed.access.policy import Role
from oncofed.errors import ForbiddenError, NotFoundError
from oncofed.hub.broker import DONE, FINAL
from oncofed.hub.db import to_db
from oncofed.hub.negotiation import AccessRequest, NegotiationEvent, Negotiations, RequestDraft
from oncofed.hub.negotiation_rules import Action, HubActor, State
from oncofed.hub.service import Hub
from oncofed.hub.signing import Clock, utc_now

APPLY, REVOKE = "grant.apply", "grant.revoke"
DELIVERY_DEADLINE = timedelta(days=7)  # a node offline longer needs `requests grant` (resend)
DELIVERY_ATTEMPTS = 10
ENDED = frozenset({State.REVOKED, State.EXPIRED})
OVERSEERS = frozenset({Role.ADMIN, Role.ACCESS_COMMITTEE})
_SCHEMA = """CREATE TABLE IF NOT EXISTS grant_delivery (
    request_id VARCHAR NOT NULL,
    node_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    job_id VARCHAR NOT NULL,
    sent_at TIMESTAMP NOT NULL,
    PRIMARY KEY (request_id, node_id, kind)
)"""


@dataclass(frozen=True)
class Delivery:
    """The newest grant task sent to one node for one request, and where it stands."""

    node_id: str
    kind: str
    job_id: str
    state: str  # the broker's task state: queued, delivered, done, failed, expired, cancelled
    error: str | None


class Governance:
    """Access requests of one hub (see the module docstring)."""

    def __init__(self, hub: Hub, clock: Clock = utc_now) -> None:
        self.hub = hub
        # A cursor is a connection of its own to the hub database: the state machine keeps its
        # own lock and transactions without holding up the hub's connection.
        with hub.lock:
            self._cursor = hub.con.cursor()
            hub.con.execute(_SCHEMA)
        self.negotiations = Negotiations(self._cursor, clock)

    def close(self) -> None:
        """Close the state machine's connection (the hub closes its own)."""
        self._cursor.close()

    def create(self, actor: HubActor, draft: RequestDraft) -> AccessRequest:
        """A new draft; every node it names must be registered here."""
        self._check_nodes(draft)
        event = self.negotiations.create(actor, draft)
        self._audit(event, {"project": draft.project, "tier": draft.tier})
        return self.negotiations.get(event.request_id)

    def edit(self, actor: HubActor, request_id: str, draft: RequestDraft) -> AccessRequest:
        """Replace what a draft asks for."""
        self._check_nodes(draft)
        self._audit(self.negotiations.edit(actor, request_id, draft))
        return self.negotiations.get(request_id)

    def act(
        self,
        actor: HubActor,
        action: Action,
        request_id: str,
        *,
        reason: str = "",
        node: str | None = None,
        grant_days: int | None = None,
    ) -> AccessRequest:
        """Take ``action``; the event is audited and grants owed to nodes are sent."""
        event = self.negotiations.act(
            actor, action, request_id, reason=reason, node=node, grant_days=grant_days
        )
        self._audit(event)
        return self.deliver(request_id, by=actor.user_id)

    def expire_due(self) -> list[NegotiationEvent]:
        """Expire grants past their time (audited, revocations sent); returns the events."""
        events = self.negotiations.expire_due()
        for event in events:
            self._audit(event)
            self.deliver(event.request_id, by=event.actor)
        return events

    def catch_up(self) -> None:
        """Send every grant task owed by the stored state (after a restart, say)."""
        for state in (State.GRANTED, *ENDED):
            for request in self.negotiations.requests(state):
                self.deliver(request.request_id, by="system")

    def deliver(self, request_id: str, *, by: str, resend: bool = False) -> AccessRequest:
        """Send the grant tasks the request's state calls for that were not sent yet (with
        ``resend``: also those whose delivery ended without success)."""
        request = self.negotiations.get(request_id)
        sent = {(d.node_id, d.kind): d for d in self.deliveries(request_id)}
        for node, kind in _owed(request, sent):
            earlier = sent.get((node, kind))
            if earlier is None or (resend and _failed(earlier)):
                self._send(request, node, kind, by)
        return request

    def deliveries(self, request_id: str) -> list[Delivery]:
        """The newest grant task per node and kind, with its broker state."""
        with self.hub.lock:
            rows = self.hub.con.execute(
                "SELECT node_id, kind, job_id FROM grant_delivery WHERE request_id = ?"
                " ORDER BY node_id, kind",
                [request_id],
            ).fetchall()
        found = []
        for node, kind, job_id in rows:
            (task,) = self.hub.broker.tasks(str(job_id))
            found.append(Delivery(str(node), str(kind), str(job_id), task.state, task.error))
        return found

    def visible(self, actor: HubActor, request: AccessRequest) -> bool:
        """Whether ``actor`` may read ``request``: its researcher, admins and the committee,
        and the data holders of its nodes once it left the draft stage."""
        if actor.user_id == request.requester or actor.roles & OVERSEERS:
            return True
        holds = bool(actor.nodes & set(request.collections))
        return holds and request.state is not State.DRAFT

    def readable(self, actor: HubActor, request_id: str) -> AccessRequest:
        """A request ``actor`` may read, or ForbiddenError."""
        request = self.negotiations.get(request_id)
        if not self.visible(actor, request):
            raise ForbiddenError(f"{actor.user_id!r} may not see access request {request_id!r}")
        return request

    def _check_nodes(self, draft: RequestDraft) -> None:
        """Every node must be an approved member and, once it has published its catalogue,
        hold the collections asked of it."""
        approved = set(self.hub.registry.approved())
        unknown = sorted(set(draft.collections) - approved)
        if unknown:
            raise NotFoundError(f"nodes {unknown} are not approved members of this hub")
        published = {
            entry["node"]: (entry["updated_at"], {c["collection_id"] for c in entry["collections"]})
            for entry in self.hub.catalogue()
        }
        for node, names in draft.collections.items():
            if node not in published:
                continue
            when, held = published[node]
            missing = sorted(set(names) - held)
            if missing:
                raise NotFoundError(
                    f"node {node!r} has no collections {missing} in its catalogue (published"
                    f" {when}: {sorted(held)})"
                )

    def _audit(self, event: NegotiationEvent, extra: dict[str, Any] | None = None) -> None:
        action = f"request.{event.action.value}"
        self.hub.audit(event.actor, action, event.target, {**event.details(), **(extra or {})})

    def _send(self, request: AccessRequest, node: str, kind: str, by: str) -> None:
        body = {
            "request_id": request.request_id,
            "user": request.requester,
            "tier": request.tier,
            "collections": list(request.collections[node]),
            "expires_at": request.expires_at.isoformat() if request.expires_at else None,
        }
        job_id = self.hub.broker.submit(
            kind, body, [node], created_by=by, deadline=DELIVERY_DEADLINE,
            max_attempts=DELIVERY_ATTEMPTS,
        )  # fmt: skip
        with self.hub.lock:
            self.hub.con.execute(
                "INSERT OR REPLACE INTO grant_delivery VALUES (?, ?, ?, ?, ?)",
                [request.request_id, node, kind, job_id, to_db(utc_now())],
            )
        target = f"access_request:{request.request_id}"
        self.hub.audit(by, f"{kind}.send", target, {"node": node, "job": job_id})


def _failed(delivery: Delivery) -> bool:
    """Whether a delivery ended without the node confirming it."""
    return delivery.state in FINAL and delivery.state != DONE


def _owed(request: AccessRequest, sent: dict[tuple[str, str], Delivery]) -> list[tuple[str, str]]:
    """(node, kind) pairs a request's state calls for. Granted: an apply per accepting node.
    Revoked or expired: a revoke per node that was sent an apply (it may still be in flight;
    the node keeps the revocation either way)."""
    if request.state is State.GRANTED:
        return [(node, APPLY) for node in request.granted_collections()]
    if request.state in ENDED:
        return [(node, REVOKE) for node, kind in sent if kind == APPLY]
    return []

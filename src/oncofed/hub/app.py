"""The hub's HTTP API (``/hub/v1``).

Node endpoints (``join``, ``poll``, ``answer``) take and return Ed25519-signed envelopes: every
request is verified (sender approved, signature, time window, fresh nonce) and every reply is
signed by the hub, so a node trusts only its pinned hub. People use bearer tokens: the admin
approves nodes; researchers search. Errors are RFC 9457 problem details. Routes that queue or
cancel tasks are ``async``: the broker's wake-ups are asyncio events of the hub's event loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from oncofed import __version__
from oncofed.access.policy import Principal, Role
from oncofed.errors import AuthError, ForbiddenError, NodeNotFoundError, NotFoundError, QueryError
from oncofed.hub.deps import Caller
from oncofed.hub.facility import Facility
from oncofed.hub.facility_api import facility_router, install_facility_problems
from oncofed.hub.facility_compare import Comparisons
from oncofed.hub.negotiation_api import governance_router
from oncofed.hub.registry import APPROVED, REJECTED, REMOVED
from oncofed.hub.search import MAX_DEADLINE_S, federated_search, search_outcome
from oncofed.hub.service import Hub
from oncofed.hub.signing import MAX_ENVELOPE_BYTES
from oncofed.server import problems

ENVELOPE = "application/json"
MAX_POLL_S = 30.0
POLL_SLICE_S = 1.0
NDJSON = "application/x-ndjson"


class SearchRequest(BaseModel):
    """A federated cohort search."""

    where: dict[str, Any] = Field(default_factory=dict, description="filter (field -> values)")
    facets: list[str] = Field(default_factory=list, max_length=16)
    deadline_s: float | None = Field(default=None, gt=0, le=MAX_DEADLINE_S)


class JobRequest(BaseModel):
    """A task for chosen nodes (broker API; evaluations and training use it)."""

    kind: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    body: dict[str, Any] = Field(default_factory=dict)
    nodes: list[str] = Field(min_length=1)
    deadline_s: float = Field(default=60.0, gt=0, le=7 * 24 * 3600)
    max_attempts: int = Field(default=3, ge=1, le=10)


def create_hub_app(hub: Hub) -> FastAPI:
    """The hub application for an opened hub."""
    app = FastAPI(title="oncofed hub", version=__version__)
    app.state.hub = hub
    problems.install(app)
    app.include_router(_node_routes(hub), prefix="/hub/v1")
    app.include_router(_people_routes(hub), prefix="/hub/v1")
    app.include_router(governance_router(hub), prefix="/hub/v1")
    facility = Facility(hub)
    app.include_router(facility_router(facility, Comparisons(facility)), prefix="/hub/v1")
    install_facility_problems(app)
    return app


async def _body(request: Request) -> bytes:
    raw = await request.body()
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise AuthError(f"message of {len(raw)} bytes is over {MAX_ENVELOPE_BYTES}")
    return raw


def _signed(hub: Hub, recipient: str, kind: str, body: dict[str, Any]) -> JSONResponse:
    envelope = hub.signer.sign(recipient, kind, body)
    return JSONResponse(envelope.to_dict(), media_type=ENVELOPE)


def _node_routes(hub: Hub) -> APIRouter:
    router = APIRouter(tags=["nodes (signed messages)"])

    @router.get("/identity")
    def identity() -> dict[str, str]:
        """The hub's id and public key (nodes pin it when they join)."""
        return hub.identity()

    @router.post("/join")
    async def join(request: Request) -> JSONResponse:
        """A node asks to join, signing with the key it registers; an admin decides."""
        message = hub.verify_registration(await _body(request))
        name = str(message.body.get("name") or message.sender)
        entry = hub.registry.register(message.sender, name, str(message.body["public_key"]))
        hub.audit(message.sender, "join", f"node/{message.sender}", {"name": name})
        return _signed(hub, message.sender, "joined", {"status": entry.status})

    @router.post("/poll")
    async def poll(request: Request) -> JSONResponse:
        """A node's long poll: its tasks, as soon as there are any, or none after the wait.
        It may carry the node's answers to earlier tasks: recorded before the wait, their
        outcomes come back in ``answered`` (one request per task instead of two)."""
        message = hub.verify(await _body(request), "poll")
        node = message.sender
        answered = {
            str(answer.get("task_id")): _carried_outcome(hub, node, answer)
            for answer in _carried_answers(message.body)
        }
        wait = min(float(message.body.get("wait_s", MAX_POLL_S)), MAX_POLL_S)
        hub.polling(node, +1)
        try:
            tasks = hub.broker.lease_for(node)
            end = time.monotonic() + wait
            while not tasks and time.monotonic() < end:
                # in slices, so a node that went away stops counting as online within a second
                await hub.broker.wait_for_work(node, min(POLL_SLICE_S, end - time.monotonic()))
                if await request.is_disconnected():
                    break
                tasks = hub.broker.lease_for(node)
        finally:
            hub.polling(node, -1)
            hub.seen(node)
        body: dict[str, Any] = {
            "tasks": [
                {"task_id": t.task_id, "kind": t.kind, "body": t.body, "attempt": t.attempts}
                for t in tasks
            ]
        }
        if answered:
            body["answered"] = answered
        return _signed(hub, node, "tasks", body)

    @router.post("/answer")
    async def answer(request: Request) -> JSONResponse:
        """A node's answer to one task (the first answer counts; repeats are ignored)."""
        message = hub.verify(await _body(request), "answer")
        outcome = _record_answer(hub, message.sender, message.body)
        return _signed(hub, message.sender, "answered", {"outcome": outcome})

    return router


def _carried_answers(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The answers a poll carries (none when it carries none)."""
    answers = body.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
        raise QueryError("a poll's 'answers' is a list of {task_id, result | error} objects")
    return answers


def _carried_outcome(hub: Hub, node: str, answer: dict[str, Any]) -> str:
    """:func:`_record_answer` for an answer a poll carries: 'unknown' for a task that is not
    the node's (one bad answer must not refuse the poll)."""
    try:
        return _record_answer(hub, node, answer)
    except NodeNotFoundError:
        return "unknown"


def _record_answer(hub: Hub, node: str, answer: dict[str, Any]) -> str:
    """Record a node's answer to one task: 'accepted' or 'duplicate' (NodeNotFoundError for a
    task that is not the node's). An accepted catalogue answer refreshes the node's entries in
    the public catalogue."""
    task_id, result, error = str(answer.get("task_id")), answer.get("result"), answer.get("error")
    valid = error is None and isinstance(result, dict)
    outcome = hub.broker.answer(
        node,
        task_id,
        result if isinstance(result, dict) else None,
        None if valid else str(error or "no result"),
    )
    collections = result.get("collections") if isinstance(result, dict) else None
    if (
        outcome == "accepted"
        and isinstance(collections, list)
        and hub.broker.task(task_id).kind == "catalogue.refresh"
    ):
        hub.store_catalogue(node, collections)
    return outcome


def _people_routes(hub: Hub) -> APIRouter:
    router = APIRouter(tags=["people (bearer tokens)"])

    def require_admin(who: Principal) -> None:
        if Role.ADMIN not in who.roles:
            raise ForbiddenError(f"user {who.user_id!r} is not a hub admin")

    @router.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and version."""
        return {"status": "ok", "hub": hub.name, "oncofed": __version__}

    @router.get("/catalogue")
    def catalogue() -> list[dict[str, Any]]:
        """Public: every approved node's Tier-1 collections with protected counts."""
        return hub.catalogue()

    @router.get("/nodes")
    def nodes(who: Caller) -> list[dict[str, Any]]:
        """Registered nodes with their status and whether they are online (admin)."""
        require_admin(who)
        return [
            {
                **e.__dict__,
                "registered_at": e.registered_at.isoformat(),
                "online": hub.online(e.node_id),
            }
            for e in hub.registry.entries()
        ]

    @router.post("/nodes/{node_id}/{decision}")
    async def decide(node_id: str, decision: str, who: Caller) -> dict[str, Any]:
        """Approve, reject or remove a node (admin); an approved node is asked for its
        catalogue; a removed one leaves the catalogue and its messages are refused."""
        require_admin(who)
        status = {"approve": APPROVED, "reject": REJECTED, "remove": REMOVED}.get(decision)
        if status is None:
            raise NotFoundError(f"unknown decision {decision!r}: approve, reject or remove")
        entry = hub.registry.decide(node_id, status, who.user_id)
        hub.audit(who.user_id, decision, f"node/{node_id}")
        if status == APPROVED:
            hub.broker.submit(
                "catalogue.refresh", {}, [node_id], created_by=who.user_id,
                deadline=timedelta(hours=1),
            )  # fmt: skip
        return {"node_id": entry.node_id, "status": entry.status}

    @router.post("/search")
    async def search(body: SearchRequest, who: Caller) -> StreamingResponse:
        """Federated cohort search: NDJSON lines, one per node as it answers, then a summary."""
        hub.search_budget.charge(who.user_id)
        lines = federated_search(
            hub, body.where, body.facets, user=who.user_id, deadline_s=body.deadline_s
        )
        first = await anext(lines)  # a bad filter fails here, as a problem response

        async def stream() -> AsyncIterator[bytes]:
            yield json.dumps(first).encode() + b"\n"
            async for line in lines:
                yield json.dumps(line).encode() + b"\n"

        return StreamingResponse(stream(), media_type=NDJSON)

    @router.get("/search/{job_id}")
    def search_again(job_id: str, who: Caller) -> list[dict[str, Any]]:
        """The outcome of one of your searches as recorded (after a dropped stream or a hub
        restart): per-node lines and the summary, ``complete`` once every node is final."""
        return search_outcome(hub, job_id, who.user_id)

    @router.post("/jobs")
    async def submit_job(body: JobRequest, who: Caller) -> dict[str, str]:
        """Dispatch a task to chosen approved nodes (admin)."""
        require_admin(who)
        unknown = set(body.nodes) - set(hub.registry.approved())
        if unknown:
            raise ForbiddenError(f"not approved nodes: {sorted(unknown)}")
        job_id = hub.broker.submit(
            body.kind, body.body, body.nodes, created_by=who.user_id,
            deadline=timedelta(seconds=body.deadline_s), max_attempts=body.max_attempts,
        )  # fmt: skip
        hub.audit(who.user_id, "submit", f"job/{job_id}", {"kind": body.kind, "nodes": body.nodes})
        return {"job_id": job_id}

    @router.get("/jobs/{job_id}")
    def job(job_id: str, who: Caller) -> list[dict[str, Any]]:
        """Per-node status and results of a job (admin)."""
        require_admin(who)
        return [t.__dict__ for t in hub.broker.tasks(job_id)]

    @router.delete("/jobs/{job_id}")
    async def cancel(job_id: str, who: Caller) -> dict[str, str]:
        """Cancel a job: tasks not answered yet are no longer delivered (admin)."""
        require_admin(who)
        hub.broker.cancel(job_id)
        hub.audit(who.user_id, "cancel", f"job/{job_id}")
        return {"job_id": job_id, "state": "cancelled"}

    return router

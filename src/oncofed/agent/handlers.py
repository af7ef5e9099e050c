"""Task handlers: what a node does for each kind of hub task.

A handler is ``(ctx: AgentContext, body: dict) -> dict``: it gets the task body the hub sent and
returns a JSON-safe result, or raises an OncofedError whose message goes back as the error. Register
one with ``@handler("kind")`` in any module the agent imports (``oncofed node agent --handlers
MODULE`` loads more). Everything a handler returns leaves the node: counts must pass disclosure
control first (DESIGN §6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from oncofed.catalog.idc import SOURCE as IDC_SOURCE
from oncofed.deid.keys import node_key
from oncofed.disclosure import DisclosurePolicy, QueryBudget, node_policy
from oncofed.errors import QueryError
from oncofed.server.service import NodeService

Handler = Callable[["AgentContext", dict[str, Any]], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}


@dataclass
class AgentContext:
    """What handlers work with: the node (through its service lock) and its hub identity."""

    service: NodeService
    node_id: str

    @cached_property
    def policy(self) -> DisclosurePolicy:
        return node_policy(self.service.node.settings, node_key(self.service.node.home))

    @cached_property
    def budget(self) -> QueryBudget:
        settings = self.service.node.settings
        return QueryBudget(self.service.node.home / "query-budget.sqlite", settings.queries_per_day)


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``kind`` tasks."""

    def register(function: Handler) -> Handler:
        HANDLERS[kind] = function
        return function

    return register


@handler("search")
def search(ctx: AgentContext, body: dict[str, Any]) -> dict[str, Any]:
    """A federated cohort query, answered with protected counts; charged to the hub user."""
    where, facets, user = body.get("where", {}), body.get("facets", []), body.get("user")
    if not isinstance(user, str) or not user:
        raise QueryError("a federated query names the hub user who asks it")
    if not isinstance(facets, list):
        raise QueryError("facets must be a list of names")
    ctx.budget.charge(f"hub:{user}")
    with ctx.service.catalog() as catalog:
        result = catalog.query(where, [str(f) for f in facets])
    # group commit (within NodeService's audit delay), as for the node's own REST reads: a
    # per-search fsync would cost more than the query itself
    ctx.service.audit_read(f"hub:{user}", "federated-search", "catalog", {"filter": result.filter})
    return ctx.policy.protect_result(result)


@handler("catalogue.refresh")
def catalogue(ctx: AgentContext, body: dict[str, Any]) -> dict[str, Any]:
    """This node's own collections (every tier describes itself publicly, DESIGN §1) for the
    hub's public catalogue, counts protected; IDC reference collections are not the node's."""
    with ctx.service.catalog() as catalog:
        rows = [asdict(c) for c in catalog.collections() if c.source != IDC_SOURCE]
    for row in rows:
        row.update(ctx.policy.protect_collection(row))
    return {"collections": rows}

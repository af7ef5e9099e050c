"""The REST API, ``/api/v1``: health, version, collections, cohort queries, ingest reports."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from oncofed import __version__
from oncofed.access.policy import Principal, Scope
from oncofed.catalog.catalog import DEFAULT_FACET_LIMIT, FACETS
from oncofed.deid.keys import node_key
from oncofed.disclosure import DisclosurePolicy, node_policy
from oncofed.errors import ForbiddenError, NodeNotFoundError, QueryError
from oncofed.server.auth import Caller, Service, require_scope, require_steward
from oncofed.server.service import NodeService


class CohortQuery(BaseModel):
    """A cohort question: filter, facets and how many buckets per facet."""

    where: dict[str, Any] = Field(
        default_factory=dict,
        description="field -> values (OR within a field, AND across); ranges as [low, high]",
        examples=[{"modality": ["MR", "CT"], "age": [50, 70], "cancer_type": ["Prostate"]}],
    )
    facets: list[str] = Field(default_factory=list, examples=[["modality", "collection"]])
    facet_limit: int = Field(default=DEFAULT_FACET_LIMIT, ge=1, le=1000)


MAX_OFFSET = 10**12


def make_router() -> APIRouter:
    """The ``/api/v1`` router."""
    router = APIRouter(prefix="/api/v1", tags=["node"])

    @router.get("/health")
    def health(node: Service) -> dict[str, str]:
        """Liveness: the node answers and its catalog is reachable."""
        with node.connection() as con:
            con.execute("SELECT 1").fetchone()
        return {"status": "ok", "node": node.node.settings.name}

    @router.get("/version")
    def version(node: Service) -> dict[str, Any]:
        """oncofed and catalog schema versions."""
        with node.catalog() as catalog:
            return {"oncofed": __version__, "catalog_schema": catalog.schema_version}

    @router.get("/collections")
    def collections(node: Service, caller: Caller) -> list[dict[str, Any]]:
        """The collections this node holds, with their totals (protected unless a steward)."""
        require_scope(caller, Scope.READ_CATALOG)
        with node.catalog() as catalog:
            rows = [asdict(c) for c in catalog.collections()]
        if caller.sees_exact_counts():
            return rows
        policy = _policy(node)
        for row in rows:
            row.update(policy.protect_collection(row))
        return rows

    @router.get("/facets")
    def facets() -> list[str]:
        """The facet names a cohort query accepts."""
        return list(FACETS)

    @router.post("/query")
    def query(body: CohortQuery, node: Service, caller: Caller) -> dict[str, Any]:
        """Counts (patients, studies, series, instances, bytes) and facets for a filter.

        Stewards get exact numbers; everyone else gets disclosure-controlled ones.
        """
        require_scope(caller, Scope.READ_CATALOG)
        with node.catalog() as catalog:
            result = catalog.query(body.where, body.facets, facet_limit=body.facet_limit)
        exact = caller.sees_exact_counts()
        node.audit(caller.user_id, "query", "catalog", {"filter": result.filter, "exact": exact})
        return result.to_dict() if exact else _policy(node).protect_result(result)

    @router.get("/series")
    def series(
        node: Service,
        caller: Caller,
        where: Annotated[str, Query(description="the filter as JSON")] = "{}",
        limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> list[dict[str, Any]]:
        """The series matching a filter (de-identified metadata), in collections the caller may
        retrieve from (a steward's node, or a tier-3 grant)."""
        require_scope(caller, Scope.READ_IMAGES)
        try:
            parsed = json.loads(where)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise QueryError(f"where is not valid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise QueryError("where must be a JSON object of field -> values")
        parsed = _within_grants(caller, parsed)
        with node.catalog() as catalog:
            rows = catalog.matching_series(parsed, limit=limit, offset=offset)
        node.audit(caller.user_id, "read", "series", {"filter": parsed, "rows": len(rows)})
        return rows

    @router.get("/ingest/reports")
    def reports(node: Service, caller: Caller) -> list[str]:
        """The ingest reports kept by the node, newest first (stewards only)."""
        require_steward(caller)
        folder = node.node.reports_dir
        names = [p.name for p in folder.glob("ingest-*.json")] if folder.is_dir() else []
        return sorted(names, reverse=True)

    @router.get("/ingest/reports/{name}")
    def report(name: str, node: Service, caller: Caller) -> dict[str, Any]:
        """One ingest report (stewards only)."""
        require_steward(caller)
        folder = node.node.reports_dir
        candidates = {p.name: p for p in folder.glob("ingest-*.json")} if folder.is_dir() else {}
        if name not in candidates:  # only names the node listed: no path traversal
            raise NodeNotFoundError(f"no ingest report named {name!r}")
        loaded: dict[str, Any] = json.loads(candidates[name].read_text(encoding="utf-8"))
        return loaded

    return router


def _policy(node: NodeService) -> DisclosurePolicy:
    return node_policy(node.node.settings, node_key(node.node.home))


def _within_grants(caller: Principal, where: dict[str, Any]) -> dict[str, Any]:
    """Narrow a filter to the collections the caller may retrieve from."""
    if caller.is_steward:
        return where
    granted = sorted(c for c in caller.grants if caller.may_retrieve(c))
    asked = where.get("collection")
    if asked is None:
        if not granted:
            raise ForbiddenError(f"user {caller.user_id!r} holds no transfer grant on this node")
        return {**where, "collection": granted}
    asked_list = [asked] if isinstance(asked, str) else list(asked)
    refused = sorted(str(c) for c in asked_list if not caller.may_retrieve(str(c)))
    if refused:
        raise ForbiddenError(f"user {caller.user_id!r} holds no transfer grant for {refused}")
    return where

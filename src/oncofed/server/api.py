"""The REST API, ``/api/v1``: health, version, collections, cohort queries, ingest reports."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from oncofed import __version__
from oncofed.catalog.catalog import DEFAULT_FACET_LIMIT, FACETS
from oncofed.errors import NodeNotFoundError, QueryError
from oncofed.server.service import NodeService


def service(request: Request) -> NodeService:
    """The node this app serves."""
    served: NodeService = request.app.state.service
    return served


Service = Annotated[NodeService, Depends(service)]


class CohortQuery(BaseModel):
    """A cohort question: filter, facets and how many buckets per facet."""

    where: dict[str, Any] = Field(
        default_factory=dict,
        description="field -> values (OR within a field, AND across); ranges as [low, high]",
        examples=[{"modality": ["MR", "CT"], "age": [50, 70], "cancer_type": ["Prostate"]}],
    )
    facets: list[str] = Field(default_factory=list, examples=[["modality", "collection"]])
    facet_limit: int = Field(default=DEFAULT_FACET_LIMIT, ge=1, le=1000)


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
    def collections(node: Service) -> list[dict[str, Any]]:
        """The collections this node holds, with their totals."""
        with node.catalog() as catalog:
            return [asdict(c) for c in catalog.collections()]

    @router.get("/facets")
    def facets() -> list[str]:
        """The facet names a cohort query accepts."""
        return list(FACETS)

    @router.post("/query")
    def query(body: CohortQuery, node: Service) -> dict[str, Any]:
        """Counts (patients, studies, series, instances, bytes) and facets for a filter."""
        with node.catalog() as catalog:
            result = catalog.query(body.where, body.facets, facet_limit=body.facet_limit)
        return result.to_dict()

    @router.get("/series")
    def series(
        node: Service,
        where: Annotated[str, Query(description="the filter as JSON")] = "{}",
        limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[dict[str, Any]]:
        """The series matching a filter (de-identified metadata)."""
        try:
            parsed = json.loads(where)
        except json.JSONDecodeError as exc:
            raise QueryError(f"where is not valid JSON: {exc}") from exc
        with node.catalog() as catalog:
            return catalog.matching_series(parsed, limit=limit, offset=offset)

    @router.get("/ingest/reports")
    def reports(node: Service) -> list[str]:
        """The ingest reports kept by the node, newest first."""
        folder = node.node.reports_dir
        names = [p.name for p in folder.glob("ingest-*.json")] if folder.is_dir() else []
        return sorted(names, reverse=True)

    @router.get("/ingest/reports/{name}")
    def report(name: str, node: Service) -> dict[str, Any]:
        """One ingest report."""
        folder = node.node.reports_dir
        candidates = {p.name: p for p in folder.glob("ingest-*.json")} if folder.is_dir() else {}
        if name not in candidates:  # only names the node listed: no path traversal
            raise NodeNotFoundError(f"no ingest report named {name!r}")
        loaded: dict[str, Any] = json.loads(candidates[name].read_text(encoding="utf-8"))
        return loaded

    return router

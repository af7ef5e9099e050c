"""Typed answers of the catalog: cohort counts and facet buckets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CohortCounts:
    """How much data matches a cohort filter."""

    patients: int
    studies: int
    series: int
    instances: int
    bytes: int


@dataclass(frozen=True)
class FacetBucket:
    """One value of a facet with the patients and series that have it (value None = unknown)."""

    value: str | None
    patients: int
    series: int


@dataclass(frozen=True)
class CohortResult:
    """Counts and facets for one cohort query, with the canonical filter that produced them."""

    filter: dict[str, Any]
    counts: CohortCounts
    facets: dict[str, list[FacetBucket]] = field(default_factory=dict)
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready representation."""
        return asdict(self)


@dataclass(frozen=True)
class CollectionInfo:
    """A catalogue entry: what a collection is and how much it holds."""

    collection_id: str
    title: str
    description: str | None
    cancer_types: list[str]
    body_parts: list[str]
    license: str | None
    tier: int
    source: str
    patients: int
    studies: int
    series: int
    instances: int
    bytes: int

"""Disclosure control: the one function every count passes before it leaves a node.

Counts below ``min_count`` are suppressed (reported as ``"<k"``); the rest are rounded to the
nearest multiple of ``rounding``; bytes are rounded to megabytes; facet values seen in fewer
than k patients are left out, so rare values (a unique scanner, say) are not revealed.
Query-seeded noise and per-user budgets (DESIGN.md §6) build on this at the federation layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from oncofed.catalog.results import CohortResult

Protected = int | str
_COUNTS = ("patients", "studies", "series", "instances")


@dataclass(frozen=True)
class DisclosurePolicy:
    """How a node protects the numbers it releases."""

    min_count: int = 10
    rounding: int = 10

    def protect(self, value: int) -> Protected:
        """A count as it may be released."""
        if value < self.min_count:
            return f"<{self.min_count}"
        rounded = round(value / self.rounding) * self.rounding
        return max(rounded, self.min_count)

    def protect_totals(self, totals: Mapping[str, int]) -> dict[str, Protected]:
        """Patients/studies/series/instances protected; bytes to megabytes unless suppressed."""
        protected: dict[str, Protected] = {name: self.protect(totals[name]) for name in _COUNTS}
        suppressed = totals["patients"] < self.min_count
        protected["bytes"] = f"<{self.min_count}" if suppressed else round(totals["bytes"], -6)
        return protected

    def protect_result(self, result: CohortResult) -> dict[str, Any]:
        """A cohort answer with every count protected; facet values below k are left out."""
        return {
            "filter": result.filter,
            "protected": True,
            "counts": self.protect_totals(asdict(result.counts)),
            "facets": {
                name: [
                    {
                        "value": b.value,
                        "patients": self.protect(b.patients),
                        "series": self.protect(b.series),
                    }
                    for b in buckets
                    if b.patients >= self.min_count
                ]
                for name, buckets in result.facets.items()
            },
            "elapsed_ms": result.elapsed_ms,
        }

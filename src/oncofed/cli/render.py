"""Rich tables for cohort results and ingest reports."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from oncofed.catalog.results import CohortResult
from oncofed.ingest.report import IngestReport


def print_cohort(console: Console, result: CohortResult) -> None:
    """Counts as one table, then one small table per facet."""
    counts = result.counts
    table = Table(title=f"cohort {result.filter or '(everything)'}")
    for column in ("patients", "studies", "series", "instances", "GB"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{counts.patients:,}",
        f"{counts.studies:,}",
        f"{counts.series:,}",
        f"{counts.instances:,}",
        f"{counts.bytes / 1e9:,.2f}",
    )
    console.print(table)
    for name, buckets in result.facets.items():
        facet = Table(title=f"by {name}")
        facet.add_column(name)
        facet.add_column("patients", justify="right")
        facet.add_column("series", justify="right")
        for bucket in buckets:
            facet.add_row(bucket.value or "(unknown)", f"{bucket.patients:,}", f"{bucket.series:,}")
        console.print(facet)
    console.print(f"[dim]{result.elapsed_ms:.1f} ms[/]")


def print_ingest_report(console: Console, report: IngestReport, *, max_failures: int = 20) -> None:
    """The summary line and the first failures."""
    console.print(report.summary())
    problems = report.failed + report.conflicts
    if problems:
        table = Table(title="not stored")
        table.add_column("input")
        table.add_column("reason")
        for item in problems[:max_failures]:
            table.add_row(item.path, item.reason)
        console.print(table)
        if len(problems) > max_failures:
            console.print(f"... and {len(problems) - max_failures} more (see the JSON report)")

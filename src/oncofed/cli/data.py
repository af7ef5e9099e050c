"""`oncofed ingest`, `oncofed query` and `oncofed catalog ...`: put data in, ask questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from oncofed.catalog.filters import parse_cli_terms
from oncofed.catalog.writer import CollectionSpec
from oncofed.cli.options import JsonOption, NodeOption
from oncofed.cli.render import print_cohort, print_ingest_report
from oncofed.node import Node

console = Console()
catalog_app = typer.Typer(help="Reference imports and the catalogue.", no_args_is_help=True)


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursive).")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection id.")],
    node: NodeOption = Path("."),
    title: Annotated[str | None, typer.Option(help="Collection title if new.")] = None,
    cancer_type: Annotated[
        list[str] | None, typer.Option("--cancer-type", help="Cancer type(s) if new.")
    ] = None,
    already_deidentified: Annotated[
        bool,
        typer.Option(
            "--already-deidentified",
            help="Declare the collection already de-identified (public data): stored as is.",
        ),
    ] = False,
    workers: Annotated[int | None, typer.Option(help="Worker processes (0 = all cores).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest DICOM files into a collection; bad files are listed and skipped."""
    spec = CollectionSpec(
        collection,
        title or collection,
        cancer_types=tuple(cancer_type or ()),
        deidentified_at_source=already_deidentified,
    )
    with Node(node) as opened:
        report = opened.ingest(
            paths, spec, already_deidentified=already_deidentified, workers=workers
        )
    if as_json:
        from dataclasses import asdict

        typer.echo(json.dumps(asdict(report), indent=2))
    else:
        print_ingest_report(console, report)


def query(
    where: Annotated[
        list[str] | None,
        typer.Option("--where", "-w", help="FIELD=V1,V2 or FIELD=LOW..HIGH; repeat to AND."),
    ] = None,
    facets: Annotated[str, typer.Option(help="Comma-separated facet names.")] = "",
    node: NodeOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Count the patients, studies, series and instances matching a cohort filter."""
    filter_ = parse_cli_terms(where or [])
    facet_names = [f.strip() for f in facets.split(",") if f.strip()]
    with Node(node, read_only=True) as opened:
        result = opened.catalog.query(filter_, facet_names)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_cohort(console, result)


@catalog_app.command("import-idc")
def import_idc(
    node: NodeOption = Path("."),
    force: Annotated[bool, typer.Option(help="Re-import even if this version is loaded.")] = False,
) -> None:
    """Load the NCI Imaging Data Commons index (from idc-index-data) as reference metadata."""
    with Node(node) as opened:
        result = opened.import_idc(force=force)
    if result.skipped_same_version:
        console.print(f"IDC index {result.version} is already imported; nothing to do")
    console.print(
        f"IDC {result.version}: {result.collections} collections, {result.patients:,} patients, "
        f"{result.studies:,} studies, {result.series:,} series, {result.instances:,} instances "
        f"({result.seconds:.1f} s)"
    )


@catalog_app.command("collections")
def collections(node: NodeOption = Path("."), as_json: JsonOption = False) -> None:
    """List the collections with their totals."""
    with Node(node, read_only=True) as opened:
        rows = opened.catalog.collections()
    if as_json:
        from dataclasses import asdict

        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    table = Table(title="collections")
    for column in ("id", "source", "cancer types", "patients", "series", "instances"):
        table.add_column(
            column, justify="right" if column[0] in "psi" and column != "id" else "left"
        )
    for r in rows:
        table.add_row(
            r.collection_id,
            r.source,
            ", ".join(r.cancer_types)[:40],
            f"{r.patients:,}",
            f"{r.series:,}",
            f"{r.instances:,}",
        )
    console.print(table)

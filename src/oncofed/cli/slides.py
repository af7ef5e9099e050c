"""`oncofed wsi ingest`: de-identify slides into a node, linked to their patients."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from oncofed.catalog.writer import CollectionSpec
from oncofed.cli.options import JsonOption, NodeOption
from oncofed.cli.render import print_ingest_report
from oncofed.errors import IngestError
from oncofed.ingest.slides import SlideInput, read_sample_sheet
from oncofed.node import Node

console = Console()


def ingest_slides(
    slides: Annotated[list[Path] | None, typer.Argument(help="Slide files.")] = None,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection id.")] = "",
    node: NodeOption = Path("."),
    sample_sheet: Annotated[
        Path | None,
        typer.Option(help="CSV: path,patient_id[,study_id,stain,body_part] (instead of SLIDES)."),
    ] = None,
    patient_id: Annotated[str | None, typer.Option(help="Patient of the SLIDES given.")] = None,
    study_id: Annotated[str, typer.Option(help="Case/study id of the SLIDES given.")] = "",
    stain: Annotated[str | None, typer.Option(help="Stain, e.g. H&E.")] = None,
    body_part: Annotated[str | None, typer.Option(help="Body part, e.g. PROSTATE.")] = None,
    as_json: JsonOption = False,
) -> None:
    """De-identify slides (label/macro removed, metadata scrubbed) and catalogue them."""
    if not collection:
        raise IngestError("--collection is required")
    if sample_sheet is not None:
        items = read_sample_sheet(sample_sheet)
    elif slides and patient_id:
        items = [
            SlideInput(p, patient_id, study_id, stain, body_part.upper() if body_part else None)
            for p in slides
        ]
    else:
        raise IngestError("give SLIDES with --patient-id, or --sample-sheet CSV")
    with Node(node) as opened:
        report = opened.ingest_slides(items, CollectionSpec(collection, collection))
    if as_json:
        typer.echo(json.dumps(asdict(report), indent=2))
    else:
        print_ingest_report(console, report)

"""`oncofed labels import`: reference labels keyed by the hospital's own identifiers."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from oncofed.cli.options import JsonOption, NodeOption
from oncofed.node import Node

app = typer.Typer(help="Reference labels (ISUP grade, Gleason, BI-RADS, malignancy, ...).")


@app.command("import")
def import_labels(
    csv_file: Annotated[Path, typer.Argument(help="CSV: patient_id,kind,value[,study_uid,...].")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection id.")],
    node: NodeOption = Path("."),
    strict: Annotated[
        bool, typer.Option(help="Import nothing if any row matches nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Map the file's identifiers to the node's pseudonyms and store the labels (idempotent)."""
    with Node(node) as opened:
        result = opened.import_labels(csv_file, collection, strict=strict)
    if as_json:
        typer.echo(json.dumps(asdict(result), indent=2))
        return
    typer.echo(result.summary())
    for unmatched in result.unmatched:
        typer.echo(f"  line {unmatched.line}: {unmatched.reason}", err=True)

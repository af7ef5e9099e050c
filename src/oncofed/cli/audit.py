"""`oncofed audit ...`: read and verify the node's hash-chained audit log."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from oncofed.cli.options import JsonOption, NodeOption
from oncofed.node import Node

app = typer.Typer(help="The node's append-only audit log.", no_args_is_help=True)
console = Console()


@app.command("verify")
def verify(node: NodeOption = Path(".")) -> None:
    """Check that no entry was edited, removed or reordered; exit 1 if one was."""
    with Node(node, read_only=True) as opened:
        breaks = opened.audit.verify()
        count = len(opened.audit.entries())
    if not breaks:
        console.print(f"audit log intact: {count} entries, chain and head verified")
        return
    for item in breaks:
        typer.echo(f"entry {item.seq}: {item.reason}", err=True)
    raise typer.Exit(1)


@app.command("show")
def show(
    node: NodeOption = Path("."),
    since: Annotated[int, typer.Option(help="Show entries after this sequence number.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Print audit entries in order."""
    with Node(node, read_only=True) as opened:
        entries = opened.audit.entries(since=since, limit=limit)
    if as_json:
        typer.echo(json.dumps([asdict(e) for e in entries], indent=2))
        return
    table = Table(title="audit log")
    for column in ("seq", "time", "actor", "action", "target", "details"):
        table.add_column(column)
    for e in entries:
        table.add_row(str(e.seq), e.time[:19], e.actor, e.action, e.target, e.details[:60])
    console.print(table)

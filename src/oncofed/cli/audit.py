"""`oncofed audit ...`: read and verify the node's hash-chained audit log."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from oncofed.catalog.audit import AuditEntry, Break
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
    report_verified("audit log", breaks, count)


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
    print_entries(entries, "audit log", as_json=as_json, details_width=60)


def report_verified(log: str, breaks: list[Break], count: int) -> None:
    """Say that ``log`` is intact, or name each break on stderr and exit 1."""
    if not breaks:
        console.print(f"{log} intact: {count} entries, chain and head verified")
        return
    for item in breaks:
        typer.echo(f"entry {item.seq}: {item.reason}", err=True)
    raise typer.Exit(1)


def print_entries(
    entries: list[AuditEntry], title: str, *, as_json: bool, details_width: int
) -> None:
    """Audit entries as JSON or as a table, their details cut to ``details_width``."""
    if as_json:
        typer.echo(json.dumps([asdict(e) for e in entries], indent=2))
        return
    table = Table(title=title)
    for column in ("seq", "time", "actor", "action", "target", "details"):
        table.add_column(column)
    for e in entries:
        details = e.details[:details_width]
        table.add_row(str(e.seq), e.time[:19], e.actor, e.action, e.target, details)
    console.print(table)

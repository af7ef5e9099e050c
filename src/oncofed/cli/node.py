"""`oncofed node ...`: create and inspect a node home."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from oncofed.cli.options import JsonOption
from oncofed.node import Node

app = typer.Typer(help="Create and inspect a node home.", no_args_is_help=True)
console = Console()


@app.command("init")
def init(
    home: Annotated[Path, typer.Argument(help="Folder for the new node.")],
    name: Annotated[str | None, typer.Option(help="Node name (default: folder name).")] = None,
) -> None:
    """Create a node: config file, catalog and object store."""
    with Node.init(home, name=name) as node:
        console.print(
            f"Created node [bold]{node.settings.name}[/] in {node.home} "
            f"(catalog schema v{node.catalog.schema_version})"
        )


@app.command("info")
def info(
    home: Annotated[Path, typer.Argument(help="Node home folder.")] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Show a node's settings and catalog totals."""
    with Node(home, read_only=True) as node:
        counts = node.catalog.table_counts()
        if as_json:
            typer.echo(json.dumps({"name": node.settings.name, "tables": counts}, indent=2))
            return
        table = Table(title=f"node {node.settings.name} ({node.home})")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, rows in counts.items():
            table.add_row(name, f"{rows:,}")
        console.print(table)


@app.command("serve")
def serve(
    home: Annotated[Path, typer.Argument(help="Node home folder.")] = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on (HTTP).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (HTTP).")] = 8080,
    dimse_port: Annotated[
        int | None, typer.Option(help="Also accept DICOM associations on this port.")
    ] = None,
    dimse_host: Annotated[str, typer.Option(help="Address for DICOM associations.")] = "127.0.0.1",
    ae_title: Annotated[str, typer.Option(help="This node's AE title.")] = "ONCOFED",
    dimse_peer: Annotated[
        list[str] | None,
        typer.Option(help="A DICOM peer allowed to associate: AET=host:port (repeatable)."),
    ] = None,
) -> None:
    """Serve the node: REST API (/api/v1, OpenAPI at /docs), DICOMweb (/dicomweb), slide
    viewer (/wsi) and, with --dimse-port, DICOM C-ECHO/STORE/FIND/GET/MOVE."""
    import uvicorn

    from oncofed.server.app import create_app
    from oncofed.server.dimse import DimseServer, parse_peer
    from oncofed.server.service import NodeService

    peers = dict(parse_peer(text) for text in dimse_peer or [])
    with NodeService.open(home) as service:
        dimse = None
        if dimse_port is not None:
            dimse = DimseServer(
                service, peers=peers, ae_title=ae_title, host=dimse_host, port=dimse_port
            )
            dimse.start()
            console.print(f"DICOM: {ae_title}@{dimse_host}:{dimse.port}, peers {sorted(peers)}")
        console.print(f"node {service.node.settings.name}: http://{host}:{port}/docs")
        try:
            uvicorn.run(create_app(service), host=host, port=port, log_level="info")
        finally:
            if dimse is not None:
                dimse.stop()

"""`oncofed node ...`: create and inspect a node home."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from oncofed.cli.options import JsonOption
from oncofed.cli.shutdown import exit_cleanly_on_sigterm
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

    from oncofed.agent.loop import Agent, load_handler_modules
    from oncofed.agent.membership import MEMBERSHIP_FILE
    from oncofed.server.app import create_app
    from oncofed.server.dimse import DimseServer, parse_peer
    from oncofed.server.service import NodeService

    peers = dict(parse_peer(text) for text in dimse_peer or [])
    exit_cleanly_on_sigterm()  # received instances catalogued, read audit written
    with NodeService.open(home) as service:
        service.start_workers()
        agent = None
        if (home / MEMBERSHIP_FILE).exists():  # joined a hub: poll it for work
            load_handler_modules()
            agent = Agent(service)
            agent.start()
            console.print(f"agent: polling {agent.membership.hub_url}")
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
            if agent is not None:
                agent.stop()


@app.command("join")
def join(
    hub_url: Annotated[str, typer.Argument(help="The hub's URL, e.g. https://hub.example.org")],
    home: Annotated[Path, typer.Option("--node", "-n", help="Node home folder.")] = Path("."),
    node_id: Annotated[
        str | None, typer.Option(help="This node's id at the hub (default: its name).")
    ] = None,
    hub_fingerprint: Annotated[
        str | None,
        typer.Option(
            "--hub-key-fingerprint", help="Refuse a hub whose key has another fingerprint."
        ),
    ] = None,
) -> None:
    """Ask a hub to let this node join (an admin there approves it); pins the hub's key."""
    from oncofed.agent.membership import join as join_hub
    from oncofed.agent.membership import node_key
    from oncofed.config import load_settings
    from oncofed.hub.keys import fingerprint

    settings = load_settings(home)
    ident = node_id or settings.name
    status = join_hub(home, hub_url, ident, name=settings.name, hub_fingerprint=hub_fingerprint)
    key = fingerprint(node_key(home).public_key())
    console.print(f"node {ident} at {hub_url}: {status}; our key fingerprint {key}")


@app.command("agent")
def agent(
    home: Annotated[Path, typer.Argument(help="Node home folder.")] = Path("."),
    wait: Annotated[float, typer.Option(help="Seconds each long poll may wait.")] = 25.0,
    handlers: Annotated[
        list[str] | None, typer.Option(help="Extra module registering task handlers.")
    ] = None,
) -> None:
    """Poll the hub for work without serving HTTP (`node serve` does this too when joined)."""
    from oncofed.agent.loop import run_agent

    console.print(f"agent for {home}: polling (Ctrl-C stops)")
    run_agent(home, wait_s=wait, handlers=handlers)

"""`oncofed hub ...`: create and serve a hub; approve nodes; federated search."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from oncofed.catalog.filters import parse_cli_terms
from oncofed.cli.shutdown import exit_cleanly_on_sigterm
from oncofed.errors import AuthError, ConfigError

app = typer.Typer(help="Run a federation hub and work with it.", no_args_is_help=True)
nodes_app = typer.Typer(help="Nodes that asked to join (admin).", no_args_is_help=True)
app.add_typer(nodes_app, name="nodes")
console = Console()

HubUrl = Annotated[str, typer.Option("--hub", envvar="ONCOFED_HUB", help="Hub URL.")]
Token = Annotated[
    str, typer.Option("--token", envvar="ONCOFED_HUB_TOKEN", help="Your hub bearer token.")
]


@app.command("init")
def init(
    home: Annotated[Path, typer.Argument(help="Folder for the new hub.")],
    name: Annotated[str, typer.Option(help="The hub's id (nodes address it by this).")] = "hub",
) -> None:
    """Create a hub: settings, key pair, database, and an admin token (printed once)."""
    from oncofed.hub.service import Hub

    hub, token = Hub.init(home, name=name)
    with hub:
        identity = hub.identity()
    token_file = home / "admin.token"
    token_file.write_text(token.token + "\n", encoding="ascii")
    os.chmod(token_file, 0o600)
    console.print(f"Created hub [bold]{name}[/] in {home}; key {identity['fingerprint']}")
    console.print(f"Admin token (also in {token_file}): {token.token}")


@app.command("serve")
def serve(
    home: Annotated[Path, typer.Argument(help="Hub home folder.")] = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8090,
) -> None:
    """Serve the hub API (/hub/v1, OpenAPI at /docs)."""
    import uvicorn

    from oncofed.hub.app import create_hub_app
    from oncofed.hub.service import Hub

    exit_cleanly_on_sigterm()
    with Hub(home) as hub:
        console.print(f"hub {hub.name}: http://{host}:{port}/docs")
        uvicorn.run(create_hub_app(hub), host=host, port=port, log_level="warning")


def hub_request(
    method: str,
    url: str,
    token: str,
    *,
    timeout: float = 130,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """A hub API response (status < 400), or a clear error from its problem details."""
    headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
    try:
        response = httpx.request(method, url, headers=headers, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach {url}: {exc}") from exc
    if response.status_code < 400:
        return response
    try:  # a problem details document (RFC 9457)
        problem = response.json()
        reason = str(problem.get("detail") or problem.get("title"))
    except (ValueError, AttributeError):
        reason = response.text[:500]
    if response.status_code in (401, 403):
        raise AuthError(f"{url}: {reason}")
    raise ConfigError(f"{url}: HTTP {response.status_code}: {reason}")


@nodes_app.command("list")
def nodes_list(hub: HubUrl, token: Token) -> None:
    """Registered nodes, their key fingerprints and status."""
    rows = hub_request("GET", f"{hub}/hub/v1/nodes", token).json()
    table = Table(title=f"nodes of {hub}")
    for column in ("node", "name", "status", "online"):
        table.add_column(column)
    table.add_column("key fingerprint", overflow="fold")  # checked in full with the node
    for row in rows:
        table.add_row(
            row["node_id"], row["name"], row["status"], str(row["online"]), row["fingerprint"]
        )
    console.print(table)


@nodes_app.command("approve")
def approve(node: Annotated[str, typer.Argument()], hub: HubUrl, token: Token) -> None:
    """Let a node join (check its key fingerprint with its operator first)."""
    answer = hub_request("POST", f"{hub}/hub/v1/nodes/{node}/approve", token).json()
    console.print(f"node {answer['node_id']}: {answer['status']}")


@nodes_app.command("reject")
def reject(node: Annotated[str, typer.Argument()], hub: HubUrl, token: Token) -> None:
    """Refuse a node."""
    answer = hub_request("POST", f"{hub}/hub/v1/nodes/{node}/reject", token).json()
    console.print(f"node {answer['node_id']}: {answer['status']}")


@nodes_app.command("remove")
def remove(node: Annotated[str, typer.Argument()], hub: HubUrl, token: Token) -> None:
    """Take an approved node out: its messages are refused, its catalogue entry hidden."""
    answer = hub_request("POST", f"{hub}/hub/v1/nodes/{node}/remove", token).json()
    console.print(f"node {answer['node_id']}: {answer['status']}")


@app.command("search")
def search(
    hub: HubUrl,
    token: Token,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", "-w", help="FIELD=V1,V2 or FIELD=LOW..HIGH; repeat to AND."),
    ] = None,
    facets: Annotated[str, typer.Option(help="Comma-separated facet names.")] = "",
    deadline: Annotated[float | None, typer.Option(help="Seconds to wait for nodes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the NDJSON lines.")] = False,
) -> None:
    """Federated cohort search (same filter terms as `oncofed query`): protected counts from
    every node, and the totals."""
    body = {
        "where": parse_cli_terms(where or []),
        "facets": [f.strip() for f in facets.split(",") if f.strip()],
        "deadline_s": deadline,
    }
    lines = hub_request("POST", f"{hub}/hub/v1/search", token, json=body).text.splitlines()
    parsed = [json.loads(line) for line in lines if line]
    if as_json:
        for line in parsed:
            typer.echo(json.dumps(line))
        return
    print_search(console, parsed)


def print_search(out: Console, lines: list[dict[str, Any]]) -> None:
    """Per-node counts and the totals of a federated search."""
    table = Table(title="federated search")
    for column in ("node", "status", "patients", "studies", "series", "instances"):
        table.add_column(column, justify="right" if column not in ("node", "status") else "left")
    summary: dict[str, Any] = {}
    for line in lines:
        if "summary" in line:
            summary = line["summary"]
        if "node" not in line:  # the job line and the summary
            continue
        counts = (line.get("result") or {}).get("counts", {})
        names = ("patients", "studies", "series", "instances")
        cells = [str(counts.get(n, "")) for n in names]
        status = line["status"] if "error" not in line else f"error: {line['error']}"
        table.add_row(line["node"], status, *cells)
    if summary:
        totals = summary["counts"]
        cells = [
            f"{totals[n]['low']}" if totals[n]["low"] == totals[n]["high"]
            else f"{totals[n]['low']}-{totals[n]['high']}"
            for n in ("patients", "studies", "series", "instances")
        ]  # fmt: skip
        table.add_row("[bold]total[/]", f"{summary['answered']} answered", *cells)
    out.print(table)
    for name, buckets in summary.get("facets", {}).items():
        facet = Table(
            title=f"{name} (patients, at least: values suppressed at a node are left out)"
        )
        facet.add_column(name)
        facet.add_column("patients", justify="right")
        for bucket in buckets:
            facet.add_row(str(bucket["value"]), str(bucket["patients_at_least"]))
        out.print(facet)

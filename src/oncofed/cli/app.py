"""The `oncofed` command line: one typer app with a sub-app per area."""

from __future__ import annotations

import logging
import sys

import typer

from oncofed import __version__
from oncofed.cli import (
    access,
    audit,
    data,
    demo,
    hub,
    hub_access,
    labels,
    models,
    node,
    slides,
    tef,
    tef_hub,
)
from oncofed.deid import cli as deid_cli
from oncofed.errors import OncofedError
from oncofed.wsi import cli as wsi_cli

app = typer.Typer(
    name="oncofed",
    help="Federated cancer imaging: nodes, catalogue, cohort search, governed access.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(node.app, name="node")
app.add_typer(data.catalog_app, name="catalog")
app.add_typer(audit.app, name="audit")
app.add_typer(hub.app, name="hub")
hub.app.add_typer(hub_access.users_app, name="users")
hub.app.add_typer(hub_access.requests_app, name="requests")
hub.app.add_typer(hub_access.audit_app, name="audit")
node.app.add_typer(hub_access.node_requests_app, name="requests")
app.add_typer(labels.app, name="labels")
app.add_typer(tef.app, name="tef")
tef.app.command("register")(tef_hub.register)
tef.app.command("benchmarks")(tef_hub.benchmarks)
tef.app.command("submit")(tef_hub.submit)
tef.app.command("report")(tef_hub.report)
tef.app.command("leaderboard")(tef_hub.leaderboard)
tef.app.command("compare")(tef_hub.compare)
app.add_typer(models.app, name="models")
app.add_typer(access.users, name="users")
app.add_typer(access.tokens, name="tokens")
app.add_typer(access.grants, name="grants")
app.command("ingest")(data.ingest)
app.command("query")(data.query)
app.command("demo")(demo.demo)
app.command("deid")(deid_cli.deid)
wsi_cli.app.command("ingest")(slides.ingest_slides)
app.add_typer(wsi_cli.app, name="wsi")


@app.command("version")
def version() -> None:
    """Print the oncofed version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point: run the app, print oncofed errors without a traceback, exit 2 on them."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        app()
    except OncofedError as exc:
        typer.echo(f"error ({exc.code}): {exc.message}", err=True)
        sys.exit(2)

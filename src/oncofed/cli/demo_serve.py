"""The demo's last act: serve the demo node and show what each kind of caller sees."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from rich.console import Console
from rich.table import Table

from oncofed.access.store import IdentityStore
from oncofed.node import Node
from oncofed.server.app import create_app
from oncofed.server.service import NodeService

DEMO_USERS = {"demo-steward": "data_manager", "demo-researcher": "researcher"}


def demo_tokens(node: Node, granted: list[str]) -> dict[str, str]:
    """One-day tokens for a demo data manager and a researcher granted ``granted``."""
    store = IdentityStore(node.catalog.con)
    tokens: dict[str, str] = {}
    for user, role in DEMO_USERS.items():
        if user not in {
            u for (u,) in node.catalog.con.execute("SELECT user_id FROM app_user").fetchall()
        }:
            store.add_user(user, [role])
        tokens[user] = store.issue_token(user, days=1).token
    have = store.active_grants("demo-researcher")
    for collection in granted:
        if collection not in have:
            store.grant("demo-researcher", collection, 3, node.actor, days=1)
    return tokens


def free_port(preferred: int = 0) -> int:
    """``preferred`` if it is free on 127.0.0.1, else any free port."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_demo(
    console: Console, home: Path, tokens: dict[str, str], slide_id: str | None, seconds: float
) -> None:
    """Serve the node on 127.0.0.1, show a few calls, then serve for ``seconds`` (0: forever)."""
    port = free_port(8080)
    url = f"http://127.0.0.1:{port}"
    with NodeService.open(home) as service, serving(create_app(service), port):
        _show_calls(console, url, tokens)
        _print_urls(console, url, tokens, slide_id)
        _wait(console, seconds)


@contextmanager
def serving(app: FastAPI, port: int) -> Iterator[None]:
    """``app`` served by uvicorn on 127.0.0.1:``port`` in a thread, for the ``with`` block."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _show_calls(console: Console, url: str, tokens: dict[str, str]) -> None:
    query = {"where": {"collection": ["synthetic-demo"], "modality": ["US"]}}
    table = Table(title="the same question, three callers (POST /api/v1/query)")
    for column in ("caller", "patients", "series", "note"):
        table.add_column(column)
    callers = {"anonymous": None, **tokens}
    with httpx.Client(base_url=url, timeout=30) as http:
        for name, token in callers.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            counts = http.post("/api/v1/query", json=query, headers=headers).json()["counts"]
            note = "exact (steward)" if name == "demo-steward" else "disclosure-controlled"
            table.add_row(name, str(counts["patients"]), str(counts["series"]), note)
        console.print(table)
        studies = http.get(
            "/dicomweb/studies",
            params={"limit": 3},
            headers={"Authorization": f"Bearer {tokens['demo-researcher']}"},
        ).json()
        console.print(f"QIDO-RS as demo-researcher (tier-3 grant): {len(studies)} studies, e.g.")
        if studies:
            first = studies[0]
            console.print(
                f"  PatientID {first['00100020']['Value'][0]}, StudyDate "
                f"{first.get('00080020', {}).get('Value', ['?'])[0]}, modalities "
                f"{first.get('00080061', {}).get('Value', [])}"
            )


def _print_urls(console: Console, url: str, tokens: dict[str, str], slide_id: str | None) -> None:
    console.print(f"\n[bold]The demo node is serving at {url}[/]", soft_wrap=True)
    console.print(f"  OpenAPI / try the REST API:  {url}/docs")
    console.print(f"  DICOMweb (QIDO/WADO/STOW):   {url}/dicomweb/studies")
    if slide_id:
        console.print(f"  slide viewer:                {url}/wsi/{slide_id}/viewer", soft_wrap=True)
    for user, token in tokens.items():
        console.print(f"  token of {user}: {token}", soft_wrap=True)
    console.print(
        f'  e.g. curl -H "Authorization: Bearer {tokens["demo-researcher"]}" '
        f"'{url}/dicomweb/studies?limit=2'",
        soft_wrap=True,
    )


def _wait(console: Console, seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)
        return
    console.print("Press Ctrl-C to stop.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopped")

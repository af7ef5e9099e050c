"""A real node server on 127.0.0.1 with a random free port, in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from oncofed.access.store import IdentityStore
from oncofed.node import Node
from oncofed.server.app import create_app
from oncofed.server.service import NodeService
from oncofed.testing.dicom import CohortManifest, generate_cohort


@dataclass(frozen=True)
class RunningNode:
    """A served node, what it holds, and bearer tokens by caller kind."""

    url: str
    service: NodeService
    cohort: CohortManifest
    tokens: dict[str, str]


def make_callers(node: Node) -> dict[str, str]:
    """Users of every role, with tokens; plus revoked, expired and disabled users' tokens."""
    store = IdentityStore(node.catalog.con)
    tokens: dict[str, str] = {}
    for name, role in [
        ("admin", "admin"),
        ("data_manager", "data_manager"),
        ("researcher", "researcher"),
        ("granted", "researcher"),
        ("ai_provider", "ai_provider"),
        ("committee", "access_committee"),
        ("revoked", "researcher"),
        ("expired", "researcher"),
        ("disabled", "data_manager"),
    ]:
        store.add_user(name, [role])
        tokens[name] = store.issue_token(name).token
    store.grant("granted", "synth", 3, "admin")
    store.revoke_token(tokens["revoked"].split("_")[1])
    node.catalog.con.execute(
        "UPDATE api_token SET expires_at = now() - INTERVAL 1 MINUTE WHERE user_id = 'expired'"
    )
    store.disable_user("disabled")
    tokens["malformed"] = "not-a-token"
    tokens["forged"] = tokens["admin"][:-4] + "AAAA"
    return tokens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    root = tmp_path_factory.mktemp("served")
    cohort = generate_cohort(root / "in", patients=5, seed=21)
    home = root / "node"
    with Node.init(home, name="test-hospital") as node:
        node.ingest(cohort.files, "synth", workers=1)
        tokens = make_callers(node)
    service = NodeService.open(home)
    with serving(create_app(service)) as url:
        yield RunningNode(url, service, cohort, tokens)
    service.close()


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (random free port) in a thread; yield its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def client(served: RunningNode) -> Iterator[httpx.Client]:
    """A data manager's client."""
    headers = {"Authorization": f"Bearer {served.tokens['data_manager']}"}
    with httpx.Client(base_url=served.url, timeout=30, headers=headers) as http:
        yield http


@pytest.fixture
def anonymous(served: RunningNode) -> Iterator[httpx.Client]:
    """A client without credentials."""
    with httpx.Client(base_url=served.url, timeout=30) as http:
        yield http


def home_of(served: RunningNode) -> Path:
    return served.service.node.home

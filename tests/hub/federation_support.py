"""Real processes for federation tests: a hub (`oncofed hub serve`) and node agents
(`oncofed node agent`), on 127.0.0.1 with free ports; nodes hold small generated cohorts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from oncofed.agent.membership import join
from oncofed.catalog.writer import CollectionSpec
from oncofed.disclosure import DisclosurePolicy
from oncofed.hub.service import Hub, HubSettings
from oncofed.node import Node
from oncofed.testing.dicom import generate_cohort

QUERY: dict[str, Any] = {"modality": ["CT", "MR", "MG"]}
FACETS = ["modality"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def oncofed(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "oncofed", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        start_new_session=True,
    )


@dataclass
class Federation:
    """A running hub, its admin token and the nodes made for a test."""

    root: Path
    url: str = ""
    token: str = ""
    hub: subprocess.Popen[bytes] | None = None
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start_hub(self, *, online_window_s: float = 3.0, port: int | None = None) -> None:
        """Start (or restart, keeping its home and port) the hub process."""
        home = self.root / "hub"
        if not home.exists():
            hub, token = Hub.init(home, name="test-hub")
            hub.close()
            self.token = token.token
            settings = replace(HubSettings.read(home), online_window_s=online_window_s)
            settings.write(home)
        port = port or free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.hub = oncofed("hub", "serve", str(home), "--port", str(port))
        wait_until(lambda: httpx.get(f"{self.url}/hub/v1/health").status_code == 200)

    def kill_hub(self) -> None:
        """End the hub process abruptly (SIGKILL), as a crash would."""
        if self.hub is not None:
            os.killpg(self.hub.pid, signal.SIGKILL)
            self.hub.wait()
            self.hub = None

    def stop_hub(self) -> None:
        if self.hub is not None:
            stop(self.hub)
            self.hub = None

    def add_node(self, name: str, *, patients: int, seed: int) -> Path:
        """A node with a generated cohort (none for 0 patients), joined and approved; its own
        protected answer to QUERY is kept as the oracle."""
        home = self.root / name
        with Node.init(home, name=name) as node:
            if patients:
                cohort = generate_cohort(
                    self.root / f"{name}-in", patients=patients, seed=seed, rows=8, columns=8
                )
                spec = CollectionSpec(f"{name}-coll", f"{name} cohort")
                node.ingest(cohort.files, spec, workers=1)  # no process pool for a few files
            result = node.catalog.query(QUERY, FACETS)
            policy = DisclosurePolicy(node.settings.min_count, node.settings.count_rounding)
            self.expected[name] = policy.protect_result(result)
        assert join(home, self.url, name, name=name) == "pending"
        answer = httpx.post(f"{self.url}/hub/v1/nodes/{name}/approve", headers=self.admin)
        assert answer.status_code == 200, answer.text
        return home

    def start_agent(self, name: str, *, handlers: Path | None = None) -> None:
        args = ["node", "agent", str(self.root / name), "--wait", "5"]
        env = {}
        if handlers is not None:
            args += ["--handlers", handlers.stem]
            env["PYTHONPATH"] = f"{handlers.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
        self.agents[name] = oncofed(*args, env=env)

    def wait_online(self, *names: str, timeout: float = 60.0) -> None:
        def online() -> bool:
            rows = httpx.get(f"{self.url}/hub/v1/nodes", headers=self.admin).json()
            return all(r["online"] for r in rows if r["node_id"] in names)

        wait_until(online, timeout)

    def search(self, deadline_s: float = 5.0) -> list[dict[str, Any]]:
        body = {"where": QUERY, "facets": FACETS, "deadline_s": deadline_s}
        answer = httpx.post(f"{self.url}/hub/v1/search", json=body, headers=self.admin, timeout=60)
        assert answer.status_code == 200, answer.text
        return [json.loads(line) for line in answer.text.splitlines()]

    def close(self) -> None:
        for process in self.agents.values():
            stop(process)
        self.stop_hub()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until(condition: Any, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > end:
            raise TimeoutError("condition not met in time")
        time.sleep(0.1)


def federation(root: Path) -> Iterator[Federation]:
    fed = Federation(root)
    try:
        yield fed
    finally:
        fed.close()

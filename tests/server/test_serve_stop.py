"""``oncofed node serve`` stopped with SIGTERM stops cleanly: what was received is catalogued,
the reads are in the audit log, and no worker process is left behind."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import make_callers
from oncofed.catalog.writer import CollectionSpec
from oncofed.node import Node
from oncofed.testing.dicom import generate_cohort

START_S = 60
GONE_S = 5
BOUNDARY = "stopping"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for init to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(child) for child in found.split()]


def _serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "oncofed", "node", "serve", str(home), "--port", str(port)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _assert_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + GONE_S
    while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if _alive(pid)] == []


def test_sigterm_catalogues_audits_and_ends_the_workers(tmp_path: Path) -> None:
    cohort = generate_cohort(tmp_path / "in", patients=2, seed=17)
    home = tmp_path / "node"
    with Node.init(home, name="stopping") as node:
        node.ensure_collection(CollectionSpec("synth", "synth"))
        token = make_callers(node)["data_manager"]
    port = _free_port()
    server = _serve(home, port)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as http:
        deadline = time.monotonic() + START_S
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "did not start"
            try:
                if http.get("/api/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body = b"".join(head + path.read_bytes() + b"\r\n" for path in cohort.files)
        stored = http.post(
            "/dicomweb/studies",
            content=body + f"--{BOUNDARY}--\r\n".encode(),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
            },
        )
        assert stored.status_code == 200, stored.text
        studies = http.get("/dicomweb/studies").json()
        study = studies[0]["0020000D"]["Value"][0]
        assert http.get(f"/dicomweb/studies/{study}/metadata").status_code == 200
    workers = _children(server.pid)
    assert workers  # the de-identification workers (and multiprocessing's tracker)
    server.send_signal(signal.SIGTERM)  # at once: the read's audit entry is still deferred
    assert server.wait(timeout=60) == 0
    _assert_gone(workers)
    with Node(home) as node:
        instances = node.catalog.con.execute("SELECT count(*) FROM instance").fetchone()
        reads = node.catalog.con.execute(
            "SELECT count(*) FROM audit WHERE action = 'read' AND target LIKE ?",
            [f"dicomweb/{study}%"],
        ).fetchone()
    assert instances == (len(cohort.files),)
    assert reads == (1,)


def test_the_workers_end_with_a_killed_server(tmp_path: Path) -> None:
    home = tmp_path / "node"
    Node.init(home, name="killed").close()
    server = _serve(home, _free_port())
    deadline = time.monotonic() + START_S
    while len(_children(server.pid)) < 2:  # workers start with the server
        assert server.poll() is None and time.monotonic() < deadline, "no workers started"
        time.sleep(0.2)
    workers = _children(server.pid)
    server.kill()
    server.wait(timeout=30)
    _assert_gone(workers)

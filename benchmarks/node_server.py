"""The node server vs Orthanc on the same data, both on loopback, started by this script.

Rows: STOW-RS and C-STORE ingest throughput, QIDO-RS latency at 1 and 32 concurrent clients,
WADO-RS series retrieval MB/s. Goal (issue 6): at least Orthanc's throughput on every row and a
lower p95. Note that oncofed de-identifies every received instance (Orthanc stores as is), and
that servers and load generator share this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OUT, machine, percentile, print_table

from oncofed.access.store import IdentityStore
from oncofed.node import Node
from oncofed.testing.dicom import generate_many_small

ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
BOUNDARY = "oncofedbench"
DICOM_PARTS = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, headers: dict[str, str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not start")


class Server:
    """One DICOMweb + DIMSE server under test."""

    def __init__(
        self, name: str, dicomweb: str, aet: str, dimse_port: int, headers: dict[str, str]
    ):
        self.name, self.dicomweb, self.aet = name, dicomweb, aet
        self.dimse_port, self.headers = dimse_port, headers


@contextmanager
def orthanc(folder: Path) -> Iterator[Server]:
    http, dimse = free_port(), free_port()
    config = {
        "Name": "bench", "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"), "HttpPort": http, "DicomPort": dimse,
        "DicomAet": "ORTHANC", "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": [ORTHANC_PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomCheckCalledAet": False, "DicomModalities": {"BENCH": ["BENCH", "127.0.0.1", 4242]},
    }  # fmt: skip
    (folder / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        ["Orthanc", str(folder / "orthanc.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{http}/system", {})
        yield Server("Orthanc", f"http://127.0.0.1:{http}/dicom-web", "ORTHANC", dimse, {})
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def oncofed(folder: Path) -> Iterator[Server]:
    http, dimse = free_port(), free_port()
    with Node.init(folder / "node") as node:
        store = IdentityStore(node.catalog.con)
        store.add_user("bench", ["data_manager"])
        headers = {"Authorization": f"Bearer {store.issue_token('bench', days=1).token}"}
    command = [
        sys.executable, "-m", "oncofed", "node", "serve", str(folder / "node"),
        "--port", str(http), "--dimse-port", str(dimse), "--dimse-peer", "BENCH=127.0.0.1:4242",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{http}/api/v1/health", headers)
        yield Server("oncofed", f"http://127.0.0.1:{http}/dicomweb", "ONCOFED", dimse, headers)
    finally:
        process.terminate()
        process.wait(timeout=30)


def stow(server: Server, files: list[Path], batch: int) -> float:
    """Instances/s storing ``files`` in multipart requests of ``batch`` instances."""
    started = time.perf_counter()
    with httpx.Client(headers=server.headers, timeout=300) as http:
        for i in range(0, len(files), batch):
            body = (
                b"".join(
                    f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + path.read_bytes()
                    + b"\r\n"
                    for path in files[i : i + batch]
                )
                + f"--{BOUNDARY}--\r\n".encode()
            )
            answer = http.post(
                f"{server.dicomweb}/studies", content=body, headers={"Content-Type": DICOM_PARTS}
            )
            assert answer.status_code in (200, 202), (server.name, answer.status_code)
    return len(files) / (time.perf_counter() - started)


def c_store(server: Server, folder: Path, count: int) -> float:
    """Files/s sending ``folder`` with dcmtk's storescu (one association)."""
    started = time.perf_counter()
    subprocess.run(
        ["/usr/bin/storescu", "-aet", "BENCH", "-aec", server.aet, "+sd", "+r",
         "127.0.0.1", str(server.dimse_port), str(folder)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600,
    )  # fmt: skip
    return count / (time.perf_counter() - started)


def qido(server: Server, clients: int, requests: int) -> list[float]:
    """Latencies (ms) of ``requests`` study searches spread over ``clients`` threads."""

    def one(_: int) -> float:
        with httpx.Client(headers=server.headers, timeout=60) as http:
            started = time.perf_counter()
            answer = http.get(f"{server.dicomweb}/studies", params={"limit": 50})
            assert answer.status_code == 200, (server.name, answer.status_code)
            return (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(requests)))


def wado(server: Server, series_count: int) -> float:
    """MB/s retrieving whole series as multipart DICOM."""
    with httpx.Client(headers=server.headers, timeout=300) as http:
        found = http.get(f"{server.dicomweb}/series", params={"limit": series_count}).json()
        total, started = 0, time.perf_counter()
        for item in found:
            study, series = item["0020000D"]["Value"][0], item["0020000E"]["Value"][0]
            answer = http.get(
                f"{server.dicomweb}/studies/{study}/series/{series}",
                headers={"Accept": 'multipart/related; type="application/dicom"'},
            )
            assert answer.status_code == 200, (server.name, answer.status_code)
            total += len(answer.content)
    return total / 1e6 / (time.perf_counter() - started)


def measure(server: Server, stow_files: list[Path], dimse_dir: Path, dimse_count: int,
            args: argparse.Namespace) -> dict[str, float]:  # fmt: skip
    results = {
        "STOW-RS instances/s": stow(server, stow_files, args.batch),
        "C-STORE instances/s": c_store(server, dimse_dir, dimse_count),
    }
    for clients in (1, 32):
        latencies = qido(server, clients, args.requests)
        results[f"QIDO-RS p50 ms, {clients} clients"] = percentile(latencies, 50)
        results[f"QIDO-RS p95 ms, {clients} clients"] = percentile(latencies, 95)
    results["WADO-RS series MB/s"] = wado(server, args.series)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=1000, help="per ingest path")
    parser.add_argument("--batch", type=int, default=50, help="instances per STOW request")
    parser.add_argument("--requests", type=int, default=200, help="QIDO requests per level")
    parser.add_argument("--series", type=int, default=10, help="series to retrieve")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    stow_dir = OUT / f"server-stow-{args.instances}"
    dimse_dir = OUT / f"server-dimse-{args.instances}"
    for folder, seed in ((stow_dir, 31), (dimse_dir, 32)):
        if not folder.is_dir():
            generate_many_small(folder, args.instances, seed=seed)
    stow_files = sorted(stow_dir.rglob("*.dcm"))
    results: dict[str, dict[str, float]] = {}
    starters: list[tuple[str, Callable[[Path], object]]] = [
        ("Orthanc", orthanc),
        ("oncofed", oncofed),
    ]
    for name, start in starters:
        with tempfile.TemporaryDirectory(dir=OUT) as folder, start(Path(folder)) as server:  # type: ignore[attr-defined]
            results[name] = measure(server, stow_files, dimse_dir, args.instances, args)
    rows = []
    for metric in results["oncofed"]:
        ours, theirs = results["oncofed"][metric], results["Orthanc"][metric]
        lower_is_better = "ms" in metric
        met = ours <= theirs if lower_is_better else ours >= theirs
        rows.append([metric, ours, theirs, ours / theirs, "met" if met else "not met"])
    print_table(
        f"node server vs Orthanc ({machine()}; oncofed de-identifies every received instance)",
        ["metric", "oncofed", "Orthanc", "oncofed / Orthanc", "goal"],
        rows,
    )


if __name__ == "__main__":
    main()

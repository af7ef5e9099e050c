"""The node server vs Orthanc on the same data, both started by this script on loopback.

Peers, measured in the same run: Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) with a
generated configuration, and ``oncofed node serve`` (with a DIMSE port), each on random free
ports with temporary storage; both run at once and every row measures Orthanc, then oncofed.
The ingest rows also measure a second oncofed node with ``ingest_fsync = "batch"``.
Rows: STOW-RS and C-STORE (dcmtk ``storescu``) ingest of small and large instances; QIDO-RS
/studies and /series p50/p95 at 1 and 32 concurrent clients (``wrk`` when installed, else a
bounded Python load generator); WADO-RS retrieval of whole series (MB/s).
Goal (issue 6): at least Orthanc's throughput on every row and a lower p95.
oncofed de-identifies every instance it receives (Orthanc stores them as they are); servers and
load generators share this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OUT, console, machine, percentile, print_table

from oncofed.access.store import IdentityStore
from oncofed.catalog.writer import CollectionSpec
from oncofed.node import Node
from oncofed.server.service import RECEIVED_COLLECTION
from oncofed.testing.dicom import generate_large, generate_many_small

BOUNDARY = "oncofedbench"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
BENCH_AET = "BENCH"
STORESCU = "/usr/bin/storescu"  # dcmtk's (pynetdicom puts a Python storescu in the venv)
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
"""Debian's dcmtk (storescu, and Orthanc's DICOM server) leaves Nagle's algorithm on unless
TCP_NODELAY=1: each C-STORE then waits for a delayed ACK (~11 instances/s for any server)."""
IDENTITY = {"Accept-Encoding": "identity"}
"""Orthanc gzips responses when asked (httpx asks by default): 15 MB series then take 10x
longer. wrk asks for no compression either."""
START_S = 60
BATCH = "oncofed fsync=batch"
"""A second oncofed node with ``ingest_fsync = "batch"``, measured in the ingest rows only
(acknowledges once written, fsyncs within 0.1 s; Orthanc does not fsync at all)."""
LARGE_SERIES = 4_000_000
"""Bytes above which a retrieved series counts as large (the small ones are < 1 MB)."""
WRK_LUA = """
wrk.headers["Accept"] = "application/dicom+json"
{auth}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %.3f %.3f\\n", summary.requests,
    e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000))
end
"""


BARE_SCP = """
import sys
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom import _config
_config.LOG_HANDLER_LEVEL = "none"  # as oncofed's SCP
ae = AE("BARE")
ae.maximum_pdu_size = 4 << 20  # as oncofed's SCP
for context in AllStoragePresentationContexts:
    ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
def stored(event):
    event.encoded_dataset()  # the bytes a receiver would store, then nothing
    return 0
ae.start_server(("127.0.0.1", int(sys.argv[1])), evt_handlers=[(evt.EVT_C_STORE, stored)])
"""
"""The ceiling of any receiver built on pynetdicom: its SCP answering C-STOREs, storing nothing."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """One DICOMweb + DIMSE server under test, running as a child process."""

    name: str
    dicomweb: str
    aet: str
    dimse_port: int
    headers: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    cpu: dict[str, float] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process and its live children (oncofed's
        de-identification workers) have used so far."""
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            if stat.parent.name == str(self.process.pid) or fields[1] == str(self.process.pid):
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def running(
    name: str,
    command: list[str],
    log: Path,
    health: str,
    headers: dict[str, str],
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command``, wait until ``health`` answers 200, and always stop it afterwards."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env={**DCMTK_ENV, **(env or {})}
        )
    try:
        deadline = time.monotonic() + START_S
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"{name} did not start:\n{tail}")
            try:
                if httpx.get(health, headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def orthanc_plugin() -> str:
    """The DICOMweb plugin's shared library, from the Debian package's file list."""
    listed = subprocess.run(
        ["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, check=False
    ).stdout.split()
    found = [p for p in listed if ".so" in Path(p).name and Path(p).is_file()]
    if not found or not shutil.which("Orthanc"):
        raise SystemExit("install the peer first: apt-get install -y orthanc orthanc-dicomweb")
    return found[0]


@contextmanager
def orthanc(folder: Path, bench_port: int) -> Iterator[Server]:
    http, dimse = free_port(), free_port()
    config = {
        "Name": "bench", "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"), "HttpPort": http, "DicomPort": dimse,
        "HttpServerEnabled": True, "DicomServerEnabled": True, "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "SaveJobs": False,
        "Plugins": [orthanc_plugin()], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomCheckCalledAet": False, "DicomCheckModalityHost": False,
        "DicomModalities": {BENCH_AET: [BENCH_AET, "127.0.0.1", bench_port]},
    }  # fmt: skip
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = folder / "orthanc.log"
    command = ["Orthanc", str(folder / "orthanc.json")]
    with running("Orthanc", command, log, f"http://127.0.0.1:{http}/system", {}) as process:
        url = f"http://127.0.0.1:{http}/dicom-web"
        yield Server("Orthanc", url, "ORTHANC", dimse, {}, process, log)


@contextmanager
def oncofed(
    folder: Path, bench_port: int, *, declared: bool = False, fsync: str = "each"
) -> Iterator[Server]:
    """A fresh node with a data manager's token; ``declared``: the collection received
    instances go to is declared already de-identified before serving; ``fsync``: its
    ``ingest_fsync`` setting (the name is "oncofed" for the default, else "oncofed fsync=...")."""
    http, dimse = free_port(), free_port()
    home = folder / "node"
    with Node.init(home) as node:
        store = IdentityStore(node.catalog.con)
        store.add_user("bench", ["data_manager"])
        headers = {"Authorization": f"Bearer {store.issue_token('bench', days=1).token}"}
        if declared:
            spec = CollectionSpec(RECEIVED_COLLECTION, "received", deidentified_at_source=True)
            node.ensure_collection(spec)
    command = [
        sys.executable, "-m", "oncofed", "node", "serve", str(home), "--port", str(http),
        "--dimse-port", str(dimse), "--dimse-peer", f"{BENCH_AET}=127.0.0.1:{bench_port}",
    ]  # fmt: skip
    log = folder / "oncofed.log"
    health = f"http://127.0.0.1:{http}/api/v1/health"
    name = "oncofed" if fsync == "each" else f"oncofed fsync={fsync}"
    env = {"ONCOFED_INGEST_FSYNC": fsync}
    with running(name, command, log, health, headers, env) as process:
        url = f"http://127.0.0.1:{http}/dicomweb"
        yield Server(name, url, "ONCOFED", dimse, headers, process, log)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def bare_scp(folder: Path) -> Iterator[Server]:
    """pynetdicom's SCP doing nothing but answer (see BARE_SCP), as a child process."""
    port = free_port()
    log = folder / "bare-scp.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", BARE_SCP, str(port)], stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_S
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bare pynetdicom SCP did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Server("pynetdicom SCP", "", "BARE", port, {}, process, log)
    finally:
        process.kill()
        process.wait(timeout=10)


def multipart(paths: list[Path]) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    parts = b"".join(head + path.read_bytes() + b"\r\n" for path in paths)
    return parts + f"--{BOUNDARY}--\r\n".encode()


def stow(server: Server, files: list[Path], batch: int, budget_s: float) -> tuple[float, float]:
    """(instances/s, MB/s) storing ``files`` in multipart requests of ``batch`` instances;
    bodies are built before the clock starts."""
    bodies = [multipart(files[i : i + batch]) for i in range(0, len(files), batch)]
    sent = stored = 0
    deadline = time.monotonic() + budget_s
    with httpx.Client(headers=server.headers, timeout=600) as http:
        started = time.perf_counter()
        for i, body in enumerate(bodies):
            answer = http.post(
                f"{server.dicomweb}/studies", content=body, headers={"Content-Type": STOW_TYPE}
            )
            if answer.status_code != 200:
                raise SystemExit(f"{server.name} STOW-RS: {answer.status_code} {answer.text[:500]}")
            sent += len(body)
            stored += len(files[i * batch : (i + 1) * batch])
            if time.monotonic() > deadline:
                console.print(f"  {server.name} STOW-RS stopped by the time budget")
                break
        seconds = time.perf_counter() - started
    return stored / seconds, sent / 1e6 / seconds


def c_store(server: Server, files: list[Path], budget_s: float) -> tuple[float, float]:
    """(instances/s, MB/s) sending ``files`` with dcmtk's storescu over one association."""
    started = time.perf_counter()
    done = subprocess.run(
        [STORESCU, "-aet", BENCH_AET, "-aec", server.aet, "127.0.0.1", str(server.dimse_port),
         *map(str, files)],
        capture_output=True, text=True, timeout=budget_s, check=False, env=DCMTK_ENV,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{server.name} C-STORE: storescu failed: {done.stderr[-1000:]}")
    size = sum(path.stat().st_size for path in files)
    return len(files) / seconds, size / 1e6 / seconds


def qido_wrk(server: Server, url: str, clients: int, seconds: float) -> tuple[float, float, int]:
    """(p50 ms, p95 ms, requests) from wrk, ``clients`` connections for ``seconds``."""
    auth = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in server.headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_LUA.format(auth=auth))
    try:
        done = subprocess.run(
            ["wrk", f"-t{min(clients, 2)}", f"-c{clients}", f"-d{seconds:.0f}s", "--timeout",
             "30s", "-s", script.name, url],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        )  # fmt: skip
    finally:
        os.unlink(script.name)
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    requests, bad_status, socket_errors, p50, p95 = line.split()[1:]
    if int(bad_status) or int(socket_errors):
        raise SystemExit(f"{server.name} QIDO-RS: {bad_status} bad answers, {socket_errors} errors")
    return float(p50), float(p95), int(requests)


def qido_python(
    server: Server, url: str, clients: int, seconds: float, cap: int
) -> tuple[float, float, int]:
    """Same as qido_wrk with threads: at most ``cap`` requests per client and ``seconds``."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    headers = {**server.headers, **IDENTITY, "Accept": "application/dicom+json"}

    def client() -> None:
        with httpx.Client(headers=headers, timeout=30) as http:
            for _ in range(cap):
                if time.monotonic() > deadline:
                    return
                started = time.perf_counter()
                answer = http.get(url)
                elapsed = (time.perf_counter() - started) * 1000
                if answer.status_code != 200:
                    raise SystemExit(f"{server.name} QIDO-RS: {answer.status_code}")
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return percentile(latencies, 50), percentile(latencies, 95), len(latencies)


def series_list(server: Server) -> list[tuple[str, str]]:
    answer = httpx.get(
        f"{server.dicomweb}/series",
        params={"limit": 10_000},
        headers={**server.headers, **IDENTITY},
        timeout=60,
    )
    answer.raise_for_status()
    return [(s["0020000D"]["Value"][0], s["0020000E"]["Value"][0]) for s in answer.json()]


def wado(server: Server, series: list[tuple[str, str]], budget_s: float) -> list[tuple[int, float]]:
    """(bytes, seconds) of each whole series retrieved as multipart DICOM, as stored."""
    timings = []
    deadline = time.monotonic() + budget_s
    headers = {**server.headers, **IDENTITY, "Accept": WADO_ACCEPT}
    with httpx.Client(headers=headers, timeout=600) as http:
        for study, uid in series:
            started = time.perf_counter()
            with http.stream("GET", f"{server.dicomweb}/studies/{study}/series/{uid}") as answer:
                if answer.status_code != 200:
                    raise SystemExit(f"{server.name} WADO-RS: {answer.status_code}")
                if answer.headers.get("content-encoding", "identity") != "identity":
                    raise SystemExit(f"{server.name} WADO-RS: compressed answer")
                size = sum(len(chunk) for chunk in answer.iter_raw())
            timings.append((size, time.perf_counter() - started))
            if time.monotonic() > deadline:
                console.print(f"  {server.name} WADO-RS stopped by the time budget")
                break
    return timings


def datasets(args: argparse.Namespace) -> dict[str, list[Path]]:
    """Small and large instances for each ingest path (generated once, then reused)."""
    found = {}
    for path_name, seed in (("stow", 31), ("dimse", 32)):
        folder = OUT / f"server-{path_name}-small-{args.instances}-{args.per_series}"
        if not folder.is_dir():
            generate_many_small(
                folder, args.instances, seed=seed, instances_per_series=args.per_series
            )
        found[f"{path_name} small"] = sorted(folder.rglob("*.dcm"))
        folder = OUT / f"server-{path_name}-large-{args.large}-{args.frames}"
        if not folder.is_dir():
            generate_large(folder, args.large, frames=args.frames, seed=seed)
        found[f"{path_name} large"] = sorted(folder.rglob("*.dcm"))
    return found


def phase(servers: list[Server], label: str) -> Iterator[Server]:
    """Yield each server in turn, accounting its CPU seconds to ``label``."""
    console.print(f"  {label}")
    for server in servers:
        before = server.cpu_seconds()
        yield server
        server.cpu[label] = server.cpu.get(label, 0.0) + server.cpu_seconds() - before


def probe_declared(args: argparse.Namespace, files: list[Path], bench_port: int) -> str:
    """Whether oncofed's server takes instances into a collection declared de-identified."""
    with (
        tempfile.TemporaryDirectory(dir=OUT, prefix="bench-declared-") as folder,
        oncofed(Path(folder), bench_port, declared=True) as server,
    ):
        answer = httpx.post(
            f"{server.dicomweb}/studies",
            content=multipart(files[: args.batch]),
            headers={**server.headers, "Content-Type": STOW_TYPE},
            timeout=120,
        )
        if answer.status_code == 200:
            return "accepted: the server path allows it (not measured here)"
        reason = answer.text[:300]
        return f"refused: HTTP {answer.status_code} {reason}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=2000, help="small ones per ingest path")
    parser.add_argument("--per-series", type=int, default=20, help="small instances per series")
    parser.add_argument("--large", type=int, default=3, help="large ones per ingest path")
    parser.add_argument("--frames", type=int, default=30, help="512x512 frames per large one")
    parser.add_argument("--batch", type=int, default=50, help="instances per STOW-RS request")
    parser.add_argument("--seconds", type=float, default=10, help="per QIDO-RS measurement")
    parser.add_argument("--budget", type=float, default=300, help="seconds per ingest/retrieve")
    parser.add_argument("--python-load", action="store_true", help="Python threads, not wrk")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    data = datasets(args)
    sizes = {k: sum(p.stat().st_size for p in v) / 1e6 for k, v in data.items()}
    console.print(
        f"data: {', '.join(f'{k} {len(v):,} files {sizes[k]:.0f} MB' for k, v in data.items())}"
    )
    use_wrk = shutil.which("wrk") is not None and not args.python_load
    bench_port = free_port()  # nothing listens there: C-MOVE is not measured
    results: dict[str, dict[str, float]] = {"Orthanc": {}, "oncofed": {}, BATCH: {}}
    notes: dict[str, str] = {}
    with ExitStack() as stack:
        top = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=OUT, prefix="bench-")))
        for name in ("orthanc", "oncofed", "batch"):
            (top / name).mkdir()
        servers = [
            stack.enter_context(orthanc(top / "orthanc", bench_port)),
            stack.enter_context(oncofed(top / "oncofed", bench_port)),
        ]
        batched = stack.enter_context(oncofed(top / "batch", bench_port, fsync="batch"))
        ingesting = [*servers, batched]  # the batch-fsync node takes part in the ingest rows

        for size, batch in (("small", args.batch), ("large", 1)):
            for server in phase(ingesting, f"STOW-RS {size}"):
                rate, mbs = stow(server, data[f"stow {size}"], batch, args.budget)
                if size == "small":
                    results[server.name]["STOW-RS small, inst/s"] = rate
                results[server.name][f"STOW-RS {size}, MB/s"] = mbs
        for size in ("small", "large"):
            for server in phase(ingesting, f"C-STORE {size}"):
                rate, mbs = c_store(server, data[f"dimse {size}"], args.budget)
                if size == "small":
                    results[server.name]["C-STORE small, inst/s"] = rate
                results[server.name][f"C-STORE {size}, MB/s"] = mbs
        with bare_scp(top) as scp:
            bare_rate = c_store(scp, data["dimse small"], args.budget)[0]
        orthanc_rate = results["Orthanc"]["C-STORE small, inst/s"]
        notes["C-STORE small, pynetdicom SCP storing nothing"] = (
            f"{bare_rate:.0f} inst/s = {bare_rate / orthanc_rate:.2f} of Orthanc's (the ceiling"
            " of a receiver built on pynetdicom)"
        )

        for level, query in (("studies", "limit=100"), ("series", "Modality=CT&limit=100")):
            for server in servers:  # same answers from both?
                url = f"{server.dicomweb}/{level}?{query}"
                found = httpx.get(url, headers=server.headers, timeout=60).json()
                notes[f"{server.name} /{level}"] = f"{len(found)} results"
            for clients in (1, 32):
                name = f"QIDO-RS /{level}, {clients} client{'s' * (clients > 1)}"
                for server in phase(servers, name):
                    url = f"{server.dicomweb}/{level}?{query}"
                    if use_wrk:
                        p50, p95, n = qido_wrk(server, url, clients, args.seconds)
                    else:
                        p50, p95, n = qido_python(server, url, clients, args.seconds, 2000)
                    results[server.name][f"{name}, p50 ms"] = p50
                    results[server.name][f"{name}, p95 ms"] = p95
                    results[server.name][f"{name}, req/s"] = n / args.seconds

        for server in phase(servers, "WADO-RS"):
            timings = wado(server, sorted(series_list(server)), args.budget)
            for size in ("small", "large"):
                picked = [t for t in timings if (t[0] > LARGE_SERIES) == (size == "large")]
                mbs = sum(b for b, _ in picked) / 1e6 / sum(s for _, s in picked)
                results[server.name][f"WADO-RS {size} series, MB/s"] = mbs
                notes[f"{server.name} WADO-RS {size}"] = f"{len(picked)} series"
        declared = probe_declared(args, data["stow small"], bench_port)

    rows = []
    for metric, ours in results["oncofed"].items():
        theirs = results["Orthanc"][metric]
        if metric.endswith("p50 ms"):
            goal = ""
        elif metric.endswith("ms"):
            goal = "met" if ours < theirs else "not met"
        else:
            goal = "met" if ours >= theirs else "not met"
        ratio = ours / theirs if theirs else float("nan")  # a peer that answered nothing
        rows.append([metric, ours, theirs, ratio, goal])
    for metric, ours in results[BATCH].items():
        theirs = results["Orthanc"][metric]
        goal = "(met)" if ours >= theirs else "(not met)"
        rows.append([f"{metric} [fsync=batch]", ours, theirs, ours / theirs, goal])
    print_table(
        f"node server vs Orthanc ({machine()}; load: {'wrk' if use_wrk else 'Python threads'})",
        ["metric", "oncofed", "Orthanc", "oncofed / Orthanc", "goal"],
        rows,
    )
    labels = list(servers[0].cpu)
    print_table(
        "server CPU seconds per phase (servers' processes and their workers, all threads)",
        ["phase", "oncofed", "oncofed fsync=batch", "Orthanc", "oncofed / Orthanc"],
        [
            [
                k,
                servers[1].cpu[k],
                batched.cpu.get(k, float("nan")),
                servers[0].cpu[k],
                servers[1].cpu[k] / (servers[0].cpu[k] or 1),
            ]
            for k in labels
        ],
    )
    met = sum(r[4] == "met" for r in rows)  # the default (fsync=each) rows only
    console.print(
        f"goal rows met: {met} of {sum(bool(r[4]) for r in rows)} (throughput >= Orthanc's,"
        " p95 below Orthanc's). QIDO queries: /studies?limit=100, /series?Modality=CT&limit=100."
    )
    console.print("; ".join(f"{k}: {v}" for k, v in notes.items()))
    console.print(
        "oncofed de-identifies every received instance (new UIDs, cleaned header, stored again);"
        " Orthanc stores them as received. oncofed with the receiving collection declared"
        f" already de-identified: {declared}"
    )


if __name__ == "__main__":
    main()

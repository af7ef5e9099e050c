"""Federated search latency: one hub and 1, 5, 10, 20 node agents, each its own process, on
127.0.0.1, next to the same query on one local catalog (query + disclosure control) in the same
run; then 20 nodes with one that hangs (answered at the deadline).

Goals (issue 7): 20-node p95 under 300 ms; with a hung node, under 3x the single-node latency plus
the deadline. "Single-node latency" is printed both ways: the 1-node federated search row, and the
stricter local catalog query (which leaves only 3x a few ms for everything around the deadline).

Besides latency, each row shows the CPU time one search costs the hub process and all node processes
together (from /proc, Linux): on a machine with fewer cores than processes that sum, not the
network, bounds the latency.

Usage: python benchmarks/federated_search.py [--searches 40] [--nodes 1,5,10,20] [--deadline 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hub"))
from federation_support import FACETS, QUERY, Federation

from oncofed.agent.membership import join
from oncofed.catalog.writer import CollectionSpec
from oncofed.disclosure import DisclosurePolicy
from oncofed.node import Node
from oncofed.testing.dicom import generate_cohort

STARTUP_S = 300.0  # node agents start slowly on a busy 2-core VM (imports)
HANG = (
    "import time\nfrom oncofed.agent.handlers import handler\n"
    "@handler('search')\ndef s(c, b):\n    time.sleep(3600)\n"
)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=20)
    return statistics.median(samples) * 1000, cuts[18] * 1000


def local_baseline(home: Path, searches: int) -> tuple[float, float]:
    samples = []
    with Node(home) as node:
        policy = DisclosurePolicy(node.settings.min_count, node.settings.count_rounding)
        for _ in range(searches):
            start = time.perf_counter()
            policy.protect_result(node.catalog.query(QUERY, FACETS))
            samples.append(time.perf_counter() - start)
    return _percentiles(samples)


class Row(NamedTuple):
    """One table row: latency percentiles (ms), nodes answered, CPU ms per search."""

    p50: float
    p95: float
    answered: int
    hub_cpu: float
    node_cpu: float

    def __str__(self) -> str:
        return (
            f"{self.p50:>8.1f} {self.p95:>8.1f} {self.answered:>8}"
            f" {self.hub_cpu:>8.1f} {self.node_cpu:>9.1f}"
        )


def _cpu_ms(pid: int) -> float:
    """CPU time (user + system) a process has used so far, in ms (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def timed_searches(fed: Federation, searches: int, deadline: float) -> Row:
    """Run the searches one after another and measure them."""
    samples, answered = [], 0
    body = {"where": QUERY, "facets": FACETS, "deadline_s": deadline}
    assert fed.hub is not None
    nodes = [p.pid for p in fed.agents.values()]
    hub_cpu, node_cpu = _cpu_ms(fed.hub.pid), sum(map(_cpu_ms, nodes))
    with httpx.Client(timeout=60) as client:
        for _ in range(searches):
            start = time.perf_counter()
            text = client.post(f"{fed.url}/hub/v1/search", json=body, headers=fed.admin).text
            samples.append(time.perf_counter() - start)
            answered = text.count('"status": "answered"')
    hub_cpu = (_cpu_ms(fed.hub.pid) - hub_cpu) / searches
    node_cpu = (sum(map(_cpu_ms, nodes)) - node_cpu) / searches
    return Row(*_percentiles(samples), answered, hub_cpu, node_cpu)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--searches", type=int, default=40)
    ap.add_argument("--nodes", default="1,5,10,20")
    ap.add_argument("--deadline", type=float, default=1.0)
    args = ap.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template = root / "template"
        with Node.init(template, name="template") as node:
            cohort = generate_cohort(root / "input", patients=40, seed=3)
            node.ingest(cohort.files, CollectionSpec("bench", "benchmark cohort"))
        base50, base95 = local_baseline(template, args.searches)
        print(f"local catalog query + disclosure: p50 {base50:.1f} ms, p95 {base95:.1f} ms")
        columns = ("p50 ms", "p95 ms", "answered", "hub CPU", "nodes CPU")
        print(f"{'nodes':>9} " + " ".join(f"{c:>{max(len(c), 8)}}" for c in columns))
        fed = Federation(root)
        fed.start_hub(online_window_s=30)
        hang = root / "hang_handlers.py"
        hang.write_text(HANG)
        try:
            made, rows = 0, {}
            for count in counts:
                while made < count:
                    made += 1
                    name = f"node{made:02d}"
                    shutil.copytree(template, root / name)
                    join(root / name, fed.url, name, name=name)
                    httpx.post(f"{fed.url}/hub/v1/nodes/{name}/approve", headers=fed.admin)
                    fed.start_agent(name)
                fed.wait_online(*fed.agents, timeout=STARTUP_S)
                timed_searches(fed, 3, args.deadline)  # warm up
                rows[count] = timed_searches(fed, args.searches, args.deadline)
                print(f"{count:>9} {rows[count]}")
            name = "hung"
            shutil.copytree(template, root / name)
            join(root / name, fed.url, name, name=name)
            httpx.post(f"{fed.url}/hub/v1/nodes/{name}/approve", headers=fed.admin)
            fed.start_agent(name, handlers=hang)
            fed.wait_online(*fed.agents, timeout=STARTUP_S)
            hung = timed_searches(fed, 10, args.deadline)
            print(f"{made:>2}+1 hung {hung}")
            print("CPU columns: ms of CPU time per search, the hub process / all node processes")
            if 20 in rows:
                verdict = "met" if rows[20].p95 < 300 else "missed"
                print(f"20-node goal, p95 < 300 ms: {verdict}")
            singles = [("1-node search", rows[1].p95)] if 1 in rows else []
            for label, p95 in [*singles, ("local query", base95)]:
                goal = 3 * p95 + args.deadline * 1000
                verdict = "met" if hung.p95 < goal else "missed"
                print(
                    f"hung-node goal, p95 < 3 x {label} p95 + deadline = {goal:.0f} ms: {verdict}"
                )
        finally:
            fed.close()


if __name__ == "__main__":
    main()

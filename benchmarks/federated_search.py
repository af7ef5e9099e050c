"""Federated search latency: one hub and 1, 5, 10, 20 node agents, each its own process, on
127.0.0.1, next to the same query on one local catalog (query + disclosure control) in the same
run; then 20 nodes with one that hangs (answered at the deadline).

Goals (issue 7): 20-node p95 under 300 ms; with a hung node, under 3x the single-node latency plus
the deadline.

Usage: python benchmarks/federated_search.py [--searches 40] [--nodes 1,5,10,20] [--deadline 1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "hub"))
from federation_support import FACETS, QUERY, Federation

from oncofed.agent.membership import join
from oncofed.catalog.writer import CollectionSpec
from oncofed.disclosure import DisclosurePolicy
from oncofed.node import Node
from oncofed.testing.dicom import generate_cohort

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


def timed_searches(fed: Federation, searches: int, deadline: float) -> tuple[float, float, int]:
    samples, answered = [], 0
    body = {"where": QUERY, "facets": FACETS, "deadline_s": deadline}
    with httpx.Client(timeout=60) as client:
        for _ in range(searches):
            start = time.perf_counter()
            text = client.post(f"{fed.url}/hub/v1/search", json=body, headers=fed.admin).text
            samples.append(time.perf_counter() - start)
            answered = text.count('"status": "answered"')
    p50, p95 = _percentiles(samples)
    return p50, p95, answered


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
        print(f"{'nodes':>6} {'p50 ms':>8} {'p95 ms':>8} {'answered':>9}")
        fed = Federation(root)
        fed.start_hub(online_window_s=30)
        hang = root / "hang_handlers.py"
        hang.write_text(HANG)
        try:
            made = 0
            for count in counts:
                while made < count:
                    made += 1
                    name = f"node{made:02d}"
                    shutil.copytree(template, root / name)
                    join(root / name, fed.url, name, name=name)
                    httpx.post(f"{fed.url}/hub/v1/nodes/{name}/approve", headers=fed.admin)
                    fed.start_agent(name)
                fed.wait_online(*fed.agents)
                timed_searches(fed, 3, args.deadline)  # warm up
                p50, p95, answered = timed_searches(fed, args.searches, args.deadline)
                print(f"{count:>6} {p50:>8.1f} {p95:>8.1f} {answered:>9}")
            name = "hung"
            shutil.copytree(template, root / name)
            join(root / name, fed.url, name, name=name)
            httpx.post(f"{fed.url}/hub/v1/nodes/{name}/approve", headers=fed.admin)
            fed.start_agent(name, handlers=hang)
            fed.wait_online(*fed.agents)
            p50, p95, answered = timed_searches(fed, 10, args.deadline)
            print(
                f"{made}+1 hung {p50:>8.1f} {p95:>8.1f} {answered:>9}  (deadline {args.deadline} s)"
            )
            goal = 3 * base95 + args.deadline * 1000
            print(f"goal with a hung node: p95 < 3 x local p95 + deadline = {goal:.0f} ms")
        finally:
            fed.close()


if __name__ == "__main__":
    main()

"""`oncofed demo`, facility part: the prostate site-shift study through the hub's facility.

The admin registers the ISUP benchmark for the three nodes holding graded biopsies (one stain
site each); an AI provider submits two graders trained on site A only, without and with Macenko
stain normalisation; every node evaluates both in its sandbox; the hub pools, reports (HTML, and
PDF where Chromium is installed) and ranks them. Everything here is synthetic.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from oncofed.cli.demo_site_shift import SiteShift
from oncofed.cli.hub import hub_request
from oncofed.cli.tef_hub import estimate_line, print_leaderboard, wait_for_run
from oncofed.storage.atomic import write_atomic
from oncofed.tef.algorithm import zip_package
from oncofed.tef.report import ReportError, export_pdf
from oncofed.tef.report.pdf import CHROMIUM_NAMES
from oncofed.tef.spec import load_spec

PROVIDER = "demo-vendor"
RUN_WAIT_S = 600.0


def facility_demo(
    console: Console, url: str, admin: dict[str, str], study: SiteShift, nodes: list[str],
    reports: Path,
) -> None:  # fmt: skip
    """Register, submit both graders, wait, print per-site kappa, write reports, rank."""
    token = admin["Authorization"].removeprefix("Bearer ")
    spec = load_spec(study.benchmark)
    _register(url, token, spec.model_dump(mode="json"), nodes)
    vendor = _provider_token(url, admin)
    runs = {}
    for name, package in study.packages.items():
        record = hub_request(
            "POST", f"{url}/hub/v1/tef/algorithms", vendor, content=zip_package(package),
            headers={"Content-Type": "application/zip"}, timeout=300,
        ).json()  # fmt: skip
        body = {"benchmark": spec.id, "version": spec.version, "algorithm": record["sha256"]}
        runs[name] = hub_request("POST", f"{url}/hub/v1/tef/runs", vendor, json=body).json()
        run_id = runs[name]["run_id"]
        console.print(f"{name}: package {record['sha256'][:12]} passed the hub's checks and"
                      f" dry run; run {run_id[:12]} sent to {', '.join(nodes)}")  # fmt: skip
    outcomes = {name: wait_for_run(url, vendor, run["run_id"], RUN_WAIT_S)
                for name, run in runs.items()}  # fmt: skip
    _print_sites(console, outcomes, spec.primary_metric)
    for name, outcome in outcomes.items():
        if outcome["state"] == "completed":
            _write_report(console, url, vendor, outcome["run_id"], reports / name)
    path = f"{url}/hub/v1/tef/benchmarks/{spec.id}/{spec.version}/leaderboard"
    console.print(f"leaderboard of {spec.key} (pooled {spec.primary_metric}; synthetic data):")
    print_leaderboard(hub_request("GET", path, vendor).json(), console)


def _register(url: str, token: str, spec: dict[str, object], nodes: list[str]) -> None:
    """Register the benchmark unless the hub has it already (the demo is re-runnable)."""
    answer = httpx.post(f"{url}/hub/v1/tef/benchmarks", json={"spec": spec, "nodes": nodes},
                        headers={"Authorization": f"Bearer {token}"}, timeout=60)  # fmt: skip
    if answer.status_code != 409:
        answer.raise_for_status()


def _provider_token(url: str, admin: dict[str, str]) -> str:
    with httpx.Client(base_url=f"{url}/hub/v1", headers=admin, timeout=60) as hub:
        if PROVIDER not in {u["user_id"] for u in hub.get("/users").json()}:
            hub.post("/users", json={"user_id": PROVIDER, "roles": ["ai_provider"]})
        return str(hub.post(f"/users/{PROVIDER}/tokens", json={"days": 1}).json()["token"])


def _print_sites(console: Console, outcomes: dict[str, dict[str, Any]], metric: str) -> None:
    """Per node (one stain site each) and pooled, for every grader: the site shift at a glance."""
    table = Table(title=f"{metric} per site, graders trained on site A only (SYNTHETIC data)")
    table.add_column("grader")
    nodes = sorted({n["node"] for o in outcomes.values() for n in o.get("nodes", [])})
    for node in [*nodes, "pooled"]:
        table.add_column(node)
    for name, outcome in outcomes.items():
        values = {
            n["node"]: estimate_line(n["metrics"].get(metric), 2) for n in outcome.get("nodes", [])
        }
        pooled = outcome.get("pooled") or {}
        table.add_row(
            name, *[values.get(n, "-") for n in nodes], estimate_line(pooled.get(metric), 2)
        )
        for node, reason in outcome.get("failures", {}).items():
            console.print(f"[red]{name} at {node}: no result[/] ({reason})")
    console.print(table)


def _write_report(console: Console, url: str, token: str, run_id: str, stem: Path) -> None:
    """The run's HTML report, and its PDF where Chromium is installed."""
    html = hub_request("GET", f"{url}/hub/v1/tef/runs/{run_id}/report.html", token).text
    write_atomic(stem.with_suffix(".html"), html.encode())
    printed = ""
    if any(shutil.which(name) for name in CHROMIUM_NAMES):
        try:
            printed = f" and {export_pdf(html, stem.with_suffix('.pdf'))}"
        except ReportError as exc:
            printed = f" (no PDF: {exc.message})"
    console.print(f"report: {stem.with_suffix('.html')}{printed}")
